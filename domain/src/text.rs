//! Text from outside the system (names, e-mail addresses, filters, free text): what may be
//! stored, logged or sent to Postgres. Every string a request carries passes one of these
//! checks at the edge, so no later reader (a projection, a log line, a CSV export) can be
//! stalled or fooled by it.

use serde::{Deserialize, Serialize};

/// Longest sign-in name accepted (bytes); real usernames are shorter ([`crate::users::Username`]).
pub const SIGN_IN_NAME_MAX: usize = 64;
/// Longest e-mail address (bytes), as RFC 5321 allows.
pub const EMAIL_MAX: usize = 254;
/// Longest password (bytes): long enough for any passphrase, short enough to bound hashing.
pub const PASSWORD_MAX: usize = 1024;
/// Longest list filter or other short free text (bytes).
pub const FILTER_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} bytes")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("must be an e-mail address")]
    NotAnEmail,
}

/// Characters no stored or logged text may hold: C0/C1 controls (NUL among them, which
/// Postgres cannot store; CR and LF, which forge log lines), the Unicode line and paragraph
/// separators, and the bidirectional overrides that make text read differently than it is.
pub fn is_forbidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks `value` against the length cap and the forbidden characters.
pub fn check(value: &str, max_bytes: usize) -> Result<(), TextError> {
    if value.len() > max_bytes {
        return Err(TextError::TooLong { max: max_bytes });
    }
    if value.chars().any(is_forbidden) {
        return Err(TextError::ControlCharacter);
    }
    Ok(())
}

/// [`check`], and not empty.
pub fn check_required(value: &str, max_bytes: usize) -> Result<(), TextError> {
    if value.is_empty() {
        return Err(TextError::Empty);
    }
    check(value, max_bytes)
}

/// An e-mail address: one `@` between a non-empty local part and a dotted domain, no spaces,
/// no control characters, at most [`EMAIL_MAX`] bytes. Deliverability is not checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        check_required(raw, EMAIL_MAX)?;
        let Some((local, domain)) = raw.split_once('@') else { return Err(TextError::NotAnEmail) };
        let plain = |part: &str| !part.is_empty() && !part.contains(['@', ' ']);
        if !plain(local) || !plain(domain) || !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.')
        {
            return Err(TextError::NotAnEmail);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn refuses_nul_newlines_and_bidi_overrides() {
        for bad in ["a\0b", "line\nforged", "cr\r", "tab\t", "\u{1b}[31m", "x\u{2028}y", "\u{202E}gpj.exe", "\u{85}"] {
            assert_eq!(check(bad, 100), Err(TextError::ControlCharacter), "{bad:?}");
        }
        assert_eq!(check("Zoë O'Brien-Smith (Werk 2)", 100), Ok(()));
    }

    #[test]
    fn refuses_text_over_the_cap_in_bytes() {
        assert_eq!(check(&"x".repeat(65), 64), Err(TextError::TooLong { max: 64 }));
        assert_eq!(check(&"ü".repeat(33), 64), Err(TextError::TooLong { max: 64 }), "bytes, not characters");
        assert_eq!(check(&"x".repeat(64), 64), Ok(()));
        assert_eq!(check_required("", 64), Err(TextError::Empty));
    }

    #[test]
    fn email_addresses_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("alice@example.com").is_ok());
        assert!(Email::parse("a.b+tag@sub.example.co.uk").is_ok());
        for bad in
            ["", "alice", "@example.com", "alice@", "alice@localhost", "a@b@c.com", "a b@c.com", "a@.com", "a\0@b.com"]
        {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "x".repeat(250))).is_err());
    }

    proptest! {
        #[test]
        fn whatever_passes_holds_no_forbidden_character_and_fits(s in "\\PC*|.*", max in 0usize..64) {
            if check(&s, max).is_ok() {
                prop_assert!(s.len() <= max);
                prop_assert!(!s.chars().any(is_forbidden));
            }
        }
    }
}
