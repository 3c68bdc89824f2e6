//! The commands projection, a batch at a time: the batch's events become column arrays and
//! each table gets one `UNNEST` statement, however many events the batch holds.
//!
//! A command's status events are folded per command before they reach Postgres, with the
//! same rule the upsert applies (a status never moves to a lower rank, the first completion
//! time stays), so one row per command goes out and the result equals applying the events
//! one by one.

use std::collections::HashMap;

use serde_json::Value;
use sovd_domain::Event;
use sovd_domain::lifecycle::CommandStatus;
use sovd_nats::StoredEvent;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ProjectionError;
use crate::apply::negative_response_json;

/// What a CommandRequested puts in its command's row.
#[derive(Debug, Clone)]
struct Request {
    user_id: Uuid,
    vehicle_id: Uuid,
    vin: String,
    command_name: String,
    command_params: Value,
    correlation_id: String,
    submitted_at: OffsetDateTime,
}

/// Where a command's status events leave its row.
#[derive(Debug, Clone)]
struct Status {
    status: CommandStatus,
    error_message: Option<String>,
    completed_at: Option<OffsetDateTime>,
    attempts: i32,
    negative_response: Option<Value>,
}

impl Status {
    /// The upsert's rule, in Rust: a higher rank replaces status and message, the first
    /// completion time and any negative response stay, attempts only grow.
    fn merge(&mut self, later: Status) {
        if later.status.rank() > self.status.rank() {
            self.status = later.status;
            self.error_message = later.error_message;
        }
        self.completed_at = self.completed_at.or(later.completed_at);
        self.attempts = self.attempts.max(later.attempts);
        self.negative_response = self.negative_response.take().or(later.negative_response);
    }
}

#[derive(Debug, Clone)]
struct Chunk {
    response_id: Uuid,
    command_id: Uuid,
    sequence_number: i32,
    payload: Value,
    is_final: bool,
    received_at: OffsetDateTime,
}

/// A batch of command events as rows: at most one request and one folded status per command.
#[derive(Debug, Default)]
pub struct CommandRows {
    requests: HashMap<Uuid, Request>,
    statuses: HashMap<Uuid, Status>,
    /// First-seen order of the commands, so statements write rows in a stable order.
    order: Vec<Uuid>,
    chunks: Vec<Chunk>,
}

impl CommandRows {
    pub fn from_events(events: &[StoredEvent]) -> Result<Self, ProjectionError> {
        let mut rows = Self::default();
        for stored in events {
            rows.add(stored)?;
        }
        Ok(rows)
    }

    pub fn add(&mut self, stored: &StoredEvent) -> Result<(), ProjectionError> {
        let status = |status, error_message: Option<String>, completed_at, attempts| Status {
            status,
            error_message,
            completed_at,
            attempts,
            negative_response: None,
        };
        let (id, update) = match &stored.event {
            Event::CommandRequested(e) => {
                let id = e.command_id.as_uuid();
                self.note(id);
                let request = Request {
                    user_id: e.user_id.as_uuid(),
                    vehicle_id: e.vehicle_id.as_uuid(),
                    vin: e.vin.to_string(),
                    command_name: e.operation.name().as_str().to_owned(),
                    command_params: e.operation.params_json(),
                    correlation_id: stored.meta.correlation_id.clone(),
                    submitted_at: e.requested_at,
                };
                self.requests.insert(id, request);
                return Ok(());
            }
            Event::ResponseChunk(e) => {
                self.chunks.push(Chunk {
                    response_id: e.response_id,
                    command_id: e.command_id.as_uuid(),
                    sequence_number: i32::try_from(e.sequence_number).unwrap_or(i32::MAX),
                    payload: serde_json::from_str(&e.payload_json)
                        .map_err(|err| ProjectionError::BadJson(err.to_string()))?,
                    is_final: e.is_final,
                    received_at: e.received_at,
                });
                return Ok(());
            }
            Event::CommandDispatched(e) => {
                let attempts = i32::try_from(e.attempt).unwrap_or(i32::MAX);
                (e.command_id, status(CommandStatus::InProgress, None, None, attempts))
            }
            Event::CommandQueued(e) => (e.command_id, status(CommandStatus::Queued, Some(e.reason.clone()), None, 0)),
            Event::CommandCompleted(e) => {
                (e.command_id, status(CommandStatus::Completed, None, Some(e.completed_at), 0))
            }
            Event::CommandFailed(e) => {
                let mut failed = status(CommandStatus::Failed, Some(e.reason.clone()), Some(e.completed_at), 0);
                failed.negative_response = e.negative_response.map(negative_response_json);
                (e.command_id, failed)
            }
            Event::CommandTimedOut(e) => {
                let message = format!("Vehicle connection timeout: no answer within {} ms", e.after_ms);
                (e.command_id, status(CommandStatus::TimedOut, Some(message), Some(e.completed_at), 0))
            }
            Event::CommandCancelled(e) => {
                let message = Some("cancelled by user".to_owned());
                (e.command_id, status(CommandStatus::Cancelled, message, Some(e.completed_at), 0))
            }
            _ => return Ok(()),
        };
        let id = id.as_uuid();
        self.note(id);
        match self.statuses.get_mut(&id) {
            Some(folded) => folded.merge(update),
            None => {
                self.statuses.insert(id, update);
            }
        }
        Ok(())
    }

    fn note(&mut self, id: Uuid) {
        if !self.requests.contains_key(&id) && !self.statuses.contains_key(&id) {
            self.order.push(id);
        }
    }

    /// Events in, rows out: how many rows this batch touches.
    pub fn len(&self) -> usize {
        self.order.len() + self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies the rows idempotently: re-applying a batch changes nothing.
    pub async fn upsert(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        self.write_requests(conn).await?;
        self.write_statuses(conn).await?;
        self.write_chunks(conn, "ON CONFLICT DO NOTHING").await
    }

    /// Plain inserts of the same rows into empty tables, no conflict handling: the rate
    /// Postgres accepts them at is the limit a catch-up is measured against.
    pub async fn insert_plain(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let mut c = Columns::default();
        for id in &self.order {
            c.push(*id, self.requests.get(id), self.statuses.get(id));
        }
        let query = sqlx::query(
            "INSERT INTO commands (command_id, user_id, vehicle_id, vin, command_name, command_params, correlation_id,
                                   submitted_at, status, status_rank, error_message, completed_at, attempts,
                                   negative_response)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::jsonb[], $7::text[],
                                  $8::timestamptz[], $9::text[], $10::int2[], $11::text[], $12::timestamptz[],
                                  $13::int4[], $14::jsonb[])",
        );
        c.bind_statuses(c.bind_requests(query)).execute(&mut *conn).await?;
        self.write_chunks(conn, "").await
    }

    async fn write_requests(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let mut c = Columns::default();
        for id in self.order.iter().filter(|id| self.requests.contains_key(id)) {
            c.push(*id, self.requests.get(id), None);
        }
        if c.command_id.is_empty() {
            return Ok(());
        }
        let query = sqlx::query(
            "INSERT INTO commands (command_id, user_id, vehicle_id, vin, command_name, command_params, correlation_id,
                                   submitted_at, status, status_rank)
             SELECT *, 'pending', 0 FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                                                $6::jsonb[], $7::text[], $8::timestamptz[])
             ON CONFLICT (command_id) DO UPDATE SET
               user_id = EXCLUDED.user_id, vehicle_id = EXCLUDED.vehicle_id, vin = EXCLUDED.vin,
               command_name = EXCLUDED.command_name, command_params = EXCLUDED.command_params,
               correlation_id = EXCLUDED.correlation_id, submitted_at = EXCLUDED.submitted_at",
        );
        c.bind_requests(query).execute(conn).await?;
        Ok(())
    }

    async fn write_statuses(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let mut c = Columns::default();
        for id in self.order.iter().filter(|id| self.statuses.contains_key(id)) {
            c.push(*id, None, self.statuses.get(id));
        }
        if c.command_id.is_empty() {
            return Ok(());
        }
        let query = sqlx::query(
            "INSERT INTO commands (command_id, status, status_rank, error_message, completed_at, attempts,
                                   negative_response)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int2[], $4::text[], $5::timestamptz[], $6::int4[],
                                  $7::jsonb[])
             ON CONFLICT (command_id) DO UPDATE SET
               status = CASE WHEN EXCLUDED.status_rank > commands.status_rank THEN EXCLUDED.status
                             ELSE commands.status END,
               error_message = CASE WHEN EXCLUDED.status_rank > commands.status_rank THEN EXCLUDED.error_message
                                    ELSE commands.error_message END,
               completed_at = COALESCE(commands.completed_at, EXCLUDED.completed_at),
               status_rank = GREATEST(commands.status_rank, EXCLUDED.status_rank),
               attempts = GREATEST(commands.attempts, EXCLUDED.attempts),
               negative_response = COALESCE(commands.negative_response, EXCLUDED.negative_response)",
        );
        c.bind_statuses(query.bind(&c.command_id)).execute(conn).await?;
        Ok(())
    }

    async fn write_chunks(&self, conn: &mut PgConnection, on_conflict: &str) -> Result<(), ProjectionError> {
        if self.chunks.is_empty() {
            return Ok(());
        }
        let chunks = &self.chunks;
        let sql = format!(
            "INSERT INTO responses (response_id, command_id, sequence_number, response_payload, is_final, received_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int4[], $4::jsonb[], $5::bool[], $6::timestamptz[])
             {on_conflict}"
        );
        // `on_conflict` is one of two literals in this file.
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(chunks.iter().map(|c| c.response_id).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.command_id).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.sequence_number).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.payload.clone()).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.is_final).collect::<Vec<_>>())
            .bind(chunks.iter().map(|c| c.received_at).collect::<Vec<_>>())
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// The `commands` table as column arrays, one element per command.
#[derive(Default)]
struct Columns {
    command_id: Vec<Uuid>,
    user_id: Vec<Option<Uuid>>,
    vehicle_id: Vec<Option<Uuid>>,
    vin: Vec<Option<String>>,
    command_name: Vec<Option<String>>,
    command_params: Vec<Option<Value>>,
    correlation_id: Vec<Option<String>>,
    submitted_at: Vec<Option<OffsetDateTime>>,
    status: Vec<&'static str>,
    status_rank: Vec<i16>,
    error_message: Vec<Option<String>>,
    completed_at: Vec<Option<OffsetDateTime>>,
    attempts: Vec<i32>,
    negative_response: Vec<Option<Value>>,
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl Columns {
    fn push(&mut self, id: Uuid, request: Option<&Request>, status: Option<&Status>) {
        self.command_id.push(id);
        self.user_id.push(request.map(|r| r.user_id));
        self.vehicle_id.push(request.map(|r| r.vehicle_id));
        self.vin.push(request.map(|r| r.vin.clone()));
        self.command_name.push(request.map(|r| r.command_name.clone()));
        self.command_params.push(request.map(|r| r.command_params.clone()));
        self.correlation_id.push(request.map(|r| r.correlation_id.clone()));
        self.submitted_at.push(request.map(|r| r.submitted_at));
        let current = status.map_or(CommandStatus::Pending, |s| s.status);
        self.status.push(current.as_str());
        self.status_rank.push(i16::from(current.rank()));
        self.error_message.push(status.and_then(|s| s.error_message.clone()));
        self.completed_at.push(status.and_then(|s| s.completed_at));
        self.attempts.push(status.map_or(0, |s| s.attempts));
        self.negative_response.push(status.and_then(|s| s.negative_response.clone()));
    }

    /// command_id and the request's columns, in table order: eight parameters.
    fn bind_requests<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.command_id)
            .bind(&self.user_id)
            .bind(&self.vehicle_id)
            .bind(&self.vin)
            .bind(&self.command_name)
            .bind(&self.command_params)
            .bind(&self.correlation_id)
            .bind(&self.submitted_at)
    }

    /// The status columns: six parameters.
    fn bind_statuses<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.status)
            .bind(&self.status_rank)
            .bind(&self.error_message)
            .bind(&self.completed_at)
            .bind(&self.attempts)
            .bind(&self.negative_response)
    }
}
