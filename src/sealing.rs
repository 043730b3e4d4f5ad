//! Sealing small secrets at rest (TOTP shared secrets): AES-256-GCM under a key ring from
//! `MFA_ENCRYPTION_KEYS`.
//!
//! The setting is a comma-separated list of `kid:key`, each key the unpadded base64url of 32
//! random bytes (`openssl rand 32 | basenc --base64url | tr -d '=\n'`). The **first** key seals
//! everything new; **every** key opens what names it, so a rotation is: put a new key first and
//! keep the old ones, restart every instance, run `auth-service mfa rekey` (which re-seals every
//! row under the first key), then drop the old keys.
//!
//! A sealed value is `nonce (12 bytes) || ciphertext || tag (16 bytes)`, a fresh random nonce
//! each time; the row stores the `kid` of the key beside it. The additional authenticated data
//! binds the value to its owner (the user id), so a sealed secret copied onto another row does
//! not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// Why `MFA_ENCRYPTION_KEYS` was refused (never shows a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("no key given")]
    Empty,
    #[error("entry {0} is not kid:base64url(32 bytes)")]
    Malformed(usize),
    #[error("key {0:?} is not the unpadded base64url of exactly 32 bytes")]
    BadKey(String),
    #[error("key id {0:?} appears twice")]
    Duplicate(String),
}

/// A value that could not be sealed or opened: an unknown key id, a value that is not ours,
/// or the random generator failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("no key {0:?} in MFA_ENCRYPTION_KEYS")]
    UnknownKey(String),
    #[error("the sealed value does not open under its key")]
    Corrupt,
    #[error("the random number generator failed")]
    NoRandomness,
}

struct Entry {
    kid: String,
    key: LessSafeKey,
}

/// The keys of `MFA_ENCRYPTION_KEYS`, in their order. `Debug` shows the key ids only.
pub struct KeyRing {
    keys: Vec<Entry>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("kids", &self.keys.iter().map(|e| &e.kid).collect::<Vec<_>>()).finish()
    }
}

impl KeyRing {
    /// Parses the setting's value.
    pub fn parse(value: &str) -> Result<KeyRing, KeyRingError> {
        let mut keys: Vec<Entry> = Vec::new();
        for (i, entry) in value.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let (kid, key) = entry.split_once(':').ok_or(KeyRingError::Malformed(i + 1))?;
            let kid = kid.trim();
            if kid.is_empty() || !kid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(KeyRingError::Malformed(i + 1));
            }
            let bytes = B64.decode(key.trim()).map_err(|_| KeyRingError::BadKey(kid.to_string()))?;
            if bytes.len() != 32 {
                return Err(KeyRingError::BadKey(kid.to_string()));
            }
            let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyRingError::BadKey(kid.to_string()))?;
            if keys.iter().any(|e| e.kid == kid) {
                return Err(KeyRingError::Duplicate(kid.to_string()));
            }
            keys.push(Entry { kid: kid.to_string(), key: LessSafeKey::new(unbound) });
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// The id of the key that seals.
    pub fn current_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// Seals `plain` for `owner` under the first key: the sealed bytes and the key's id.
    pub fn seal(&self, owner: &[u8], plain: &[u8]) -> Result<(Vec<u8>, String), SealError> {
        let entry = &self.keys[0];
        let nonce_bytes: [u8; NONCE_LEN] = crate::secret::random().map_err(|_| SealError::NoRandomness)?;
        let mut in_out = plain.to_vec();
        entry
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(owner), &mut in_out)
            .map_err(|_| SealError::Corrupt)?;
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok((sealed, entry.kid.clone()))
    }

    /// Opens what was sealed for `owner` under the key `kid`.
    pub fn open(&self, kid: &str, owner: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let entry = self.keys.iter().find(|e| e.kid == kid).ok_or_else(|| SealError::UnknownKey(kid.to_string()))?;
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
        let mut in_out = body.to_vec();
        let plain = entry.key.open_in_place(nonce, Aad::from(owner), &mut in_out).map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const K2: &str = "b:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = KeyRing::parse(K1).unwrap();
        let (sealed, kid) = old.seal(b"user-1", b"secret").unwrap();
        assert_eq!(kid, "a");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let rotated = KeyRing::parse(&format!("{K2},{K1}")).unwrap();
        assert_eq!(rotated.open("a", b"user-1", &sealed).unwrap(), b"secret");
        let (resealed, kid) = rotated.seal(b"user-1", b"secret").unwrap();
        assert_eq!(kid, "b");
        assert_eq!(rotated.open("b", b"user-1", &resealed).unwrap(), b"secret");
        assert_eq!(old.open("b", b"user-1", &resealed), Err(SealError::UnknownKey("b".into())));
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_owner_and_untouched() {
        let ring = KeyRing::parse(K1).unwrap();
        let (mut sealed, _) = ring.seal(b"user-1", b"secret").unwrap();
        assert_eq!(ring.open("a", b"user-2", &sealed), Err(SealError::Corrupt));
        sealed[14] ^= 1;
        assert_eq!(ring.open("a", b"user-1", &sealed), Err(SealError::Corrupt));
        assert_eq!(ring.open("a", b"user-1", b"short"), Err(SealError::Corrupt));
    }

    #[test]
    fn malformed_settings_are_refused() {
        assert_eq!(KeyRing::parse(" , ").unwrap_err(), KeyRingError::Empty);
        assert_eq!(KeyRing::parse("nokey").unwrap_err(), KeyRingError::Malformed(1));
        assert_eq!(KeyRing::parse("a:c2hvcnQ").unwrap_err(), KeyRingError::BadKey("a".into()));
        assert_eq!(KeyRing::parse(&format!("{K1},{K1}")).unwrap_err(), KeyRingError::Duplicate("a".into()));
        assert!(format!("{:?}", KeyRing::parse(K1).unwrap()).contains("\"a\""));
    }
}
