//! The fleet on the log: each simulated vehicle is registered once on SOVD_FLEET, and its
//! connectivity is recorded whenever it changes.

use futures::StreamExt;
use sovd_domain::events::{VehicleConnected, VehicleDisconnected, VehicleRegistered};
use sovd_domain::{Event, VehicleId, Vin};
use sovd_nats::{AppendError, AppendOptions, EventMeta, EventStore, ReadError, StreamName, Subject};
use time::OffsetDateTime;

use crate::sim::{SimulatedFleet, VehicleConfig};

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
            announce(store, &vin, vehicle.connected).await
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    tracing::info!(vehicles = vehicles.len(), elapsed_ms = started.elapsed().as_millis() as u64, "fleet registered");
    Ok(())
}

/// Records the vehicle's connectivity if the log says otherwise.
pub async fn announce(store: &EventStore, vin: &Vin, connected: bool) -> Result<(), FleetError> {
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
        Event::VehicleDisconnected(VehicleDisconnected {
            vin: vin.clone(),
            reason: "simulated vehicle is offline".into(),
            at,
        })
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
