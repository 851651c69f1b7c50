//! Store codecs: SHA-256 secret hashes, UTC timestamps as Unix microseconds, JSON text
//! columns, and random identifiers. Shared by both engines so they store the same bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::StoreError;

/// The SHA-256 digest of a secret (code, refresh token, PAT, session id, client secret,
/// CSRF token). The store keeps and looks up only these; the secret itself never reaches it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretHash(pub [u8; 32]);

/// Hashes a secret as it is presented (the exact string, UTF-8, no normalisation).
pub fn secret_hash(secret: &str) -> SecretHash {
    SecretHash(Sha256::digest(secret.as_bytes()).into())
}

impl SecretHash {
    /// The digest as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            out[i] = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(Self(out))
    }

    pub(crate) fn from_db(bytes: Vec<u8>) -> Result<Self, StoreError> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| StoreError::internal("stored hash is not 32 bytes"))
    }
}

/// Shows only a prefix: enough to correlate log lines, never the whole digest.
impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "SecretHash({}…)", hex.get(..12).unwrap_or_default())
    }
}

impl Serialize for SecretHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SecretHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not a SHA-256 hex digest"))
    }
}

/// Microseconds since the Unix epoch (UTC), the unit of every time column.
pub(crate) fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`micros`].
pub(crate) fn from_micros(us: i64) -> SystemTime {
    let d = Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

pub(crate) fn opt_micros(t: Option<SystemTime>) -> Option<i64> {
    t.map(micros)
}

pub(crate) fn opt_from_micros(us: Option<i64>) -> Option<SystemTime> {
    us.map(from_micros)
}

/// Truncates to whole microseconds, the precision the store keeps.
pub fn truncate_to_micros(t: SystemTime) -> SystemTime {
    from_micros(micros(t))
}

pub(crate) fn list_to_json(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn list_from_json(s: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|_| StoreError::internal("stored list is not a JSON array"))
}

pub(crate) fn map_to_json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned())
}

pub(crate) fn map_from_json(s: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(s).map_err(|_| StoreError::internal("stored labels are not a JSON map"))
}

/// A fresh random identifier: 32 lowercase hex characters (122 random bits, UUID v4).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh app id such as `3f9k2m7q8x`: 10 lowercase base-36 characters (about 51 bits),
/// the `{id}` of the resource name `oauthApps/{id}`. Not a secret.
pub fn new_app_id() -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = uuid::Uuid::new_v4().as_u128();
    let mut out = String::with_capacity(10);
    for _ in 0..10 {
        let digit = usize::try_from(n % 36).unwrap_or(0);
        out.push(char::from(ALPHABET[digit]));
        n /= 36;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_and_hex_round_trips() {
        let h = secret_hash("abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(SecretHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(SecretHash::from_hex("zz"), None);
        assert!(!format!("{h:?}").contains(&h.to_hex()));
    }

    #[test]
    fn micros_round_trip_both_sides_of_the_epoch() {
        for us in [0, 1, -1, 1_790_000_000_123_456, -86_400_000_000] {
            assert_eq!(micros(from_micros(us)), us);
        }
    }

    #[test]
    fn app_ids_are_ten_base36_chars() {
        let id = new_app_id();
        assert_eq!(id.len(), 10);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        assert_ne!(new_app_id(), id);
    }
}
