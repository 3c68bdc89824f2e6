//! JetStream stream snapshots and restores, the server's own backup format. async-nats has
//! no wrapper for them, so this speaks the protocol:
//!
//! - Snapshot: subscribe to an inbox, ask `$JS.API.STREAM.SNAPSHOT.<stream>` to deliver
//!   there. The answer carries the stream's config and state. Chunks follow, each with a
//!   reply subject that must be answered (an empty message) before the server sends more
//!   than its window: that is the flow control. An empty chunk is the end; an end with a
//!   status header is a failure.
//! - Restore: `$JS.API.STREAM.RESTORE.<stream>` with the config and state answers with a
//!   subject to send the chunks to, each as a request the server acknowledges. An empty
//!   request ends it, and its answer is the restored stream's info or an error.
//!
//! The bytes are opaque here (a compressed archive of the stream's files); callers store
//! and checksum them.

use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes per chunk the server sends and restores take.
const CHUNK_SIZE: usize = 128 * 1024;
/// How long a silent server may take before the transfer is abandoned.
const STALL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("JetStream refused the {what} of stream {stream}: {description}")]
    Refused { what: &'static str, stream: String, description: String },
    #[error("the {what} of stream {stream} stalled: nothing for {seconds} s")]
    Stalled { what: &'static str, stream: String, seconds: u64 },
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What the server said about the stream when the snapshot started.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stream configuration, as JetStream writes it (JSON).
    pub config: Value,
    /// Its state then: messages, bytes, first_seq, last_seq, … (JSON).
    pub state: Value,
    /// Bytes written.
    pub bytes: u64,
}

fn nats(error: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Nats(error.to_string())
}

/// The API's JSON answer, or its `error` as [`SnapshotError::Refused`].
fn answer(payload: &[u8], what: &'static str, stream: &str) -> Result<Value, SnapshotError> {
    let value: Value = serde_json::from_slice(payload).map_err(nats)?;
    match value.get("error") {
        Some(error) => Err(SnapshotError::Refused {
            what,
            stream: stream.to_owned(),
            description: error["description"].as_str().unwrap_or("unknown error").to_owned(),
        }),
        None => Ok(value),
    }
}

async fn request(client: &Client, subject: String, payload: Bytes) -> Result<async_nats::Message, SnapshotError> {
    let request = async_nats::Request::new().payload(payload).timeout(Some(STALL));
    client.send_request(subject, request).await.map_err(nats)
}

/// Writes a snapshot of `stream` (without consumers) to `out`; `progress` gets the bytes so far.
pub async fn snapshot<W: AsyncWrite + Unpin>(
    client: &Client,
    stream: &str,
    out: &mut W,
    mut progress: impl FnMut(u64),
) -> Result<Snapshot, SnapshotError> {
    let inbox = client.new_inbox();
    let mut chunks = client.subscribe(inbox.clone()).await.map_err(nats)?;
    client.flush().await.map_err(nats)?;
    let body = json!({"deliver_subject": inbox, "no_consumers": true, "chunk_size": CHUNK_SIZE, "jsck": true});
    let started = request(client, format!("$JS.API.STREAM.SNAPSHOT.{stream}"), body.to_string().into()).await?;
    let started = answer(&started.payload, "snapshot", stream)?;
    let mut bytes = 0u64;
    loop {
        let stalled =
            || SnapshotError::Stalled { what: "snapshot", stream: stream.to_owned(), seconds: STALL.as_secs() };
        let chunk = tokio::time::timeout(STALL, chunks.next()).await.map_err(|_| stalled())?.ok_or_else(stalled)?;
        if chunk.payload.is_empty() {
            if let Some(status) = chunk.status.filter(|s| !s.is_success()) {
                let description = chunk.description.unwrap_or_else(|| status.to_string());
                return Err(SnapshotError::Refused { what: "snapshot", stream: stream.to_owned(), description });
            }
            break;
        }
        out.write_all(&chunk.payload).await?;
        bytes += chunk.payload.len() as u64;
        progress(bytes);
        if let Some(reply) = chunk.reply {
            client.publish(reply, Bytes::new()).await.map_err(nats)?;
        }
    }
    out.flush().await?;
    Ok(Snapshot { config: started["config"].clone(), state: started["state"].clone(), bytes })
}

/// Restores `stream` from a snapshot read from `input`. The stream must not exist. Returns
/// the restored stream's state as JetStream reports it.
pub async fn restore<R: AsyncRead + Unpin>(
    client: &Client,
    stream: &str,
    config: &Value,
    state: &Value,
    input: &mut R,
    mut progress: impl FnMut(u64),
) -> Result<Value, SnapshotError> {
    let body = json!({"config": config, "state": state});
    let started = request(client, format!("$JS.API.STREAM.RESTORE.{stream}"), body.to_string().into()).await?;
    let started = answer(&started.payload, "restore", stream)?;
    let deliver = started["deliver_subject"]
        .as_str()
        .ok_or_else(|| nats(format!("restore of {stream}: no deliver_subject in {started}")))?
        .to_owned();
    let mut buffer = vec![0u8; CHUNK_SIZE];
    let mut bytes = 0u64;
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            let read = input.read(&mut buffer[filled..]).await?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        if filled == 0 {
            break;
        }
        let ack = request(client, deliver.clone(), Bytes::copy_from_slice(&buffer[..filled])).await?;
        if !ack.payload.is_empty() {
            answer(&ack.payload, "restore", stream)?;
        }
        bytes += filled as u64;
        progress(bytes);
    }
    let done = request(client, deliver, Bytes::new()).await?;
    let info = answer(&done.payload, "restore", stream)?;
    Ok(info["state"].clone())
}
