//! Progress for long work (rebuild, replay, backup, restore, bench): a bar on stderr when
//! it is a terminal, otherwise a structured log line every few seconds, so CI logs and
//! `kubectl logs` show progress too. Stdout stays free for results.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    task: String,
    bar: Option<ProgressBar>,
    total: Mutex<u64>,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// `total` may be 0 when unknown; [`Progress::set`] can supply it later.
    pub fn new(task: impl Into<String>, total: u64, unit: &str) -> Self {
        let task = task.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template =
                format!("{{prefix:>12}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} eta {{eta}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(task.clone());
            bar
        });
        Self { task, bar, total: Mutex::new(total), last_log: Mutex::new(Instant::now()) }
    }

    pub fn set(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        if let Ok(mut known) = self.total.lock() {
            *known = total;
        }
        let Ok(mut last) = self.last_log.lock() else { return };
        if last.elapsed() >= LOG_EVERY {
            *last = Instant::now();
            let percent = if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 };
            tracing::info!(task = %self.task, done, total, percent = format!("{percent:.1}"), "progress");
        }
    }

    pub fn finish(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(message.to_owned()),
            None => tracing::info!(task = %self.task, "{message}"),
        }
    }
}

/// Who ran a command-line operation, for the audit trail: `operator:<login>`.
pub fn operator() -> String {
    let login = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    format!("operator:{login}")
}
