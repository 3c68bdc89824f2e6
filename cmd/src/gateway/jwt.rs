//! HS256 JSON Web Tokens, built from the HMAC-SHA256 the rest of the tree already compiles
//! (the jsonwebtoken crate pulls RSA and elliptic-curve stacks we do not use; see
//! docs/architecture.md). Verification is constant-time through `hmac::Mac::verify_slice`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub user_id: String,
    pub username: String,
    pub role: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(rename = "type")]
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The sign-in this token belongs to (refresh-token family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token was issued in the future")]
    IssuedInTheFuture,
}

/// Clock difference between replicas tolerated in `iat`.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// Shortest signing key accepted from configuration (bytes).
pub const MIN_KEY_BYTES: usize = 32;

/// The signing key. Never printed.
#[derive(Clone)]
pub struct JwtKey(Vec<u8>);

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(<redacted>)")
    }
}

impl JwtKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    /// 32 bytes from the operating system's random source.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(Self(key))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Checks signature, algorithm and expiry (`now` in unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwtError::Malformed)?;
        let header_value: serde_json::Value = serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
        if header_value.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(JwtError::BadSignature);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| JwtError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| JwtError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
        if claims.exp <= now {
            return Err(JwtError::Expired);
        }
        // A token from the future would outlive a revocation of every token issued until now.
        if claims.iat > now + CLOCK_SKEW_SECS {
            return Err(JwtError::IssuedInTheFuture);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            user_id: "u".into(),
            username: "engineer".into(),
            role: "engineer".into(),
            exp,
            iat: 0,
            token_type: "access".into(),
            jti: None,
            fam: None,
        }
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let key = JwtKey::new(b"secret");
        let token = key.sign(&claims(100));
        assert_eq!(key.verify(&token, 50), Ok(claims(100)));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let key = JwtKey::new(b"secret");
        assert_eq!(key.verify(&key.sign(&claims(100)), 100), Err(JwtError::Expired));
    }

    #[test]
    fn a_token_signed_with_another_key_or_tampered_is_refused() {
        let token = JwtKey::new(b"other").sign(&claims(100));
        assert_eq!(JwtKey::new(b"secret").verify(&token, 0), Err(JwtError::BadSignature));
        let key = JwtKey::new(b"secret");
        let good = key.sign(&claims(100));
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Claims { role: "admin".into(), ..claims(100) }).unwrap());
        parts[1] = &forged;
        assert_eq!(key.verify(&parts.join("."), 0), Err(JwtError::BadSignature));
    }

    #[test]
    fn random_keys_differ_and_sign_differently() {
        let (a, b) = (JwtKey::random().unwrap(), JwtKey::random().unwrap());
        assert_ne!(a.0, b.0);
        assert_eq!(a.0.len(), 32);
        assert_ne!(a.sign(&claims(100)), b.sign(&claims(100)));
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let key = JwtKey::new(b"secret");
        let future = Claims { iat: 1_000 + CLOCK_SKEW_SECS + 1, ..claims(5_000) };
        assert_eq!(key.verify(&key.sign(&future), 1_000), Err(JwtError::IssuedInTheFuture));
        let skewed = Claims { iat: 1_000 + CLOCK_SKEW_SECS, ..claims(5_000) };
        assert!(key.verify(&key.sign(&skewed), 1_000).is_ok(), "a replica's clock may run a little ahead");
    }

    #[test]
    fn alg_none_and_garbage_are_refused() {
        let key = JwtKey::new(b"secret");
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(100)).unwrap());
        assert_eq!(key.verify(&format!("{none_header}.{body}."), 0), Err(JwtError::BadSignature));
        assert_eq!(key.verify("not-a-token", 0), Err(JwtError::Malformed));
    }
}
