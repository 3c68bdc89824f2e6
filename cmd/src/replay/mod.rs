//! Replay for analysts: the event log read back, filtered, in time order across streams,
//! and optionally followed live. `sovd replay` and `GET /api/v1/events` both use it.
//!
//! Each selected stream gets an ordered consumer narrowed by subject where the filter allows
//! (a vehicle, a command). The streams are merged by when each event occurred until every
//! one has delivered what it held at the start; after that, `follow` passes new events on as
//! they arrive. Filters the subject cannot express (operation, user, type, time) are checked
//! per event; the operation and user of a response event come from its command's request.

pub mod as_of;
pub mod record;

use std::collections::HashMap;

use futures::StreamExt;
use futures::stream::SelectAll;
use sovd_domain::{CommandId, Event, UserId, Vin};
use sovd_nats::{EventStore, ReadError, Start, StreamName, Tail, TailEvent};
use time::{Duration, OffsetDateTime};

/// Events are stored moments after they occur; a time window starts this much earlier on
/// the server's clock, and the exact bound is checked on each event's own time.
const CLOCK_MARGIN: Duration = Duration::minutes(5);

/// What to replay. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Streams to read; all of them when empty.
    pub streams: Vec<StreamName>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub vin: Option<Vin>,
    /// An operation name from the catalogue, e.g. `ClearDTC`.
    pub operation: Option<String>,
    /// Event type names, e.g. `CommandFailed`.
    pub event_types: Vec<String>,
    pub user: Option<UserId>,
    pub command_id: Option<CommandId>,
}

impl Filter {
    fn streams(&self) -> Vec<StreamName> {
        if self.streams.is_empty() { StreamName::ALL.to_vec() } else { self.streams.clone() }
    }

    /// The subject filter for `stream`, or `None` when nothing on it can match.
    fn subject(&self, stream: StreamName) -> Option<String> {
        let vin = self.vin.as_ref().map_or_else(|| "*".to_owned(), ToString::to_string);
        let command = self.command_id.map_or_else(|| "*".to_owned(), |id| id.to_string());
        let narrowed = self.vin.is_some() || self.command_id.is_some();
        match stream {
            StreamName::Commands if narrowed => Some(format!("sovd.cmd.{vin}.{command}")),
            StreamName::Responses if narrowed => Some(format!("sovd.rsp.{vin}.{command}")),
            StreamName::Fleet if self.command_id.is_some() || self.operation.is_some() => None,
            StreamName::Fleet if self.vin.is_some() => Some(format!("sovd.veh.{vin}")),
            // Users and operations concern no vehicle and no command.
            StreamName::Iam | StreamName::Ops if narrowed || self.operation.is_some() => None,
            _ => Some(stream.subjects().to_owned()),
        }
    }

    fn in_window(&self, at: OffsetDateTime) -> bool {
        self.from.is_none_or(|from| at >= from) && self.to.is_none_or(|to| at <= to)
    }
}

/// A filter as typed on the command line or in a query string. Lists are comma-separated.
#[derive(Debug, Clone, Default, clap::Args, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    /// Streams to read: commands, responses, fleet, iam, ops (all by default).
    #[arg(long)]
    pub stream: Option<String>,
    /// Events at or after: RFC 3339, a date, or an age such as 7d.
    #[arg(long)]
    pub from: Option<String>,
    /// Events at or before: RFC 3339, a date, or an age such as 1h.
    #[arg(long)]
    pub to: Option<String>,
    /// A VIN: that vehicle's commands and connectivity.
    #[arg(long)]
    pub vehicle: Option<String>,
    /// An operation, e.g. ClearDTC: the requests and every event of those commands.
    #[arg(long)]
    pub operation: Option<String>,
    /// Event types, e.g. CommandFailed,CommandTimedOut.
    #[arg(long = "type")]
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// A username or user id: what they did, and every event of their commands.
    #[arg(long)]
    pub user: Option<String>,
    /// One command's events.
    #[arg(long)]
    pub command_id: Option<String>,
}

fn list(raw: &Option<String>) -> Vec<&str> {
    raw.as_deref().map(|r| r.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
}

impl RawFilter {
    /// Checks every field; the error names the field and says what would be valid.
    pub async fn resolve(&self, store: &EventStore, now: OffsetDateTime) -> Result<Filter, FilterError> {
        let invalid = |field: &'static str, message: String| FilterError::Invalid { field, message };
        let mut streams = Vec::new();
        for name in list(&self.stream) {
            let stream = StreamName::parse(name).ok_or_else(|| {
                invalid("stream", format!("unknown stream {name:?}: use commands, responses, fleet, iam or ops"))
            })?;
            streams.push(stream);
        }
        let time = |raw: &Option<String>, field| {
            raw.as_deref().map(|r| parse_time(r, now).map_err(|m| invalid(field, m))).transpose()
        };
        let mut event_types = Vec::new();
        for name in list(&self.event_type) {
            let known = sovd_domain::codec::EVENT_TYPES.iter().find(|t| t.eq_ignore_ascii_case(name));
            let known = known.ok_or_else(|| {
                let all = sovd_domain::codec::EVENT_TYPES.join(", ");
                invalid("type", format!("unknown event type {name:?}; known: {all}"))
            })?;
            event_types.push((*known).to_owned());
        }
        let operation = match self.operation.as_deref() {
            Some(raw) => {
                let names = sovd_domain::OperationName::ALL.iter();
                let found = names.map(|n| n.as_str()).find(|n| n.eq_ignore_ascii_case(raw));
                let name = found.ok_or_else(|| match sovd_domain::OperationName::parse(raw) {
                    Err(e) => invalid("operation", e.to_string()),
                    Ok(_) => invalid("operation", format!("unknown operation {raw:?}")),
                })?;
                Some(name.to_owned())
            }
            None => None,
        };
        let user = match self.user.as_deref() {
            Some(raw) => Some(
                resolve_user(store, raw)
                    .await?
                    .ok_or_else(|| invalid("user", format!("no user {raw:?} in SOVD_IAM")))?,
            ),
            None => None,
        };
        Ok(Filter {
            streams,
            from: time(&self.from, "from")?,
            to: time(&self.to, "to")?,
            vin: self.vehicle.as_deref().map(Vin::parse).transpose().map_err(|e| invalid("vehicle", e.to_string()))?,
            operation,
            event_types,
            user,
            command_id: self
                .command_id
                .as_deref()
                .map(CommandId::parse)
                .transpose()
                .map_err(|e| invalid("command_id", e.to_string()))?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The request behind a command: what the operation and user filters need.
#[derive(Debug, Clone)]
struct Request {
    operation: String,
    user: UserId,
}

impl Request {
    fn of(requested: &sovd_domain::events::CommandRequested) -> Self {
        Self { operation: requested.operation.name().as_str().to_owned(), user: requested.user_id }
    }
}

struct Source {
    tail: Tail,
    head: Option<TailEvent>,
    /// The stream's last sequence when the replay opened: the catch-up ends there.
    end: u64,
    /// Delivered everything it held when the replay opened.
    caught_up: bool,
}

/// An open replay: call [`Replay::next`] until it returns `None`.
pub struct Replay {
    store: EventStore,
    filter: Filter,
    sources: Vec<Source>,
    live: Option<SelectAll<futures::stream::BoxStream<'static, Result<TailEvent, ReadError>>>>,
    follow: bool,
    requests: HashMap<CommandId, Option<Request>>,
    /// Events the streams held at the start that the filter's subjects select.
    pub total: u64,
    /// Events read so far, matching or not.
    pub scanned: u64,
}

impl Replay {
    pub async fn open(store: &EventStore, filter: Filter, follow: bool) -> Result<Self, ReadError> {
        let start = filter.from.map_or(Start::Sequence(1), |from| Start::Time(from - CLOCK_MARGIN));
        let mut sources = Vec::new();
        for stream in filter.streams() {
            let Some(subject) = filter.subject(stream) else { continue };
            let end = store.last_sequence(stream).await?;
            let tail = store.tail(stream, &subject, start).await?;
            let caught_up = tail.pending == 0;
            sources.push(Source { tail, head: None, end, caught_up });
        }
        let total = sources.iter().map(|s| s.tail.pending).sum();
        Ok(Self {
            store: store.clone(),
            filter,
            sources,
            live: None,
            follow,
            requests: HashMap::new(),
            total,
            scanned: 0,
        })
    }

    /// The next matching event; `None` at the end (never, when following).
    pub async fn next(&mut self) -> Option<Result<TailEvent, ReadError>> {
        loop {
            let event = match self.next_any().await? {
                Ok(event) => event,
                Err(error) => return Some(Err(error)),
            };
            self.scanned += 1;
            match self.matches(&event).await {
                Ok(true) => return Some(Ok(event)),
                Ok(false) => {}
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// The next event of any source: merged by time while catching up, then as they come.
    async fn next_any(&mut self) -> Option<Result<TailEvent, ReadError>> {
        for source in self.sources.iter_mut().filter(|s| !s.caught_up && s.head.is_none()) {
            match source.tail.events.next().await {
                Some(Ok(event)) => source.head = Some(event),
                Some(Err(error)) => return Some(Err(error)),
                None => source.caught_up = true,
            }
        }
        let earliest = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.head.as_ref().map(|h| ((h.stored.meta.occurred_at, i, h.stored.stream_sequence), i)))
            .min()
            .map(|(_, i)| i);
        if let Some(i) = earliest {
            let source = &mut self.sources[i];
            let event = source.head.take()?;
            let past_window =
                self.filter.to.is_some_and(|to| event.stored.meta.occurred_at > to + CLOCK_MARGIN) && !self.follow;
            // Under load a filtered stream may never run dry: stop at the end it had at the start.
            source.caught_up = event.pending == 0 || event.stored.stream_sequence >= source.end || past_window;
            return Some(Ok(event));
        }
        if !self.follow {
            return None;
        }
        let live = self
            .live
            .get_or_insert_with(|| futures::stream::select_all(self.sources.drain(..).map(|s| s.tail.events.boxed())));
        live.next().await
    }

    async fn matches(&mut self, event: &TailEvent) -> Result<bool, ReadError> {
        let stored = &event.stored;
        let filter = &self.filter;
        if !filter.in_window(stored.meta.occurred_at) {
            return Ok(false);
        }
        let kind = stored.event.kind().event_type;
        if !filter.event_types.is_empty() && !filter.event_types.iter().any(|t| t == kind) {
            return Ok(false);
        }
        if filter.operation.is_none() && filter.user.is_none() {
            return Ok(true);
        }
        let request = match stored.event.command_id() {
            Some(id) => self.request(id, &stored.event).await?,
            None => None,
        };
        let filter = &self.filter;
        if let Some(operation) = &filter.operation
            && request.as_ref().is_none_or(|r| !r.operation.eq_ignore_ascii_case(operation))
        {
            return Ok(false);
        }
        if let Some(user) = filter.user {
            let actor = format!("user:{user}");
            let own_iam = stored.subject.starts_with(&format!("sovd.iam.{user}"));
            return Ok(stored.meta.actor == actor || own_iam || request.is_some_and(|r| r.user == user));
        }
        Ok(true)
    }

    /// The request of `id`: from the event itself, from an earlier one, or looked up once.
    async fn request(&mut self, id: CommandId, event: &Event) -> Result<Option<Request>, ReadError> {
        if let Event::CommandRequested(e) = event {
            let request = Request::of(e);
            self.requests.insert(id, Some(request.clone()));
            return Ok(Some(request));
        }
        if let Some(known) = self.requests.get(&id) {
            return Ok(known.clone());
        }
        let found = self.store.next_on_subject(StreamName::Commands, &format!("sovd.cmd.*.{id}"), 1).await?;
        let request = found.and_then(|stored| match stored.event {
            Event::CommandRequested(e) => Some(Request::of(&e)),
            _ => None,
        });
        self.requests.insert(id, request.clone());
        Ok(request)
    }
}

/// The user a name or id stands for, from the account events on SOVD_IAM.
pub async fn resolve_user(store: &EventStore, name_or_id: &str) -> Result<Option<UserId>, ReadError> {
    if let Ok(id) = UserId::parse(name_or_id) {
        return Ok(Some(id));
    }
    let accounts = store.read_filtered(StreamName::Iam, "sovd.iam.*").await?;
    Ok(accounts.into_iter().find_map(|stored| match stored.event {
        Event::UserCreated(e) if e.username.eq_ignore_ascii_case(name_or_id) => Some(e.user_id),
        _ => None,
    }))
}

/// Parses a time bound: RFC 3339, a date (midnight UTC), or an age such as `7d`, `12h`, `30m`.
pub fn parse_time(raw: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(at);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = time::Date::parse(raw, &date_format) {
        return Ok(date.midnight().assume_utc());
    }
    // Any input reaches here (a query string): split on a character boundary and do the
    // arithmetic checked, so no text can panic the parser.
    let Some((unit_at, unit)) = raw.char_indices().next_back() else { return Err(bad_time(raw)) };
    let amount: u64 = raw[..unit_at].parse().map_err(|_| bad_time(raw))?;
    let seconds_per_unit: u64 = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad_time(raw)),
    };
    amount
        .checked_mul(seconds_per_unit)
        .and_then(|secs| i64::try_from(secs).ok())
        .and_then(|secs| now.checked_sub(Duration::seconds(secs)))
        .ok_or_else(|| format!("{raw:?} reaches back before the calendar does"))
}

fn bad_time(raw: &str) -> String {
    format!("{raw:?} is not a time: use RFC 3339 (2026-11-19T08:00:00Z), a date (2026-11-19) or an age (7d, 12h, 30m)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_read_as_rfc3339_dates_or_ages() {
        let now = time::macros::datetime!(2026-11-26 12:00 UTC);
        assert_eq!(parse_time("2026-11-19T08:00:00Z", now).unwrap(), time::macros::datetime!(2026-11-19 8:00 UTC));
        assert_eq!(parse_time("2026-11-19", now).unwrap(), time::macros::datetime!(2026-11-19 0:00 UTC));
        assert_eq!(parse_time("7d", now).unwrap(), time::macros::datetime!(2026-11-19 12:00 UTC));
        assert_eq!(parse_time("90m", now).unwrap(), time::macros::datetime!(2026-11-26 10:30 UTC));
        assert!(parse_time("last tuesday", now).unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn time_bounds_that_end_in_a_wide_character_or_overflow_are_errors_not_panics() {
        let now = time::macros::datetime!(2026-11-26 12:00 UTC);
        assert!(parse_time("1€", now).is_err());
        assert!(parse_time("€", now).is_err());
        assert!(parse_time("", now).is_err());
        assert!(parse_time("99999999999999999d", now).is_err());
        assert!(parse_time(&format!("{}s", u64::MAX), now).is_err());
        assert!(parse_time("-5d", now).is_err());
    }

    proptest::proptest! {
        #[test]
        fn no_text_panics_the_time_parser(raw in "\\PC{0,24}|[0-9]{1,25}[dhms€]") {
            let now = time::macros::datetime!(2026-11-26 12:00 UTC);
            let _ = parse_time(&raw, now);
        }
    }

    #[test]
    fn subjects_narrow_to_the_vehicle_or_command_and_skip_streams_that_cannot_match() {
        let vin = Vin::parse("1HGBH41JXMN109186").unwrap();
        let id = CommandId::new();
        let by_vehicle = Filter { vin: Some(vin.clone()), ..Filter::default() };
        assert_eq!(by_vehicle.subject(StreamName::Commands).unwrap(), format!("sovd.cmd.{vin}.*"));
        assert_eq!(by_vehicle.subject(StreamName::Fleet).unwrap(), format!("sovd.veh.{vin}"));
        assert_eq!(by_vehicle.subject(StreamName::Iam), None);
        let by_command = Filter { command_id: Some(id), ..Filter::default() };
        assert_eq!(by_command.subject(StreamName::Responses).unwrap(), format!("sovd.rsp.*.{id}"));
        assert_eq!(by_command.subject(StreamName::Fleet), None);
        assert_eq!(Filter::default().subject(StreamName::Ops).unwrap(), "sovd.ops.>");
    }
}
