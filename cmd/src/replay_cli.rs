//! `sovd replay`: the event log as JSON Lines or CSV, filtered, to stdout or a file, with
//! progress on stderr. `--follow` keeps tailing; `--as-of` prints each command's state at a
//! moment instead of the events.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sovd_nats::StreamName;
use time::OffsetDateTime;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use crate::config::NatsArgs;
use crate::progress::Progress;
use crate::replay::{Replay, as_of, parse_time, record};
use crate::run;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A header and one row per event (or command, with --as-of).
    Csv,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub filter: crate::replay::RawFilter,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// After the events so far, keep printing new ones as they are appended (Ctrl-C ends).
    #[arg(long, conflicts_with = "as_of")]
    pub follow: bool,
    /// Print every matching command as it stood at this time (RFC 3339, a date or an age).
    #[arg(long)]
    pub as_of: Option<String>,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let (_stop, mut shutdown) = run::shutdown_signal();
    let Some((_, store)) = run::connect_nats(&args.nats, "sovd-replay", &shutdown).await? else {
        return Ok(());
    };
    let now = OffsetDateTime::now_utc();
    let mut filter = args.filter.resolve(&store, now).await?;
    let as_of = args.as_of.as_deref().map(|raw| parse_time(raw, now)).transpose().map_err(anyhow::Error::msg)?;
    if let Some(at) = as_of {
        filter.to = Some(filter.to.map_or(at, |to| to.min(at)));
        filter.streams = vec![StreamName::Commands, StreamName::Responses];
    }
    let mut out: Box<dyn AsyncWrite + Unpin + Send> = match &args.output {
        Some(path) => {
            Box::new(tokio::fs::File::create(path).await.with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => Box::new(tokio::io::stdout()),
    };
    let mut out = BufWriter::with_capacity(256 * 1024, &mut out);
    let mut replay = Replay::open(&store, filter, args.follow).await?;
    let progress = Progress::new("replay", replay.total, "events");
    let mut folded = as_of.map(|_| as_of::AsOf::default());
    if folded.is_none() && args.format == Format::Csv {
        out.write_all(record::CSV_HEADER.as_bytes()).await?;
    }
    let mut written = 0u64;
    loop {
        let next = tokio::select! {
            next = replay.next() => next,
            _ = shutdown.changed() => None,
        };
        let Some(event) = next else { break };
        let event = event?;
        match folded.as_mut() {
            Some(commands) => commands.apply(&event.stored),
            None => {
                let line = match args.format {
                    Format::Jsonl => record::json_line(&event),
                    Format::Csv => record::csv_line(&event),
                };
                out.write_all(line.as_bytes()).await?;
                written += 1;
                if args.follow && event.pending == 0 {
                    out.flush().await?;
                }
            }
        }
        progress.set(replay.scanned.min(replay.total), replay.total);
    }
    if let Some(commands) = folded {
        if args.format == Format::Csv {
            out.write_all(as_of::CSV_HEADER.as_bytes()).await?;
        }
        for row in commands.rows() {
            let line = match args.format {
                Format::Jsonl => format!("{row}\n"),
                Format::Csv => as_of::csv_line(&row),
            };
            out.write_all(line.as_bytes()).await?;
            written += 1;
        }
    }
    out.flush().await?;
    progress.finish(&format!("replay: {written} written of {} read", replay.scanned));
    Ok(())
}
