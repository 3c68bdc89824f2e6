//! A projection never stalls on one event. When a batch fails because of what an event holds
//! (a value Postgres cannot store, a constraint it breaks, JSON that is not JSON), the batch
//! is applied again one event at a time, each in its own savepoint; an event that still fails
//! is set aside in `projection_quarantine` with its error, and the projection goes on.
//! Failures of the database itself (connection lost, timeouts) are not the event's fault:
//! they fail the batch, which is retried whole, as before.

use sovd_nats::{EventStore, StoredEvent, StreamName};
use sqlx::{Connection, PgConnection};

use crate::ProjectionError;
use crate::apply::{Projection, apply_events};

/// Longest rendering of an event kept for the operator (the log keeps all of it).
const EVENT_TEXT_MAX: usize = 8 * 1024;

impl ProjectionError {
    /// True when the event's content caused the failure, so retrying the same batch can never
    /// succeed: Postgres data exceptions (class 22: a NUL byte, an invalid escape, a value out
    /// of range) and integrity violations (class 23), and JSON that does not parse.
    pub fn is_about_the_event(&self) -> bool {
        match self {
            Self::BadJson(_) => true,
            Self::Database(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
            }
            Self::Database(sqlx::Error::Encode(_)) => true,
            _ => false,
        }
    }
}

/// One event set aside.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Quarantined {
    pub projection: String,
    pub stream: String,
    pub stream_sequence: i64,
    pub event_type: String,
    pub event: String,
    pub error: String,
    pub attempts: i32,
    pub last_failed_at: time::OffsetDateTime,
}

/// Applies `events` inside the caller's transaction; events that cannot be applied are
/// quarantined instead. Returns how many were quarantined.
pub async fn apply_or_set_aside(
    conn: &mut PgConnection,
    projection: Projection,
    stream: StreamName,
    events: &[StoredEvent],
) -> Result<usize, ProjectionError> {
    // The whole batch in a savepoint first: the common case costs one extra statement pair.
    let mut whole = conn.begin().await?;
    match apply_events(&mut whole, projection, events).await {
        Ok(()) => {
            whole.commit().await?;
            return Ok(0);
        }
        Err(error) if error.is_about_the_event() => whole.rollback().await?,
        Err(error) => return Err(error),
    }
    let mut set_aside = 0;
    for event in events {
        let mut one = conn.begin().await?;
        match apply_events(&mut one, projection, std::slice::from_ref(event)).await {
            Ok(()) => one.commit().await?,
            Err(error) if error.is_about_the_event() => {
                one.rollback().await?;
                record(conn, projection, stream, event, &error).await?;
                set_aside += 1;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(set_aside)
}

/// Printable, whatever the event holds: Debug escapes control characters, NUL among them.
fn printable(text: &str) -> String {
    let escaped: String = text.chars().flat_map(char::escape_debug).collect();
    escaped.chars().take(EVENT_TEXT_MAX).collect()
}

async fn record(
    conn: &mut PgConnection,
    projection: Projection,
    stream: StreamName,
    event: &StoredEvent,
    error: &ProjectionError,
) -> Result<(), ProjectionError> {
    tracing::error!(
        projection = projection.name(),
        stream = stream.as_str(),
        sequence = event.stream_sequence,
        event_type = event.event.kind().event_type,
        error = %error,
        "event set aside: the projection cannot apply it (sovd projections status lists it)"
    );
    sqlx::query(
        "INSERT INTO projection_quarantine (projection, stream, stream_sequence, event_type, event, error)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (projection, stream, stream_sequence) DO UPDATE
         SET error = EXCLUDED.error, attempts = projection_quarantine.attempts + 1, last_failed_at = now()",
    )
    .bind(projection.name())
    .bind(stream.as_str())
    .bind(i64::try_from(event.stream_sequence).unwrap_or(i64::MAX))
    .bind(event.event.kind().event_type)
    .bind(printable(&format!("{:?}", event.event)))
    .bind(printable(&error.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Every event set aside, oldest first.
pub async fn list<'e>(db: impl sqlx::PgExecutor<'e>) -> Result<Vec<Quarantined>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT projection, stream, stream_sequence, event_type, event, error, attempts, last_failed_at
         FROM projection_quarantine ORDER BY first_failed_at, projection, stream, stream_sequence",
    )
    .fetch_all(db)
    .await?)
}

/// Events set aside per projection.
pub async fn counts<'e>(db: impl sqlx::PgExecutor<'e>) -> Result<Vec<(String, i64)>, ProjectionError> {
    Ok(sqlx::query_as("SELECT projection, count(*) FROM projection_quarantine GROUP BY projection ORDER BY projection")
        .fetch_all(db)
        .await?)
}

/// What a retry did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Retried {
    pub applied: usize,
    pub still_failing: usize,
}

/// Applies every quarantined event of `projection` (all when `None`) again, read afresh from
/// the log; those that now apply leave the quarantine, the others stay with their new error.
/// Applying is idempotent, so a retry after the projection moved on is safe.
pub async fn retry(
    pool: &sqlx::PgPool,
    store: &EventStore,
    projection: Option<Projection>,
) -> Result<Retried, ProjectionError> {
    let mut outcome = Retried::default();
    for entry in list(pool).await? {
        let (Some(p), Some(stream)) = (Projection::from_name(&entry.projection), StreamName::from_name(&entry.stream))
        else {
            continue;
        };
        if projection.is_some_and(|wanted| wanted != p) {
            continue;
        }
        let sequence = u64::try_from(entry.stream_sequence).unwrap_or(0);
        let event = store.next_on_subject(stream, stream.subjects(), sequence).await?;
        let Some(event) = event.filter(|e| e.stream_sequence == sequence) else { continue };
        let mut tx = pool.begin().await?;
        let quarantined = apply_or_set_aside(&mut tx, p, stream, std::slice::from_ref(&event)).await?;
        if quarantined == 0 {
            sqlx::query(
                "DELETE FROM projection_quarantine WHERE projection = $1 AND stream = $2 AND stream_sequence = $3",
            )
            .bind(p.name())
            .bind(stream.as_str())
            .bind(entry.stream_sequence)
            .execute(&mut *tx)
            .await?;
            outcome.applied += 1;
        } else {
            outcome.still_failing += 1;
        }
        tx.commit().await?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_copy_of_an_event_is_printable() {
        assert_eq!(printable("a\u{0}b\nc"), "a\\0b\\nc");
        assert_eq!(printable(&"x".repeat(20_000)).len(), EVENT_TEXT_MAX);
    }
}
