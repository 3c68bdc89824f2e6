//! Backups and archive segments are signed with HMAC-SHA256 under a key kept outside the
//! bucket, so whoever can write to the bucket cannot get events into a restore
//! (docs/adr/009-authenticated-backups.md). The key never prints; manifests, segments and
//! messages name it by its id, a MAC of a fixed text, which reveals nothing of the key.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::checksum::{hex, unhex};

/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// What a MAC is for. Each purpose has its own label in front of what is signed, so a MAC
/// made for one kind of object never verifies as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Manifest,
    Segment,
    Checkpoint,
    KeyId,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Manifest => b"sovd backup manifest v1",
            Self::Segment => b"sovd archive segment v1",
            Self::Checkpoint => b"sovd archive checkpoint v1",
            Self::KeyId => b"sovd backup key id v1",
        }
    }
}

/// The secret that signs backups, never printed. The command line takes it as text of any
/// length and [`BackupKey::parse`] checks it after, so that not even a refused key is echoed.
#[derive(Clone)]
pub struct BackupKey {
    mac: Hmac<Sha256>,
    id: String,
}

impl fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupKey(<redacted>, id {})", self.id)
    }
}

impl BackupKey {
    /// Whitespace around the key is dropped: a key read from a file with a final newline is
    /// the same key as the one typed without.
    pub fn parse(text: &str) -> Result<Self, String> {
        let secret = text.trim();
        if secret.len() < MIN_KEY_BYTES {
            return Err(format!("must be at least {MIN_KEY_BYTES} bytes (`openssl rand -base64 48` makes one)"));
        }
        Self::from_bytes(secret.as_bytes())
    }

    fn from_bytes(secret: &[u8]) -> Result<Self, String> {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|e| format!("unusable key: {e}"))?;
        let mut key = Self { mac, id: String::new() };
        key.id = hex(&key.tag(Purpose::KeyId, &[]).finalize().into_bytes()[..8]);
        Ok(key)
    }

    /// A new key from the operating system's random source, for a process given none.
    pub fn random() -> anyhow::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("cannot get random bytes for a backup key: {e}"))?;
        Self::from_bytes(hex(&bytes).as_bytes()).map_err(anyhow::Error::msg)
    }

    /// Names the key without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The MAC state over the purpose and each part, every one with its length in front so
    /// no two different lists of parts sign the same bytes.
    fn tag(&self, purpose: Purpose, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        for part in std::iter::once(purpose.label()).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

/// A MAC and the id of the key that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub key_id: String,
    /// HMAC-SHA256, hex.
    pub mac: String,
}

/// Why an object is not trusted. `what` names the object (`backup 2026…`, `archive object …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "{what} is not signed: it was made before sovd signed its backups, or its signature was removed (a restore \
         refuses it unless --insecure-accept-unsigned is given; see docs/adr/009-authenticated-backups.md)"
    )]
    Unsigned { what: String },
    #[error(
        "{what} is not signed with this key: it names key {signed_with}, this key is {ours} (after a rotation, \
         SOVD_BACKUP_KEY_PREVIOUS takes the key before)"
    )]
    OtherKey { what: String, signed_with: String, ours: String },
    #[error(
        "{what} is not signed with this key: its signature does not match its content (changed after it was signed)"
    )]
    Mismatch { what: String },
}

/// The key that signs, the one before a rotation (still accepted when checking), and whether
/// unsigned objects are let through (only a restore asked to, for backups older than signing).
#[derive(Debug, Clone)]
pub struct Keys {
    signing: BackupKey,
    previous: Option<BackupKey>,
    accept_unsigned: bool,
}

impl Keys {
    pub fn new(signing: BackupKey) -> Self {
        Self { signing, previous: None, accept_unsigned: false }
    }

    pub fn with_previous(mut self, previous: Option<BackupKey>) -> Self {
        self.previous = previous;
        self
    }

    /// Lets unsigned objects through, each with a warning. Signed objects must still verify.
    pub fn accepting_unsigned(mut self) -> Self {
        self.accept_unsigned = true;
        self
    }

    /// The id of the key that signs.
    pub fn key_id(&self) -> &str {
        self.signing.id()
    }

    pub fn sign(&self, purpose: Purpose, parts: &[&[u8]]) -> Signature {
        let mac = self.signing.tag(purpose, parts).finalize().into_bytes();
        Signature { key_id: self.signing.id().to_owned(), mac: hex(&mac) }
    }

    /// Whether `signature` is one of these keys' over `parts` (compared in constant time).
    pub fn check(
        &self,
        what: &str,
        signature: Option<&Signature>,
        purpose: Purpose,
        parts: &[&[u8]],
    ) -> Result<(), SignatureError> {
        let Some(signature) = signature else {
            if self.accept_unsigned {
                tracing::warn!(object = what, "accepting an unsigned object (--insecure-accept-unsigned)");
                return Ok(());
            }
            return Err(SignatureError::Unsigned { what: what.to_owned() });
        };
        let key = std::iter::once(&self.signing).chain(self.previous.as_ref()).find(|k| k.id() == signature.key_id);
        let Some(key) = key else {
            return Err(SignatureError::OtherKey {
                what: what.to_owned(),
                signed_with: signature.key_id.clone(),
                ours: self.signing.id().to_owned(),
            });
        };
        let mismatch = || SignatureError::Mismatch { what: what.to_owned() };
        let mac = unhex(&signature.mac).ok_or_else(mismatch)?;
        key.tag(purpose, parts).verify_slice(&mac).map_err(|_| mismatch())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(text: &str) -> BackupKey {
        BackupKey::parse(&format!("{text:-<40}")).unwrap()
    }

    #[test]
    fn a_key_shorter_than_32_bytes_is_refused_and_surrounding_whitespace_is_not_part_of_it() {
        let short = BackupKey::parse(&"x".repeat(31)).unwrap_err();
        assert!(short.contains("at least 32 bytes") && !short.contains("xxx"), "{short}");
        let padded = BackupKey::parse(&format!("  {}\n", "k".repeat(32))).unwrap();
        let plain = BackupKey::parse(&"k".repeat(32)).unwrap();
        assert_eq!(padded.id(), plain.id());
        assert!(BackupKey::parse(" \n").is_err());
    }

    #[test]
    fn a_key_never_prints_only_its_id() {
        let secret = "a-very-secret-backup-key-of-enough-bytes";
        let keys = Keys::new(BackupKey::parse(secret).unwrap());
        let printed = format!("{keys:?}");
        assert!(!printed.contains(secret) && printed.contains("<redacted>"), "{printed}");
        assert_eq!(keys.key_id().len(), 16);
        assert_ne!(keys.key_id(), Keys::new(key("other")).key_id());
    }

    #[test]
    fn a_signature_verifies_with_its_key_and_purpose_only() {
        let keys = Keys::new(key("one"));
        let signature = keys.sign(Purpose::Segment, &[b"SOVD_COMMANDS", b"bytes"]);
        assert_eq!(keys.check("x", Some(&signature), Purpose::Segment, &[b"SOVD_COMMANDS", b"bytes"]), Ok(()));
        let moved = keys.check("x", Some(&signature), Purpose::Segment, &[b"SOVD_FLEET", b"bytes"]);
        assert!(matches!(moved, Err(SignatureError::Mismatch { .. })), "{moved:?}");
        let shifted = keys.check("x", Some(&signature), Purpose::Segment, &[b"SOVD_COMMANDSb", b"ytes"]);
        assert!(matches!(shifted, Err(SignatureError::Mismatch { .. })), "{shifted:?}");
        let other_purpose = keys.check("x", Some(&signature), Purpose::Checkpoint, &[b"SOVD_COMMANDS", b"bytes"]);
        assert!(matches!(other_purpose, Err(SignatureError::Mismatch { .. })), "{other_purpose:?}");
        let other_key = Keys::new(key("two")).check("x", Some(&signature), Purpose::Segment, &[b"SOVD_COMMANDS"]);
        assert!(matches!(other_key, Err(SignatureError::OtherKey { .. })), "{other_key:?}");
    }

    #[test]
    fn a_forged_mac_under_the_right_key_id_is_a_mismatch() {
        let keys = Keys::new(key("one"));
        let mut signature = keys.sign(Purpose::Manifest, &[b"content"]);
        signature.mac = "00".repeat(32);
        let forged = keys.check("backup b", Some(&signature), Purpose::Manifest, &[b"content"]);
        assert_eq!(forged, Err(SignatureError::Mismatch { what: "backup b".into() }));
        signature.mac = "not hex".into();
        assert!(keys.check("backup b", Some(&signature), Purpose::Manifest, &[b"content"]).is_err());
    }

    #[test]
    fn the_previous_key_still_verifies_but_never_signs() {
        let (old, new) = (key("old"), key("new"));
        let signed_before = Keys::new(old.clone()).sign(Purpose::Checkpoint, &[b"c"]);
        let rotated = Keys::new(new.clone()).with_previous(Some(old));
        assert_eq!(rotated.check("c", Some(&signed_before), Purpose::Checkpoint, &[b"c"]), Ok(()));
        assert_eq!(rotated.sign(Purpose::Checkpoint, &[b"c"]).key_id, new.id());
    }

    #[test]
    fn unsigned_is_refused_unless_explicitly_accepted() {
        let keys = Keys::new(key("one"));
        assert_eq!(
            keys.check("backup b", None, Purpose::Manifest, &[b"c"]),
            Err(SignatureError::Unsigned { what: "backup b".into() })
        );
        let accepting = keys.accepting_unsigned();
        assert_eq!(accepting.check("backup b", None, Purpose::Manifest, &[b"c"]), Ok(()));
        let mut wrong = accepting.sign(Purpose::Manifest, &[b"c"]);
        wrong.mac = "11".repeat(32);
        assert!(accepting.check("backup b", Some(&wrong), Purpose::Manifest, &[b"c"]).is_err(), "signed must verify");
    }

    #[test]
    fn random_keys_differ() {
        let (a, b) = (BackupKey::random().unwrap(), BackupKey::random().unwrap());
        assert_ne!(a.id(), b.id());
    }
}
