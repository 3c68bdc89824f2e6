//! `--until`: how far a point-in-time restore goes, as a time (every stream) or as stream
//! sequences (the named streams; the others in full).

use std::collections::BTreeMap;
use std::str::FromStr;

use sovd_nats::StreamName;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How far a point-in-time restore goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    /// Every message the server stored at or before this time.
    Time(OffsetDateTime),
    /// The named streams up to these sequences; the others in full.
    Sequences(BTreeMap<String, u64>),
}

impl FromStr for Until {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(time) = OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(Self::Time(time));
        }
        let mut sequences = BTreeMap::new();
        for part in s.split(',') {
            let (stream, sequence) = part.split_once(':').ok_or_else(|| {
                format!("{s:?} is neither an RFC 3339 time (2026-11-29T14:00:00Z) nor STREAM:SEQUENCE (commands:1200)")
            })?;
            let stream =
                StreamName::parse(stream.trim()).ok_or_else(|| format!("no event stream is called {stream}"))?;
            let sequence = sequence.trim().parse().map_err(|_| format!("{sequence:?} is not a sequence number"))?;
            sequences.insert(stream.as_str().to_owned(), sequence);
        }
        Ok(Self::Sequences(sequences))
    }
}

impl std::fmt::Display for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Time(time) => f.write_str(&time.format(&Rfc3339).unwrap_or_default()),
            Self::Sequences(map) => {
                let parts: Vec<String> = map.iter().map(|(s, n)| format!("{s}:{n}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

impl Until {
    pub fn allows(&self, stream: &str, sequence: u64, stored: OffsetDateTime) -> bool {
        match self {
            Self::Time(time) => stored <= *time,
            Self::Sequences(map) => map.get(stream).is_none_or(|last| sequence <= *last),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn until_reads_a_time_or_stream_sequences_and_says_what_it_is() {
        let time: Until = "2026-11-29T14:00:00Z".parse().unwrap();
        assert_eq!(time, Until::Time(time::macros::datetime!(2026-11-29 14:00:00 UTC)));
        let sequences: Until = "commands:1200, SOVD_RESPONSES:77".parse().unwrap();
        assert_eq!(sequences.to_string(), "SOVD_COMMANDS:1200,SOVD_RESPONSES:77");
        assert!(sequences.allows("SOVD_COMMANDS", 1200, OffsetDateTime::now_utc()));
        assert!(!sequences.allows("SOVD_COMMANDS", 1201, OffsetDateTime::UNIX_EPOCH));
        assert!(sequences.allows("SOVD_FLEET", u64::MAX, OffsetDateTime::now_utc()), "unnamed streams go in full");
        assert!("yesterday".parse::<Until>().unwrap_err().contains("RFC 3339"));
        assert!("nope:1".parse::<Until>().unwrap_err().contains("no event stream"));
    }
}
