//! The 64-bit key under which a password is looked up in the bundled list. `build.rs` includes
//! this file too, so the filter is built and queried with the very same function.
//!
//! The key is FNV-1a over the UTF-8 of the password lower-cased character by character
//! (`char::to_lowercase`, no locale), computed without allocating. Lower-casing is the list's
//! normalisation: `Password1` is refused because `password1` is listed. Nothing else is folded
//! (no trimming, no Unicode normalisation, no leet-speak undoing), so the check refuses exactly
//! what the list and its case variants hold. The filter mixes the key again with its own seed,
//! so FNV's weak avalanche does not matter; among the list's 400 000 keys a 64-bit collision
//! is about as likely as 1 in 10^8, and would only make two listed words share a key.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The list key of `password`.
pub fn list_key(password: &str) -> u64 {
    let mut hash = FNV_OFFSET;
    let mut buf = [0u8; 4];
    for c in password.chars().flat_map(char::to_lowercase) {
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}
