//! Segment and snapshot objects: immutable, checksummed page images.
//!
//! A segment holds the pages written by one or more consecutive committed
//! transactions, keeping transaction boundaries so a restore can stop at any
//! txid inside it. A snapshot is the same format with `kind = Snapshot` and a
//! single transaction entry holding every page `1..=db_pages`.
//!
//! A large snapshot is *split* (`kind = SplitSnapshot`): the object holds
//! the header and index only, plus a part table, and the body lives in part
//! objects of a bounded size ([`SnapshotWriter`]). Page offsets are the same
//! as if the parts followed the index in one object, so everything that
//! reads an object by offset reads a split snapshot through
//! [`SegmentIndex::locate`].
//!
//! Layout (little-endian; `docs/format.md` is the spec):
//!
//! ```text
//! header   HEADER_LEN (128) bytes, fixed
//! index    txn table (txn_count x 32) + page table (page_count x 24)
//! body     stored page bytes, in page-table order, contiguous
//! ```
//!
//! One ranged read of the first `HEADER_LEN + index_len` bytes is enough to
//! locate any page ([`SegmentIndex::decode`]); a page is then one ranged read
//! of its stored bytes ([`SegmentIndex::page_bytes`]). Nothing here does I/O
//! and nothing here panics on any input.
//!
//! Files, in the order an object is read:
//! - this file: constants, the header offsets, the types, byte readers;
//! - `header.rs`: the fixed header, encoded and decoded, and the ranges it
//!   implies (index, body, parts);
//! - `index.rs`: the txn, page and part tables, and reading a page through
//!   them (`SegmentIndex`);
//! - `object.rs`: a whole object in memory (`Segment`, `decode*`);
//! - `encode.rs`: writing a segment or a one-object snapshot;
//! - `snapshot.rs`: writing a large snapshot page by page, in parts.

mod encode;
mod header;
mod index;
mod object;
mod snapshot;
#[cfg(test)]
mod tests;

pub use encode::{encode, encode_with};
pub use index::ResolvedTxn;
pub use object::{decode, decode_bytes, decode_split_index};
pub use snapshot::{SnapshotWriter, Written};

use crate::error::{Error, Result};
use crate::types::{DbId, Epoch, Millis, PageNo, TxId};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Range;

/// First 8 bytes of every segment and snapshot object.
pub const MAGIC: [u8; 8] = *b"STRATSEG";
/// The format version written by this code (and the only one it reads).
pub const VERSION: u16 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 128;
/// Length of one txn-table entry.
pub const TXN_ENTRY_LEN: usize = 32;
/// Length of one page-table entry.
pub const PAGE_ENTRY_LEN: usize = 24;
/// Length of one part-table entry (split snapshots).
pub const PART_ENTRY_LEN: usize = 16;
/// Length of one page-table entry of a split snapshot: `stored_len`, `crc`
/// (page number, offset and flags follow from the entry's position).
pub const COMPACT_ENTRY_LEN: usize = 8;
/// Smallest page size SQLite supports.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest page size SQLite supports.
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Page-table flag: the stored bytes are one lz4 block.
pub const FLAG_LZ4: u32 = 1;
/// Page-table flag: the page is stored as a delta (`format::delta`) against
/// the previous entry of the same page in this segment.
pub const FLAG_DELTA: u32 = 2;

/// Byte offsets of the header fields.
pub mod offsets {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const KIND: usize = 10;
    pub const CODEC: usize = 11;
    pub const PAGE_SIZE: usize = 12;
    pub const DB_ID: usize = 16;
    pub const EPOCH: usize = 32;
    pub const FIRST_TXID: usize = 40;
    pub const LAST_TXID: usize = 48;
    pub const CREATED_MS: usize = 56;
    pub const TXN_COUNT: usize = 64;
    pub const PAGE_COUNT: usize = 68;
    pub const INDEX_LEN: usize = 72;
    pub const BODY_LEN: usize = 76;
    pub const INDEX_CRC: usize = 84;
    pub const BODY_CRC: usize = 88;
    pub const HEADER_CRC: usize = 92;
    /// End of the used header bytes; `[HEADER_END, HEADER_LEN)` is zero padding.
    pub const HEADER_END: usize = 96;
}

/// Segment (a run of transactions) or snapshot (a whole database), the
/// latter either in one object or split into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    Segment,
    Snapshot,
    SplitSnapshot,
}

impl SegmentKind {
    pub fn to_u8(self) -> u8 {
        match self {
            SegmentKind::Segment => 1,
            SegmentKind::Snapshot => 2,
            SegmentKind::SplitSnapshot => 3,
        }
    }
    pub fn from_u8(v: u8) -> Option<SegmentKind> {
        match v {
            1 => Some(SegmentKind::Segment),
            2 => Some(SegmentKind::Snapshot),
            3 => Some(SegmentKind::SplitSnapshot),
            _ => None,
        }
    }

    /// Every page of one state (one txn), whether split or not.
    pub fn is_snapshot(self) -> bool {
        self != SegmentKind::Segment
    }

    /// Bytes per page-table entry.
    pub fn page_entry_len(self) -> usize {
        match self {
            SegmentKind::SplitSnapshot => COMPACT_ENTRY_LEN,
            _ => PAGE_ENTRY_LEN,
        }
    }
}

/// Whether a page compressed to `len` bytes is stored compressed: only if
/// that saves at least an eighth of the page (as ZFS decides), since every
/// read of a compressed page pays to decompress it and a few saved bytes do
/// not repay that (a hydrate of barely compressible pages ran ~10% slower).
/// Readers never rely on this: a page is compressed exactly when its flag
/// says so, or in a compact table, when it is shorter than a page.
fn worth_compressing(len: usize, page_size: usize) -> bool {
    len <= page_size - page_size / 8
}

/// Object-level codec: whether pages may be lz4-compressed (each page still
/// carries its own flag; a page that does not shrink is stored raw).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    None,
    Lz4,
}

impl Codec {
    pub fn to_u8(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Lz4 => 1,
        }
    }
    pub fn from_u8(v: u8) -> Option<Codec> {
        match v {
            0 => Some(Codec::None),
            1 => Some(Codec::Lz4),
            _ => None,
        }
    }
}

/// What an object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    pub db_id: DbId,
    pub epoch: Epoch,
    pub page_size: u32,
    pub kind: SegmentKind,
}

/// The pages written by one committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnPages {
    pub txid: TxId,
    pub commit: Millis,
    /// Database size in pages after this commit.
    pub db_pages: u32,
    pub pages: Vec<(PageNo, Bytes)>,
}

/// Encoder options beyond [`SegmentMeta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// `created_ms` in the header; `None` = now.
    pub created: Option<Millis>,
    /// Compress pages with lz4 (codec 1). Off = codec 0, every page raw.
    pub compress: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            created: None,
            compress: true,
        }
    }
}

/// The decoded fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u16,
    pub kind: SegmentKind,
    pub codec: Codec,
    pub page_size: u32,
    pub db_id: DbId,
    pub epoch: Epoch,
    pub first_txid: TxId,
    pub last_txid: TxId,
    pub created: Millis,
    pub txn_count: u32,
    pub page_count: u32,
    pub index_len: u32,
    pub body_len: u64,
    pub index_crc: u32,
    pub body_crc: u32,
}

/// One transaction of the txn table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnEntry {
    pub txid: TxId,
    pub commit: Millis,
    /// Database size in pages after this commit.
    pub db_pages: u32,
    /// Index of this txn's first page in the page table.
    pub first_entry: u32,
    pub entry_count: u32,
}

/// One page of the page table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageEntry {
    pub pgno: PageNo,
    pub compressed: bool,
    /// Stored as a delta against the previous entry of this page in the
    /// segment; resolve with [`SegmentIndex::page_into_with_base`].
    pub delta: bool,
    /// Absolute offset of the stored bytes in the object.
    pub offset: u64,
    pub stored_len: u32,
    /// crc32c of the uncompressed page.
    pub crc: u32,
}

impl PageEntry {
    /// Byte range of the stored page in the object (for a ranged GET).
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.stored_len as u64
    }
}

/// One part of a split snapshot's body: an object of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Where its bytes sit in the virtual object (header + index + parts).
    pub start: u64,
    pub len: u64,
    /// crc32c of the part object.
    pub crc: u32,
}

impl Part {
    pub fn range(&self) -> Range<u64> {
        self.start..self.start + self.len
    }
}

/// Header plus index: everything needed to locate and check any page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    pub header: SegmentHeader,
    pub txns: Vec<TxnEntry>,
    pub pages: Vec<PageEntry>,
    /// A split snapshot's parts in body order; empty for one-object kinds.
    pub parts: Vec<Part>,
}

/// A whole decoded object: its index and its bytes (offsets are absolute).
#[derive(Debug, Clone)]
pub struct Segment {
    pub index: SegmentIndex,
    pub data: Bytes,
}

fn corrupt(msg: impl Into<String>) -> Error {
    Error::corrupt(msg)
}

fn check_page_size(page_size: u32) -> std::result::Result<(), String> {
    if page_size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        Ok(())
    } else {
        Err(format!(
            "bad page size {page_size}: must be a power of two in 512..=65536"
        ))
    }
}

// Readers over slices whose length the caller has checked; they still never
// panic (a short slice reads as zeros, which the checks then reject).
fn rd<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = b.get(off..off.saturating_add(N)) {
        out.copy_from_slice(s);
    }
    out
}
fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(rd(b, off))
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(rd(b, off))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(rd(b, off))
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(off..off + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}
