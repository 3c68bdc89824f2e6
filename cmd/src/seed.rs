//! Seed data of the old system: 4 vehicles and 2 users, appended as events once.
//! Each append expects an empty subject, so seeding again is a no-op.

use sovd_domain::events::{UserCreated, VehicleRegistered};
use sovd_domain::{Event, Role, UserId, VehicleId, Vin};
use sovd_nats::{AppendError, AppendOptions, EventMeta, EventStore, Subject};
use time::OffsetDateTime;
use uuid::Uuid;

pub struct SeedVehicle {
    pub vehicle_id: Uuid,
    pub vin: &'static str,
    pub make: &'static str,
    pub model: &'static str,
    pub year: u16,
    pub connected: bool,
}

pub const VEHICLES: [SeedVehicle; 4] = [
    SeedVehicle {
        vehicle_id: Uuid::from_u128(0x50e0_0000_0000_4000_8000_0000_0000_0001),
        vin: "1HGBH41JXMN109186",
        make: "Tesla",
        model: "Model 3",
        year: 2023,
        connected: true,
    },
    SeedVehicle {
        vehicle_id: Uuid::from_u128(0x50e0_0000_0000_4000_8000_0000_0000_0002),
        vin: "5YJSA1E14HF123456",
        make: "Tesla",
        model: "Model S",
        year: 2022,
        connected: true,
    },
    SeedVehicle {
        vehicle_id: Uuid::from_u128(0x50e0_0000_0000_4000_8000_0000_0000_0003),
        vin: "WBADT43452G123456",
        make: "BMW",
        model: "i4",
        year: 2024,
        connected: false,
    },
    SeedVehicle {
        vehicle_id: Uuid::from_u128(0x50e0_0000_0000_4000_8000_0000_0000_0004),
        vin: "WAUZZZ8V8KA123456",
        make: "Audi",
        model: "e-tron GT",
        year: 2023,
        connected: true,
    },
];

pub const USERS: [(Uuid, &str, &str, Role); 2] = [
    (Uuid::from_u128(0x50e0_0000_0000_4000_8000_0000_0000_00a1), "admin", "admin123", Role::Admin),
    (Uuid::from_u128(0x50e0_0000_0000_4000_8000_0000_0000_00e1), "engineer", "engineer123", Role::Engineer),
];

async fn append_once(store: &EventStore, subject: &Subject, event: Event) -> Result<bool, AppendError> {
    let meta = EventMeta::new("seed", "system");
    match store.append(subject, &event, &meta, AppendOptions::expect_last(0)).await {
        Ok(_) => Ok(true),
        Err(AppendError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Registers the seed vehicles (the simulated fleet).
pub async fn seed_vehicles(store: &EventStore) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    for v in &VEHICLES {
        let vin = Vin::parse(v.vin)?;
        let event = Event::VehicleRegistered(VehicleRegistered {
            vehicle_id: VehicleId::from_uuid(v.vehicle_id),
            vin: vin.clone(),
            make: v.make.into(),
            model: v.model.into(),
            year: v.year,
            metadata_json: r#"{"seed":true}"#.into(),
            registered_at: now,
        });
        if append_once(store, &Subject::vehicle(&vin), event).await? {
            tracing::info!(vin = %vin, "seeded vehicle");
        }
    }
    Ok(())
}

/// Creates the seed users (`sovd dev` only: production users come from `sovd user add`).
pub async fn seed_users(store: &EventStore, buckets: &sovd_nats::kv::Buckets) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    for (id, username, password, role) in USERS {
        let user_id = UserId::from_uuid(id);
        let name = sovd_domain::users::Username::parse(username)?;
        crate::accounts::reserve(buckets, &name, user_id).await?;
        if store.last_on_subject(sovd_nats::StreamName::Iam, Subject::user(user_id).as_str()).await?.is_some() {
            continue;
        }
        let password_hash = crate::accounts::hash_password(password).map_err(anyhow::Error::msg)?;
        let event = Event::UserCreated(UserCreated {
            user_id,
            username: username.into(),
            role,
            email: Some(format!("{username}@sovd.local")),
            password_hash,
            created_at: now,
        });
        if append_once(store, &Subject::user(user_id), event).await? {
            tracing::info!(username, role = %role, "seeded user");
        }
    }
    Ok(())
}
