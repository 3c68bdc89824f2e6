//! `sovd watch <command-id>`: prints a command's live events from the WebSocket, one JSON
//! object per line, and exits when the command ends (non-zero unless it completed).

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The command to watch.
    pub command_id: String,
    /// An access token (from POST /api/v1/auth/login).
    #[arg(long, env = "SOVD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Base URL of the gateway.
    #[arg(long, env = "SOVD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Resume after this stream sequence.
    #[arg(long)]
    pub from_seq: Option<u64>,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').replacen("http", "ws", 1);
    let mut url = format!("{base}/ws/responses/{}?token={}", args.command_id, args.token);
    if let Some(seq) = args.from_seq {
        url.push_str(&format!("&from_seq={seq}"));
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.context("cannot open the WebSocket")?;
    let mut status = None;
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => {
                println!("{text}");
                let event: serde_json::Value = serde_json::from_str(&text)?;
                if let Some(s) = event["status"].as_str() {
                    status = Some(s.to_owned());
                }
            }
            Message::Close(frame) => {
                if let Some(frame) = frame
                    && u16::from(frame.code) != 1000
                {
                    bail!("server closed the stream: {} ({})", frame.reason, u16::from(frame.code));
                }
                break;
            }
            _ => {}
        }
    }
    match status.as_deref() {
        Some("completed") => Ok(()),
        Some(other) => bail!("command ended as {other}"),
        None => bail!("stream ended before the command did"),
    }
}
