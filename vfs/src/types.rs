//! Small typed wrappers over bare integers, so a page number is never a txid.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A SQLite page number (1-based, as in the file format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PageNo(pub u32);

impl PageNo {
    /// Byte offset of this page in the database file.
    pub fn offset(self, page_size: u32) -> u64 {
        (self.0 as u64 - 1) * page_size as u64
    }
}

/// A committed transaction's id: 1, 2, 3 ... per database, no gaps, never reused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TxId(pub u64);

impl TxId {
    pub const ZERO: TxId = TxId(0);
    pub fn next(self) -> TxId {
        TxId(self.0 + 1)
    }
}

/// A writer's epoch: bumped by every writer that takes over a database.
/// Objects written under an old epoch past its end are ignored (fenced).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

/// Milliseconds since the Unix epoch (commit timestamps).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub fn now() -> Millis {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Millis(d.as_millis() as u64)
    }
    pub fn to_system_time(self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0)
    }
    pub fn from_system_time(t: std::time::SystemTime) -> Millis {
        Millis(
            t.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
        )
    }
    /// RFC 3339 with milliseconds, UTC.
    pub fn rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.to_system_time()).to_string()
    }
}

/// A database's identity: random, fixed at creation, in every object header,
/// so objects of two databases can never be mixed up.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DbId(pub [u8; 16]);

impl DbId {
    pub fn random() -> DbId {
        DbId(rand::random())
    }
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
    pub fn from_hex(s: &str) -> Option<DbId> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(DbId(out))
    }
}

impl fmt::Debug for DbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbId({})", self.to_hex())
    }
}

impl fmt::Display for DbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for DbId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for DbId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DbId, D::Error> {
        let s = String::deserialize(d)?;
        DbId::from_hex(&s).ok_or_else(|| serde::de::Error::custom("db id must be 32 hex digits"))
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl fmt::Display for PageNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
