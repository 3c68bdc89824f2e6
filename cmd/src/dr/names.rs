//! Names read from storage (a manifest's streams and backup id, the keys of segments) decide
//! which streams a restore deletes and writes and which objects it reads. They are checked
//! against what sovd owns before anything uses them, and never joined into local paths.

use sovd_nats::StreamName;
use sovd_nats::raw::protected_streams;

/// Whether `name` is a stream a backup may hold: an event stream or a key-value bucket's.
pub fn is_protected(name: &str) -> bool {
    protected_streams().iter().any(|s| s == name)
}

/// The streams a backup may hold, for messages.
pub fn protected_list() -> String {
    protected_streams().join(", ")
}

/// An event stream by its exact name (`SOVD_COMMANDS`, not the short names people type).
pub fn event_stream(name: &str) -> Option<StreamName> {
    StreamName::ALL.into_iter().find(|s| s.as_str() == name)
}

/// Whether `id` has the shape of a backup id (`20261129T143005.123456Z-1a2b3c4d`): one key
/// segment, with nothing a path or an object store could read as more.
pub fn is_backup_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Whether `text` is a SHA-256 as sovd writes it: 64 lowercase hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_streams_sovd_owns_are_protected_by_their_exact_names() {
        for name in ["SOVD_COMMANDS", "SOVD_OPS", "KV_sovd_usernames", "KV_sovd_vehicle_lanes"] {
            assert!(is_protected(name), "{name}");
        }
        for name in ["../x", "commands", "sovd_commands", "SOVD_COMMANDS/..", "KV_sovd_archive", "", "SOVD_COMMANDS\n"]
        {
            assert!(!is_protected(name), "{name:?}");
        }
        assert_eq!(event_stream("SOVD_IAM"), Some(StreamName::Iam));
        assert_eq!(event_stream("iam"), None);
        assert_eq!(event_stream("KV_sovd_usernames"), None);
    }

    #[test]
    fn backup_ids_are_one_plain_key_segment() {
        assert!(is_backup_id("20261129T143005.123456Z-1a2b3c4d"));
        for id in ["", ".", "..", "../x", "a/b", "a\\b", "a b", "é", &"x".repeat(65)] {
            assert!(!is_backup_id(id), "{id:?}");
        }
    }

    #[test]
    fn a_sha256_is_64_lowercase_hex_digits() {
        assert!(is_sha256_hex(&"ab".repeat(32)));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex(&"a".repeat(63)));
        assert!(!is_sha256_hex(&format!("{}/x", "a".repeat(62))));
    }
}
