//! An archive segment: a signature line, then the stream's messages first..=last (postcard,
//! LZ4). Named `archive/<STREAM>/<first>-<last>-<sha256>.seg` (`layout.rs`), so a listing
//! shows where each starts and ends and a damaged one is known before it is read.

use serde::{Deserialize, Serialize};
use sovd_nats::raw::RawMessage;

use super::checksum::sha256_hex;
use super::layout::archive_prefix;
use super::names;
use super::signing::{Keys, Purpose, Signature, SignatureError};

/// A segment as named in storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName {
    pub key: String,
    pub stream: String,
    pub first: u64,
    pub last: u64,
    pub sha256: String,
}

impl SegmentName {
    pub fn new(stream: &str, first: u64, last: u64, sha256: &str) -> Self {
        Self {
            key: format!("archive/{stream}/{first:020}-{last:020}-{sha256}.seg"),
            stream: stream.to_owned(),
            first,
            last,
            sha256: sha256.into(),
        }
    }

    /// Parses a key of a segment of `stream`, exactly as [`SegmentName::new`] writes it (an
    /// event stream's name, 20-digit sequences, a sha256 in lowercase hex); anything else,
    /// the checkpoint included, is `None`.
    pub fn parse(stream: &str, key: &str) -> Option<Self> {
        names::event_stream(stream)?;
        let file = key.strip_prefix(&archive_prefix(stream))?.strip_suffix(".seg")?;
        let mut parts = file.splitn(3, '-');
        let (first, last, sha256) = (parts.next()?, parts.next()?, parts.next()?);
        let sequence = |digits: &str| {
            (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse::<u64>().ok())?
        };
        let (first, last) = (sequence(first)?, sequence(last)?);
        (names::is_sha256_hex(sha256) && first <= last).then(|| Self::new(stream, first, last, sha256))
    }
}

/// The first line of a signed segment: `sovd-segment-1 <key id> <mac>`.
const SEGMENT_SIGNATURE: &[u8] = b"sovd-segment-1 ";

/// The body of a segment object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub stream: String,
    pub first: u64,
    pub last: u64,
    pub messages: Vec<RawMessage>,
}

impl Segment {
    /// The bytes to store and the name they go under: a signature line, then the body
    /// (postcard, LZ4-compressed with its length in front). The signature covers the stream,
    /// the sequences and the body, so a segment copied under another stream or range fails.
    pub fn encode(&self, keys: &Keys) -> anyhow::Result<(SegmentName, Vec<u8>)> {
        let body = lz4_flex::compress_prepend_size(&postcard::to_stdvec(self)?);
        let signature = keys.sign(Purpose::Segment, &signed_parts(&self.stream, self.first, self.last, &body).each());
        let mut bytes = SEGMENT_SIGNATURE.to_vec();
        bytes.extend_from_slice(format!("{} {}\n", signature.key_id, signature.mac).as_bytes());
        bytes.extend_from_slice(&body);
        Ok((SegmentName::new(&self.stream, self.first, self.last, &sha256_hex(&bytes)), bytes))
    }

    /// Checks the bytes against the name (damage) and the signature against the keys;
    /// returns the body. Touches nothing.
    pub fn check<'a>(name: &SegmentName, bytes: &'a [u8], keys: &Keys) -> anyhow::Result<&'a [u8]> {
        let digest = sha256_hex(bytes);
        anyhow::ensure!(
            digest == name.sha256,
            "archive object {} is damaged: its sha256 is {digest}, its name says {}",
            name.key,
            name.sha256
        );
        let what = format!("archive object {}", name.key);
        let (signature, body) =
            split_signature(bytes).ok_or_else(|| SignatureError::Mismatch { what: what.clone() })?;
        let parts = signed_parts(&name.stream, name.first, name.last, body);
        keys.check(&what, signature.as_ref(), Purpose::Segment, &parts.each())?;
        Ok(body)
    }

    /// [`Segment::check`], then the messages.
    pub fn decode(name: &SegmentName, bytes: &[u8], keys: &Keys) -> anyhow::Result<Self> {
        let body = Self::check(name, bytes, keys)?;
        let unreadable = |e: &dyn std::fmt::Display| anyhow::anyhow!("archive object {} cannot be read: {e}", name.key);
        let plain = lz4_flex::decompress_size_prepended(body).map_err(|e| unreadable(&e))?;
        let segment: Self = postcard::from_bytes(&plain).map_err(|e| unreadable(&e))?;
        anyhow::ensure!(
            segment.stream == name.stream && segment.first == name.first && segment.last == name.last,
            "archive object {} holds {:?} sequences {}..={}, not what its name says",
            name.key,
            segment.stream,
            segment.first,
            segment.last
        );
        Ok(segment)
    }
}

/// The parts a segment's signature covers.
struct SegmentParts<'a> {
    stream: &'a [u8],
    first: [u8; 8],
    last: [u8; 8],
    body: &'a [u8],
}

impl SegmentParts<'_> {
    fn each(&self) -> [&[u8]; 4] {
        [self.stream, &self.first, &self.last, self.body]
    }
}

fn signed_parts<'a>(stream: &'a str, first: u64, last: u64, body: &'a [u8]) -> SegmentParts<'a> {
    SegmentParts { stream: stream.as_bytes(), first: first.to_be_bytes(), last: last.to_be_bytes(), body }
}

/// The signature and the body of a segment's bytes; no signature when they begin with the
/// body (segments written before sovd signed them: LZ4's length prefix never spells the
/// signature line's start). `None` for a signature line that is not well formed.
fn split_signature(bytes: &[u8]) -> Option<(Option<Signature>, &[u8])> {
    let Some(rest) = bytes.strip_prefix(SEGMENT_SIGNATURE) else {
        return Some((None, bytes));
    };
    let end = rest.iter().take(128).position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&rest[..end]).ok()?;
    let (key_id, mac) = line.split_once(' ')?;
    Some((Some(Signature { key_id: key_id.to_owned(), mac: mac.to_owned() }), &rest[end + 1..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dr::signing::BackupKey;

    fn message(sequence: u64) -> RawMessage {
        RawMessage {
            sequence,
            published_ns: 1_764_000_000_000_000_000,
            subject: "sovd.cmd.X.Y".into(),
            headers: vec![("Sovd-Event-Type".into(), "CommandRequested".into())],
            payload: bytes::Bytes::from_static(b"\x01\x02"),
        }
    }

    fn keys(text: &str) -> Keys {
        Keys::new(BackupKey::parse(&format!("{text:-<40}")).unwrap())
    }

    #[test]
    fn a_segment_round_trips_and_its_name_sorts_in_stream_order() {
        let keys = keys("one");
        let segment =
            Segment { stream: "SOVD_COMMANDS".into(), first: 9, last: 11, messages: vec![message(10), message(11)] };
        let (name, bytes) = segment.encode(&keys).unwrap();
        assert_eq!(SegmentName::parse("SOVD_COMMANDS", &name.key), Some(name.clone()));
        assert_eq!(Segment::decode(&name, &bytes, &keys).unwrap(), segment);
        let later = SegmentName::new("SOVD_COMMANDS", 12, 100, &name.sha256);
        assert!(name.key < later.key, "{} sorts before {}", name.key, later.key);
        assert_eq!(SegmentName::parse("SOVD_COMMANDS", "archive/SOVD_COMMANDS/checkpoint.json"), None);
    }

    #[test]
    fn a_segment_name_is_only_accepted_in_the_form_sovd_writes_for_its_own_stream() {
        let good = SegmentName::new("SOVD_OPS", 1, 20, &"0f".repeat(32));
        assert_eq!(SegmentName::parse("SOVD_OPS", &good.key), Some(good.clone()));
        assert_eq!(SegmentName::parse("SOVD_FLEET", &good.key), None, "another stream's folder");
        assert_eq!(SegmentName::parse("../x", &good.key.replace("SOVD_OPS", "../x")), None, "not a stream of ours");
        let sha = "0f".repeat(32);
        for key in [
            format!("archive/SOVD_OPS/nested/{:020}-{:020}-{sha}.seg", 1, 2),
            format!("archive/SOVD_OPS/1-2-{sha}.seg"),
            format!("archive/SOVD_OPS/{:020}-{:020}-{}.seg", 1, 2, "0F".repeat(32)),
            format!("archive/SOVD_OPS/{:020}-{:020}-{}.seg", 1, 2, "../".repeat(21) + "x"),
            format!("archive/SOVD_OPS/{:020}-{:020}-{sha}.seg", 3, 2),
            format!("archive/SOVD_OPS/+{:019}-{:020}-{sha}.seg", 1, 2),
        ] {
            assert_eq!(SegmentName::parse("SOVD_OPS", &key), None, "{key}");
        }
    }

    #[test]
    fn a_changed_byte_is_refused_with_the_object_named() {
        let keys = keys("one");
        let segment = Segment { stream: "SOVD_FLEET".into(), first: 1, last: 1, messages: vec![message(1)] };
        let (name, mut bytes) = segment.encode(&keys).unwrap();
        let end = bytes.len() - 1;
        bytes[end] ^= 0xff;
        let error = Segment::decode(&name, &bytes, &keys).unwrap_err().to_string();
        assert!(error.contains(&name.key) && error.contains("damaged"), "{error}");
    }

    #[test]
    fn a_segment_is_refused_unless_this_key_signed_it_for_its_stream_and_range() {
        let (ours, theirs) = (keys("ours"), keys("theirs"));
        let segment = Segment { stream: "SOVD_IAM".into(), first: 5, last: 5, messages: vec![message(5)] };

        let (name, planted) = segment.encode(&theirs).unwrap();
        let error = Segment::decode(&name, &planted, &ours).unwrap_err();
        assert!(matches!(error.downcast_ref::<SignatureError>(), Some(SignatureError::OtherKey { .. })), "{error:#}");

        // Ours, copied under another stream (with the name fixed up): the signature names the stream.
        let (name, bytes) = segment.encode(&ours).unwrap();
        let moved = SegmentName::new("SOVD_OPS", 5, 5, &name.sha256);
        let error = Segment::decode(&moved, &bytes, &ours).unwrap_err();
        assert!(matches!(error.downcast_ref::<SignatureError>(), Some(SignatureError::Mismatch { .. })), "{error:#}");

        // Written before segments were signed: the body alone.
        let unsigned = lz4_flex::compress_prepend_size(&postcard::to_stdvec(&segment).unwrap());
        let old = SegmentName::new("SOVD_IAM", 5, 5, &sha256_hex(&unsigned));
        let error = Segment::decode(&old, &unsigned, &ours).unwrap_err();
        assert!(matches!(error.downcast_ref::<SignatureError>(), Some(SignatureError::Unsigned { .. })), "{error:#}");
        assert_eq!(Segment::decode(&old, &unsigned, &ours.clone().accepting_unsigned()).unwrap(), segment);
    }
}
