//! The durable pull consumer on SOVD_COMMANDS shared by every connector process, and the loop
//! that feeds its messages to the worker. A message is acked only once its command has a
//! stored terminal event; while the vehicle works, progress acks keep it from redelivery.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use sovd_domain::lifecycle::CommandStatus;
use sovd_nats::{StoredEvent, StreamName, Subject, envelope};
use tokio::sync::{Semaphore, watch};

use crate::transport::VehicleTransport;
use crate::worker::{CommandWorker, Handled};

/// The durable consumer every connector process shares.
pub const CONSUMER_NAME: &str = "connector";

pub type OutcomeHook = Arc<dyn Fn(CommandStatus, Duration) + Send + Sync>;

#[derive(Clone)]
pub struct ConsumerConfig {
    /// Redelivery after this long without an ack or progress ack (a crashed connector).
    pub ack_wait: Duration,
    /// Commands one process runs at once.
    pub concurrency: usize,
    /// Send progress acks while a command runs (off only in tests that force a redelivery).
    pub progress_acks: bool,
    /// Called once for each command this process ended.
    pub on_outcome: Option<OutcomeHook>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self { ack_wait: Duration::from_secs(30), concurrency: 512, progress_acks: true, on_outcome: None }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("command consumer: {0}")]
pub struct ConsumerError(String);

pub async fn durable_consumer(
    js: &jetstream::Context,
    config: &ConsumerConfig,
) -> Result<jetstream::consumer::Consumer<pull::Config>, ConsumerError> {
    let stream = js.get_stream(StreamName::Commands.as_str()).await.map_err(|e| ConsumerError(e.to_string()))?;
    let consumer_config = pull::Config {
        durable_name: Some(CONSUMER_NAME.to_owned()),
        description: Some("connectors executing diagnostic commands".to_owned()),
        filter_subject: Subject::all_commands().to_owned(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        max_deliver: -1,
        max_ack_pending: 20_000,
        ..Default::default()
    };
    stream.create_consumer(consumer_config).await.map_err(|e| ConsumerError(e.to_string()))
}

/// Pulls command messages and runs them until `shutdown` turns true.
pub async fn run<T: VehicleTransport>(
    worker: Arc<CommandWorker<T>>,
    js: jetstream::Context,
    config: ConsumerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let consumer = durable_consumer(&js, &config).await?;
    let mut messages = consumer.messages().await.map_err(|e| ConsumerError(e.to_string()))?;
    let slots = Arc::new(Semaphore::new(config.concurrency));
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = shutdown.changed() => return Ok(()),
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "command consumer error; continuing");
                continue;
            }
            None => return Err(ConsumerError("message stream ended".into())),
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let worker = worker.clone();
        let config = config.clone();
        tokio::spawn(async move {
            process(&worker, message, &config).await;
            drop(slot);
        });
    }
}

async fn process<T: VehicleTransport>(worker: &CommandWorker<T>, message: jetstream::Message, config: &ConsumerConfig) {
    let sequence = message.info().map(|i| i.stream_sequence).unwrap_or_default();
    let stored = match envelope::decode(message.headers.as_ref(), &message.payload) {
        Ok((meta, event)) => {
            StoredEvent { stream_sequence: sequence, subject: message.subject.to_string(), meta, event }
        }
        Err(error) => {
            // Retrying cannot help; the event stays in the stream for replay and inspection.
            tracing::error!(sequence, error = %error, "undecodable command event; not retried");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let started = std::time::Instant::now();
    let handled = {
        let work = worker.handle(&stored);
        tokio::pin!(work);
        let mut ticker = tokio::time::interval(config.ack_wait / 3);
        ticker.tick().await;
        loop {
            tokio::select! {
                result = &mut work => break result,
                _ = ticker.tick(), if config.progress_acks => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        }
    };
    match handled {
        Ok(Handled::Terminal(status)) => {
            if let Err(e) = message.double_ack().await {
                tracing::warn!(sequence, error = %e, "ack failed; the command will be redelivered and found finished");
            }
            if let Some(hook) = &config.on_outcome {
                hook(status, started.elapsed());
            }
        }
        Ok(Handled::AlreadyEnded(_) | Handled::Ignored) => {
            let _ = message.ack().await;
        }
        Ok(Handled::Waiting(delay)) => {
            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
        }
        Ok(Handled::Busy) => {
            let _ = message.ack_with(AckKind::Nak(Some(config.ack_wait))).await;
        }
        Ok(Handled::LostOwnership) => {
            tracing::info!(sequence, correlation_id = %stored.meta.correlation_id, "another connector took the command over");
        }
        Err(error) => {
            tracing::warn!(
                sequence,
                correlation_id = %stored.meta.correlation_id,
                error = %error,
                "command step failed; will be redelivered"
            );
            let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
    }
}
