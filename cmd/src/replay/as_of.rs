//! `sovd replay --as-of <time>`: every command as it stood at that moment, folded from its
//! events with the same `evolve` the connector decides with.

use std::collections::HashMap;

use serde_json::{Value, json};
use sovd_domain::lifecycle::{CommandState, evolve};
use sovd_domain::{CommandId, Event};
use sovd_nats::StoredEvent;
use time::OffsetDateTime;

use super::record::rfc3339;
use crate::gateway::csv::field;

#[derive(Debug, Default)]
struct Command {
    state: CommandState,
    vin: Option<String>,
    user_id: Option<String>,
    submitted_at: Option<OffsetDateTime>,
    completed_at: Option<OffsetDateTime>,
    last_event_at: Option<OffsetDateTime>,
    events: u64,
}

/// Commands folded from their events, in the order they first appeared.
#[derive(Debug, Default)]
pub struct AsOf {
    commands: HashMap<CommandId, Command>,
    order: Vec<CommandId>,
}

impl AsOf {
    pub fn apply(&mut self, stored: &StoredEvent) {
        let Some(id) = stored.event.command_id() else { return };
        let command = self.commands.entry(id).or_insert_with(|| {
            self.order.push(id);
            Command::default()
        });
        command.state = evolve(std::mem::take(&mut command.state), &stored.event);
        command.events += 1;
        command.last_event_at = Some(stored.meta.occurred_at);
        match &stored.event {
            Event::CommandRequested(e) => {
                command.vin = Some(e.vin.to_string());
                command.user_id = Some(e.user_id.to_string());
                command.submitted_at = Some(e.requested_at);
            }
            Event::CommandCompleted(e) => command.completed_at = Some(e.completed_at),
            Event::CommandFailed(e) => command.completed_at = Some(e.completed_at),
            Event::CommandTimedOut(e) => command.completed_at = Some(e.completed_at),
            Event::CommandCancelled(e) => command.completed_at = Some(e.completed_at),
            _ => {}
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// One JSON object per command.
    pub fn rows(&self) -> impl Iterator<Item = Value> + '_ {
        self.order.iter().filter_map(|id| {
            let c = self.commands.get(id)?;
            Some(json!({
                "command_id": id,
                "vin": c.vin,
                "operation": c.state.operation.as_ref().map(|o| o.name().as_str()),
                "params": c.state.operation.as_ref().map(|o| o.params_json()),
                "user_id": c.user_id,
                "status": c.state.status.map(|s| s.as_str()),
                "attempts": c.state.attempts,
                "error_message": c.state.error_message,
                "negative_response": c.state.negative_response.map(sovd_projections::apply::negative_response_json),
                "submitted_at": c.submitted_at.map(rfc3339),
                "completed_at": c.completed_at.map(rfc3339),
                "last_event_at": c.last_event_at.map(rfc3339),
                "events": c.events,
            }))
        })
    }
}

pub const CSV_HEADER: &str =
    "command_id,vin,operation,user_id,status,attempts,error_message,submitted_at,completed_at,last_event_at,events\n";

/// A command row as CSV, from its JSON object.
pub fn csv_line(row: &Value) -> String {
    let columns = CSV_HEADER.trim_end().split(',');
    let cells: Vec<String> = columns
        .map(|column| match &row[column] {
            Value::Null => String::new(),
            Value::String(text) => field(text),
            other => field(&other.to_string()),
        })
        .collect();
    format!("{}\n", cells.join(","))
}
