//! Opaque secrets: refresh tokens, authorization codes, browser-session cookies, CSRF tokens
//! and client secrets. Each is 256 bits from the system's random generator, handed out as
//! unpadded base64url (43 characters) and stored only as a SHA-256 digest, so a copy of the
//! database holds nothing that can be presented.
//!
//! One recipe for all of them: [`Secret::generate`], [`Secret::parse`] what a client sends back
//! (exactly 32 bytes, or it is no secret of ours), [`Secret::digest`] what is stored. Client
//! secrets are the one exception in what is digested: they are compared as the text a client
//! presents (RFC 6749 §2.3.1 lets a client send any characters), so their digest is of that text
//! ([`digest_text`]), and stored registrations depend on it staying so.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// How many random bytes a secret holds.
pub const LEN: usize = 32;

/// The system's random generator failed: nothing can be issued (the caller answers 503).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the random number generator failed")]
pub struct NoRandomness;

/// A secret, as its 32 bytes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; LEN]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A new secret.
    pub fn generate() -> Result<Secret, NoRandomness> {
        Ok(Secret(random()?))
    }

    /// The secret a client sent back: unpadded base64url of exactly 32 bytes (whitespace around
    /// it ignored); anything else is `None`.
    pub fn parse(text: &str) -> Option<Secret> {
        let bytes = B64.decode(text.trim()).ok()?;
        Some(Secret(bytes.try_into().ok()?))
    }

    /// The secret as a client gets it.
    pub fn encode(&self) -> String {
        B64.encode(self.0)
    }

    /// What is stored for it: the SHA-256 of its bytes.
    pub fn digest(&self) -> Vec<u8> {
        digest(&SHA256, &self.0).as_ref().to_vec()
    }

    pub fn bytes(&self) -> &[u8; LEN] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; LEN]) -> Secret {
        Secret(bytes)
    }
}

/// The digest stored for a client secret: the SHA-256 of the text presented.
pub fn digest_text(text: &str) -> Vec<u8> {
    digest(&SHA256, text.as_bytes()).as_ref().to_vec()
}

/// `N` random bytes (for identifiers that are not secrets, such as client ids).
pub fn random<const N: usize>() -> Result<[u8; N], NoRandomness> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).map_err(|_| NoRandomness)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_round_trips_as_43_characters_of_base64url() {
        let secret = Secret::generate().expect("random");
        let text = secret.encode();
        assert_eq!(text.len(), 43);
        assert_eq!(Secret::parse(&text), Some(secret.clone()));
        assert_eq!(Secret::parse(&format!(" {text}\n")), Some(secret));
    }

    #[test]
    fn only_32_bytes_of_base64url_parse() {
        assert!(Secret::parse("short").is_none());
        assert!(Secret::parse("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln").is_none());
        assert!(Secret::parse(&B64.encode([7u8; 33])).is_none());
        assert!(Secret::parse(&format!("{}=", B64.encode([7u8; 32]))).is_none());
    }

    #[test]
    fn the_digest_is_of_the_bytes_for_tokens_and_of_the_text_for_client_secrets() {
        let secret = Secret::from_bytes([1u8; LEN]);
        assert_eq!(secret.digest(), digest(&SHA256, &[1u8; LEN]).as_ref());
        assert_eq!(digest_text(&secret.encode()), digest(&SHA256, secret.encode().as_bytes()).as_ref());
        assert_ne!(secret.digest(), digest_text(&secret.encode()));
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }
}
