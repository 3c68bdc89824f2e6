//! Why a command does not go out yet: its vehicle is offline (the offline queue), or an
//! earlier command for the same vehicle has not ended (one command at a time, in order).

use std::time::Duration;

use sovd_domain::events::CommandRequested;
use sovd_domain::lifecycle::{CommandIntent, CommandStatus};
use sovd_nats::{EventMeta, StoredEvent};
use time::OffsetDateTime;

use super::{CommandWorker, Handled, Log, Step, WorkerError};
use crate::lane::Turn;
use crate::transport::VehicleTransport;

impl<T: VehicleTransport> CommandWorker<T> {
    /// A command for an offline vehicle waits (status `queued`, visible) up to the queue's
    /// time limit and runs when the vehicle is back; past the limit it fails, saying so.
    /// `None` when the vehicle is online (or the command already went out).
    pub(super) async fn queue_if_offline(
        &self,
        request: &CommandRequested,
        log: &mut Log,
        meta: &EventMeta,
    ) -> Result<Option<Handled>, WorkerError> {
        let waiting = matches!(log.state.status, Some(CommandStatus::Pending | CommandStatus::Queued));
        if !waiting || self.transport.is_connected(&request.vin) {
            return Ok(None);
        }
        let now = OffsetDateTime::now_utc();
        let ttl = self.config.queue_ttl;
        let intent = match log.state.queued_until {
            None => CommandIntent::Queue {
                reason: format!("vehicle {} is not connected; waiting up to {} s for it", request.vin, ttl.as_secs()),
                until: now + ttl,
                at: now,
            },
            Some(until) if now >= until => CommandIntent::Fail {
                reason: format!(
                    "vehicle {} stayed offline for the queue's {} s; the command was not sent",
                    request.vin,
                    ttl.as_secs()
                ),
                at: now,
            },
            Some(_) => return Ok(Some(Handled::Waiting(self.config.queue_poll))),
        };
        let failing = matches!(intent, CommandIntent::Fail { .. });
        Ok(Some(match self.record(log, intent, meta).await? {
            Step::Appended if failing => Handled::Terminal(CommandStatus::Failed),
            Step::Appended => Handled::Waiting(self.config.queue_poll),
            // Someone else wrote meanwhile; the next delivery decides again.
            Step::Conflict => Handled::Waiting(Duration::ZERO),
        }))
    }

    /// A vehicle runs one command at a time, in submission order: a command that has not
    /// started waits (status `queued`, saying behind which command) until every earlier
    /// command for its vehicle has ended.
    pub(super) async fn wait_for_turn(
        &self,
        stored: &StoredEvent,
        request: &CommandRequested,
        log: &mut Log,
    ) -> Result<Option<Handled>, WorkerError> {
        if !matches!(log.state.status, Some(CommandStatus::Pending | CommandStatus::Queued)) {
            return Ok(None);
        }
        let Turn::Behind(earlier) = self.lanes.turn(&request.vin, stored.stream_sequence).await? else {
            return Ok(None);
        };
        if log.state.status == Some(CommandStatus::Pending) {
            let now = OffsetDateTime::now_utc();
            let reason = format!(
                "waiting for command {earlier} to finish: vehicle {} runs one command at a time, in the order submitted",
                request.vin
            );
            let queue = CommandIntent::Queue { reason, until: now + self.config.queue_ttl, at: now };
            // Losing this race only means someone else wrote first; the next look decides again.
            let _ = self.record(log, queue, &stored.meta).await?;
        }
        Ok(Some(Handled::Waiting(self.config.lane_poll)))
    }
}
