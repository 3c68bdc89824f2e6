//! Vehicles reached over NATS: the simulated fleet as its own process (`sovd simulator`), so
//! that any number of connector processes drive the same vehicles, as they would drive real
//! ones behind an edge gateway. Vehicle state (DTC memory, sessions, execution counts) lives
//! in the one simulator process, and survives any connector being killed.
//!
//! Wire (core NATS, JSON, not stored):
//! - `sovd.sim.<vin>.exec`: the request is an [`Operation`]; the answer is a series of
//!   [`Reply`] messages to the request's reply subject, ending with a final chunk or an error.
//! - `sovd.sim.<vin>.connect` / `.disconnect`: switches a vehicle on or off (drills, tests).
//! - `sovd.sim.executions`: how often each operation really ran on each vehicle.
//!
//! Connectivity is read from SOVD_FLEET, where the simulator records every change.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use serde::{Deserialize, Serialize};
use sovd_domain::uds::Nrc;
use sovd_domain::{Event, Operation, OperationName, Vin};
use sovd_nats::{EventStore, ReadError, StreamName};
use tokio::sync::watch;

use crate::sim::SimulatedFleet;
use crate::transport::{Chunk, TransportError, VehicleTransport};

/// Longest a simulator keeps serving one request (a vehicle that never answers).
const MAX_REQUEST: Duration = Duration::from_secs(600);

/// One message of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Chunk { payload: serde_json::Value, is_final: bool },
    Error(WireError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WireError {
    NotConnected,
    Unreachable,
    NegativeResponse { code: u8 },
    Malformed { detail: String },
    Dropped { after_chunks: usize },
    NoSuchEcu { ecu: String },
}

impl WireError {
    fn from_transport(error: &TransportError) -> Self {
        match error {
            TransportError::NotConnected(_) => Self::NotConnected,
            TransportError::Unreachable(_) => Self::Unreachable,
            TransportError::NegativeResponse(nrc) => Self::NegativeResponse { code: nrc.code() },
            TransportError::Malformed(detail) => Self::Malformed { detail: detail.clone() },
            TransportError::Dropped { after_chunks } => Self::Dropped { after_chunks: *after_chunks },
            TransportError::NoSuchEcu(ecu) => Self::NoSuchEcu { ecu: ecu.clone() },
        }
    }

    fn into_transport(self, vin: &Vin) -> TransportError {
        match self {
            Self::NotConnected => TransportError::NotConnected(vin.clone()),
            Self::Unreachable => TransportError::Unreachable(vin.clone()),
            Self::NegativeResponse { code } => TransportError::NegativeResponse(Nrc(code)),
            Self::Malformed { detail } => TransportError::Malformed(detail),
            Self::Dropped { after_chunks } => TransportError::Dropped { after_chunks },
            Self::NoSuchEcu { ecu } => TransportError::NoSuchEcu(ecu),
        }
    }
}

/// One row of `sovd.sim.executions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executions {
    pub vin: Vin,
    pub operation: OperationName,
    pub count: u64,
}

fn vin_of(subject: &str) -> Option<Vin> {
    subject.split('.').nth(2).and_then(|v| Vin::parse(v).ok())
}

/// Serves the fleet's vehicles on NATS until `shutdown`.
pub async fn serve(
    client: Client,
    fleet: Arc<SimulatedFleet>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), async_nats::SubscribeError> {
    let mut requests = client.subscribe("sovd.sim.*.*").await?;
    let mut counts = client.subscribe("sovd.sim.executions").await?;
    tracing::info!("simulated vehicles listening on sovd.sim.<vin>.exec");
    loop {
        tokio::select! {
            Some(message) = requests.next() => handle(&client, &fleet, message).await,
            Some(message) = counts.next() => {
                let rows: Vec<Executions> = fleet
                    .all_executions()
                    .into_iter()
                    .map(|((vin, operation), count)| Executions { vin, operation, count })
                    .collect();
                if let Some(reply) = message.reply {
                    let _ = answer(&client, reply, &rows).await;
                }
            }
            _ = shutdown.changed() => return Ok(()),
            else => return Ok(()),
        }
    }
}

/// Publishes `body` as JSON to a reply subject; false when NATS refused it.
async fn answer(client: &Client, to: async_nats::Subject, body: &impl Serialize) -> bool {
    let body = serde_json::to_vec(body).unwrap_or_default();
    client.publish(to, body.into()).await.is_ok()
}

async fn handle(client: &Client, fleet: &Arc<SimulatedFleet>, message: async_nats::Message) {
    let (Some(vin), Some(reply)) = (vin_of(&message.subject), message.reply.clone()) else { return };
    match message.subject.rsplit('.').next() {
        Some("exec") => {
            let operation: Operation = match serde_json::from_slice(&message.payload) {
                Ok(operation) => operation,
                Err(e) => {
                    let error = WireError::Malformed { detail: format!("unreadable request: {e}") };
                    let _ = answer(client, reply, &Reply::Error(error)).await;
                    return;
                }
            };
            // Each request runs on its own, as requests to different vehicles do.
            let mut items = fleet.execute(&vin, &operation);
            let client = client.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(MAX_REQUEST, async {
                    while let Some(item) = items.next().await {
                        let reply_message = match item {
                            Ok(chunk) => Reply::Chunk { payload: chunk.payload, is_final: chunk.is_final },
                            Err(error) => Reply::Error(WireError::from_transport(&error)),
                        };
                        if !answer(&client, reply.clone(), &reply_message).await {
                            return;
                        }
                    }
                })
                .await;
            });
        }
        Some(switch @ ("connect" | "disconnect")) => {
            fleet.set_connected(&vin, switch == "connect");
            let _ = client.publish(reply, "ok".into()).await;
        }
        _ => {}
    }
}

/// The connector's side: vehicles behind the simulator process (or, later, an edge gateway).
#[derive(Clone)]
pub struct RemoteFleet {
    client: Client,
    connected: Arc<RwLock<HashMap<Vin, bool>>>,
}

impl RemoteFleet {
    /// Reads every vehicle's connectivity from SOVD_FLEET, then follows it until `shutdown`.
    pub async fn start(store: &EventStore, shutdown: watch::Receiver<bool>) -> Result<Self, ReadError> {
        let connected: Arc<RwLock<HashMap<Vin, bool>>> = Arc::default();
        let history = store.read_filtered(StreamName::Fleet, "sovd.veh.>").await?;
        let next = history.last().map_or(1, |last| last.stream_sequence + 1);
        for stored in &history {
            apply(&connected, &stored.event);
        }
        let mut live = store.ordered(StreamName::Fleet, "sovd.veh.>", next).await?;
        let follow = connected.clone();
        let mut shutdown = shutdown;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(Ok(stored)) = live.next() => apply(&follow, &stored.event),
                    _ = shutdown.changed() => return,
                    else => return,
                }
            }
        });
        Ok(Self { client: store.jetstream().client(), connected })
    }
}

fn apply(connected: &RwLock<HashMap<Vin, bool>>, event: &Event) {
    let change = match event {
        Event::VehicleConnected(e) => (e.vin.clone(), true),
        Event::VehicleDisconnected(e) => (e.vin.clone(), false),
        _ => return,
    };
    if let Ok(mut map) = connected.write() {
        map.insert(change.0, change.1);
    }
}

enum Exchange {
    Start { client: Client, vin: Vin, payload: Vec<u8> },
    Reading { vin: Vin, answers: async_nats::Subscriber, chunks: usize },
    Done,
}

impl VehicleTransport for RemoteFleet {
    fn is_connected(&self, vin: &Vin) -> bool {
        self.connected.read().is_ok_and(|map| map.get(vin).copied().unwrap_or(false))
    }

    fn execute(&self, vin: &Vin, operation: &Operation) -> BoxStream<'static, Result<Chunk, TransportError>> {
        let payload = serde_json::to_vec(operation).unwrap_or_default();
        let start = Exchange::Start { client: self.client.clone(), vin: vin.clone(), payload };
        stream::unfold(start, |exchange| async move {
            let (vin, mut answers, chunks) = match exchange {
                Exchange::Done => return None,
                Exchange::Reading { vin, answers, chunks } => (vin, answers, chunks),
                Exchange::Start { client, vin, payload } => {
                    let inbox = client.new_inbox();
                    let sent = async {
                        let answers = client.subscribe(inbox.clone()).await.ok()?;
                        let subject = format!("sovd.sim.{vin}.exec");
                        client.publish_with_reply(subject, inbox, payload.into()).await.ok()?;
                        Some(answers)
                    };
                    match sent.await {
                        Some(answers) => (vin, answers, 0),
                        None => return Some((Err(TransportError::Unreachable(vin)), Exchange::Done)),
                    }
                }
            };
            let Some(message) = answers.next().await else {
                return Some((Err(TransportError::Dropped { after_chunks: chunks }), Exchange::Done));
            };
            // Nobody serves the vehicle: the request went nowhere.
            if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Some((Err(TransportError::Unreachable(vin)), Exchange::Done));
            }
            match serde_json::from_slice::<Reply>(&message.payload) {
                Ok(Reply::Chunk { payload, is_final }) => {
                    let next =
                        if is_final { Exchange::Done } else { Exchange::Reading { vin, answers, chunks: chunks + 1 } };
                    Some((Ok(Chunk { payload, is_final }), next))
                }
                Ok(Reply::Error(error)) => Some((Err(error.into_transport(&vin)), Exchange::Done)),
                Err(e) => Some((Err(TransportError::Malformed(format!("unreadable answer: {e}"))), Exchange::Done)),
            }
        })
        .boxed()
    }
}
