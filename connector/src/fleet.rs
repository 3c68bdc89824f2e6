//! The fleet on the log: each simulated vehicle is registered once on SOVD_FLEET, and its
//! connectivity is recorded whenever it changes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sovd_domain::events::{VehicleConnected, VehicleDisconnected, VehicleRegistered};
use sovd_domain::{Event, VehicleId, Vin};
use sovd_nats::{AppendError, AppendOptions, EventMeta, EventStore, ReadError, StreamName, Subject};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::sim::{Connectivity, SimulatedFleet, VehicleConfig};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("vehicle {0}: bad VIN")]
    BadVin(String),
}

/// Appends in flight at once while registering a large fleet.
const PARALLEL: usize = 64;

/// Registers every vehicle (once: the append expects an empty subject), records its
/// connectivity, and adds it to the simulated fleet.
pub async fn register(
    store: &EventStore,
    fleet: &SimulatedFleet,
    vehicles: &[VehicleConfig],
) -> Result<(), FleetError> {
    let started = std::time::Instant::now();
    let results: Vec<Result<(), FleetError>> = futures::stream::iter(vehicles)
        .map(|vehicle| async move {
            let vin = Vin::parse(&vehicle.vin).map_err(|_| FleetError::BadVin(vehicle.vin.clone()))?;
            fleet.add_vehicle(vin.clone(), vehicle.connected);
            let registered = Event::VehicleRegistered(VehicleRegistered {
                vehicle_id: VehicleId::from_uuid(vehicle.id()),
                vin: vin.clone(),
                make: vehicle.make.clone(),
                model: vehicle.model.clone(),
                year: vehicle.year,
                metadata_json: r#"{"simulated":true}"#.into(),
                registered_at: OffsetDateTime::now_utc(),
            });
            let meta = EventMeta::new("fleet", "connector");
            match store.append(&Subject::vehicle(&vin), &registered, &meta, AppendOptions::expect_last(0)).await {
                Ok(_) | Err(AppendError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let reason = if vehicle.connected { "vehicle online" } else { "simulated vehicle is offline" };
            announce(store, &vin, vehicle.connected, reason).await
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    tracing::info!(vehicles = vehicles.len(), elapsed_ms = started.elapsed().as_millis() as u64, "fleet registered");
    Ok(())
}

/// Records the vehicle's connectivity if the log says otherwise.
pub async fn announce(store: &EventStore, vin: &Vin, connected: bool, reason: &str) -> Result<(), FleetError> {
    let subject = Subject::vehicle(vin);
    let last = store.last_on_subject(StreamName::Fleet, subject.as_str()).await?;
    let logged = match last.as_ref().map(|l| &l.event) {
        Some(Event::VehicleConnected(_)) => Some(true),
        Some(Event::VehicleDisconnected(_)) => Some(false),
        _ => None,
    };
    if logged == Some(connected) {
        return Ok(());
    }
    let at = OffsetDateTime::now_utc();
    let event = if connected {
        Event::VehicleConnected(VehicleConnected { vin: vin.clone(), at })
    } else {
        Event::VehicleDisconnected(VehicleDisconnected { vin: vin.clone(), reason: reason.to_owned(), at })
    };
    let expected = last.map_or(0, |l| l.stream_sequence);
    match store
        .append(&subject, &event, &EventMeta::new("fleet", "connector"), AppendOptions::expect_last(expected))
        .await
    {
        // Another connector recorded a change first; its word stands.
        Ok(_) | Err(AppendError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Records every connectivity change of the simulated fleet on SOVD_FLEET as it happens,
/// until `shutdown`. A change that cannot be written now is tried again with the next one.
pub async fn record_changes(store: EventStore, fleet: Arc<SimulatedFleet>, mut shutdown: watch::Receiver<bool>) {
    let mut unwritten: Vec<Connectivity> = Vec::new();
    loop {
        unwritten.extend(fleet.take_changes());
        let mut failed = Vec::new();
        for change in unwritten.drain(..) {
            if let Err(error) = announce(&store, &change.vin, change.connected, &change.reason).await {
                tracing::warn!(vin = %change.vin, error = %error, "could not record a connectivity change; will retry");
                failed.push(change);
            } else {
                tracing::info!(vin = %change.vin, connected = change.connected, reason = %change.reason, "vehicle connectivity changed");
            }
        }
        unwritten = failed;
        let retry = if unwritten.is_empty() { Duration::from_secs(3600) } else { Duration::from_secs(1) };
        tokio::select! {
            () = fleet.changed() => {}
            () = tokio::time::sleep(retry) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs the simulated disconnect fault once a second until `shutdown`.
pub async fn drive_connectivity(fleet: Arc<SimulatedFleet>, mut shutdown: watch::Receiver<bool>) {
    let tick = Duration::from_secs(1);
    let mut ticker = tokio::time::interval(tick);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => fleet.roll_connectivity(tick, std::time::Instant::now()),
            _ = shutdown.changed() => return,
        }
    }
}
