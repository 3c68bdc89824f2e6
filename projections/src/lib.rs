//! sovd-projections: the Postgres read models.
//!
//! Owns the migrations, the projection workers that turn events into rows (a batch and its
//! checkpoint in one transaction) and the read queries the gateway uses. Depends on
//! `sovd-domain` and `sovd-nats`; never on the connector or the gateway.

pub mod apply;
pub mod audit;
pub mod commands;
pub mod digest;
pub mod error;
pub mod quarantine;
pub mod queries;
pub mod rebuild;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

pub use error::ProjectionError;
pub use worker::{Outcome, ProjectionWorker};

/// Runs the embedded migrations; safe to call at every start.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), ProjectionError> {
    sqlx::migrate!("./migrations").run(pool).await.map_err(|e| ProjectionError::Migrate(e.to_string()))
}
