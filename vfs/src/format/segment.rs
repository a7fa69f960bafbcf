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

/// A split snapshot's part table: parts tile the body in order, none empty.
fn decode_parts(header: &SegmentHeader, table: &[u8]) -> Result<Vec<Part>> {
    let mut parts = Vec::with_capacity(table.len() / PART_ENTRY_LEN);
    let mut start = header.prefix_len();
    for (i, e) in table.chunks_exact(PART_ENTRY_LEN).enumerate() {
        let len = u64_at(e, 0);
        if len == 0 || len > header.body_len {
            return Err(corrupt(format!("part {i}: bad length {len}")));
        }
        parts.push(Part {
            start,
            len,
            crc: u32_at(e, 8),
        });
        start += len;
    }
    if header.kind == SegmentKind::SplitSnapshot && start != header.object_len() {
        return Err(corrupt(format!(
            "parts hold {} of {} body bytes",
            start - header.prefix_len(),
            header.body_len
        )));
    }
    Ok(parts)
}

/// Compact page tables at least this long are decoded on two threads.
const PARALLEL_ENTRIES: usize = 1 << 15;

/// A split snapshot's compact page table: page `i + 1` at entry `i`, stored
/// right after page `i`, compressed exactly when shorter than a page.
/// Decoding it is most of a lazy open's work on a big database (262,144
/// entries per GiB of 4 KiB pages), so a big table is decoded in two halves
/// on two threads. Returns the entries and the offset after the last page.
fn decode_compact(
    header: &SegmentHeader,
    table: &[u8],
    parts: &[Part],
) -> Result<(Vec<PageEntry>, u64)> {
    decode_compact_at(header, table, parts, PARALLEL_ENTRIES)
}

/// [`decode_compact`], on two threads from `parallel_at` entries.
fn decode_compact_at(
    header: &SegmentHeader,
    table: &[u8],
    parts: &[Part],
    parallel_at: usize,
) -> Result<(Vec<PageEntry>, u64)> {
    let n = header.page_count as usize;
    let table = table
        .get(..n * COMPACT_ENTRY_LEN)
        .ok_or_else(|| corrupt("page table beyond the index"))?;
    let mid = if n >= parallel_at { n / 2 } else { n };
    let (first, second) = table.split_at(mid * COMPACT_ENTRY_LEN);
    let start = header.prefix_len();
    // The second half's pages start where the first half's lengths end.
    let second_start = start
        + first
            .chunks_exact(COMPACT_ENTRY_LEN)
            .map(|e| u64::from(u32_at(e, 0)))
            .sum::<u64>();
    let mut pages: Vec<PageEntry> = Vec::with_capacity(n);
    let (out1, out2) = pages.spare_capacity_mut()[..n].split_at_mut(mid);
    let (r1, r2) = std::thread::scope(|s| {
        let h2 = (!second.is_empty())
            .then(|| s.spawn(|| fill_compact(header, second, mid, second_start, parts, out2)));
        let r1 = fill_compact(header, first, 0, start, parts, out1);
        let r2 = h2.map_or(Ok(second_start), |h| {
            h.join()
                .unwrap_or_else(|_| Err(corrupt("page table decoder panicked")))
        });
        (r1, r2)
    });
    r1?;
    let end = r2?;
    // SAFETY: `fill_compact` returned Ok for both halves, so it wrote every
    // one of the first `n` slots (one per entry of its half).
    unsafe { pages.set_len(n) };
    Ok((pages, end))
}

/// Entries `skip..` of a compact page table (`table` holds exactly
/// `out.len()` of them), their pages stored from `offset`: checked and
/// written to `out`, every slot. Returns the offset after the last page.
fn fill_compact(
    header: &SegmentHeader,
    table: &[u8],
    skip: usize,
    mut offset: u64,
    parts: &[Part],
    out: &mut [std::mem::MaybeUninit<PageEntry>],
) -> Result<u64> {
    let page_size = header.page_size;
    // The part the next page must lie in (a page never spans two).
    let mut part = parts.partition_point(|p| p.range().end <= offset);
    for (i, (slot, e)) in out
        .iter_mut()
        .zip(table.chunks_exact(COMPACT_ENTRY_LEN))
        .enumerate()
    {
        let pgno = PageNo((skip + i + 1) as u32);
        let stored_len = u32_at(e, 0);
        if stored_len == 0 || stored_len > page_size {
            return Err(corrupt(format!(
                "page {pgno}: bad stored length {stored_len}"
            )));
        }
        let compressed = stored_len < page_size;
        if compressed && header.codec == Codec::None {
            return Err(corrupt(format!(
                "page {pgno}: compressed but codec is none"
            )));
        }
        let end = offset + u64::from(stored_len);
        while parts.get(part).is_some_and(|p| p.range().end <= offset) {
            part += 1;
        }
        if parts.get(part).is_none_or(|p| end > p.range().end) {
            return Err(corrupt(format!("page {pgno}: spans two parts")));
        }
        slot.write(PageEntry {
            pgno,
            compressed,
            delta: false,
            offset,
            stored_len,
            crc: u32_at(e, 4),
        });
        offset = end;
    }
    Ok(offset)
}

impl SegmentHeader {
    /// Serialize to the fixed header, computing `header_crc`.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        use offsets as o;
        let mut h = [0u8; HEADER_LEN];
        put(&mut h, o::MAGIC, &MAGIC);
        put(&mut h, o::VERSION, &self.version.to_le_bytes());
        h[o::KIND] = self.kind.to_u8();
        h[o::CODEC] = self.codec.to_u8();
        put(&mut h, o::PAGE_SIZE, &self.page_size.to_le_bytes());
        put(&mut h, o::DB_ID, &self.db_id.0);
        put(&mut h, o::EPOCH, &self.epoch.0.to_le_bytes());
        put(&mut h, o::FIRST_TXID, &self.first_txid.0.to_le_bytes());
        put(&mut h, o::LAST_TXID, &self.last_txid.0.to_le_bytes());
        put(&mut h, o::CREATED_MS, &self.created.0.to_le_bytes());
        put(&mut h, o::TXN_COUNT, &self.txn_count.to_le_bytes());
        put(&mut h, o::PAGE_COUNT, &self.page_count.to_le_bytes());
        put(&mut h, o::INDEX_LEN, &self.index_len.to_le_bytes());
        put(&mut h, o::BODY_LEN, &self.body_len.to_le_bytes());
        put(&mut h, o::INDEX_CRC, &self.index_crc.to_le_bytes());
        put(&mut h, o::BODY_CRC, &self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&h[..o::HEADER_CRC]);
        put(&mut h, o::HEADER_CRC, &crc.to_le_bytes());
        h
    }

    /// Decode and check the header from the first bytes of an object (at
    /// least [`HEADER_LEN`]; more is ignored).
    pub fn decode(first_bytes: &[u8]) -> Result<SegmentHeader> {
        use offsets as o;
        let b = first_bytes;
        if b.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "truncated: {} of {HEADER_LEN} header bytes",
                b.len()
            )));
        }
        if b.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(corrupt("bad magic"));
        }
        let version = u16_at(b, o::VERSION);
        if version != VERSION {
            return Err(corrupt(format!("unsupported format version {version}")));
        }
        if crc32c::crc32c(&b[..o::HEADER_CRC]) != u32_at(b, o::HEADER_CRC) {
            return Err(corrupt("header checksum mismatch"));
        }
        let (kind, codec) = (b[o::KIND], b[o::CODEC]);
        let kind = SegmentKind::from_u8(kind).ok_or_else(|| corrupt(format!("bad kind {kind}")))?;
        let codec = Codec::from_u8(codec).ok_or_else(|| corrupt(format!("bad codec {codec}")))?;
        let page_size = u32_at(b, o::PAGE_SIZE);
        check_page_size(page_size).map_err(corrupt)?;
        let h = SegmentHeader {
            version,
            kind,
            codec,
            page_size,
            db_id: DbId(rd(b, o::DB_ID)),
            epoch: Epoch(u64_at(b, o::EPOCH)),
            first_txid: TxId(u64_at(b, o::FIRST_TXID)),
            last_txid: TxId(u64_at(b, o::LAST_TXID)),
            created: Millis(u64_at(b, o::CREATED_MS)),
            txn_count: u32_at(b, o::TXN_COUNT),
            page_count: u32_at(b, o::PAGE_COUNT),
            index_len: u32_at(b, o::INDEX_LEN),
            body_len: u64_at(b, o::BODY_LEN),
            index_crc: u32_at(b, o::INDEX_CRC),
            body_crc: u32_at(b, o::BODY_CRC),
        };
        h.check()?;
        Ok(h)
    }

    fn check(&self) -> Result<()> {
        let (first, last) = (self.first_txid.0, self.last_txid.0);
        if first == 0 || first > last {
            return Err(corrupt(format!("bad txid range {first}..={last}")));
        }
        if self.txn_count == 0 || last - first != self.txn_count as u64 - 1 {
            return Err(corrupt(format!(
                "txn count {} does not match txids {first}..={last}",
                self.txn_count
            )));
        }
        if self.kind.is_snapshot() && self.txn_count != 1 {
            return Err(corrupt(format!("snapshot with {} txns", self.txn_count)));
        }
        let want = self.txn_count as u64 * TXN_ENTRY_LEN as u64
            + self.page_count as u64 * self.kind.page_entry_len() as u64;
        let parts_len = (self.index_len as u64).saturating_sub(want);
        let split_ok = self.kind == SegmentKind::SplitSnapshot
            && parts_len >= PART_ENTRY_LEN as u64
            && parts_len.is_multiple_of(PART_ENTRY_LEN as u64);
        if self.index_len as u64 != want && !split_ok {
            return Err(corrupt(format!(
                "index length {} does not match {} txns and {} pages",
                self.index_len, self.txn_count, self.page_count
            )));
        }
        // Every stored page is 1..=page_size bytes.
        let max_body = self.page_count as u64 * self.page_size as u64;
        if self.body_len > max_body || self.body_len < self.page_count as u64 {
            return Err(corrupt(format!(
                "body length {} impossible for {} pages",
                self.body_len, self.page_count
            )));
        }
        Ok(())
    }

    /// Bytes of header + index: the prefix that locates every page.
    pub fn prefix_len(&self) -> u64 {
        HEADER_LEN as u64 + self.index_len as u64
    }

    /// Entries in a split snapshot's part table (0 for other kinds).
    pub fn part_count(&self) -> u32 {
        if self.kind != SegmentKind::SplitSnapshot {
            return 0;
        }
        let tables = self.txn_count as u64 * TXN_ENTRY_LEN as u64
            + self.page_count as u64 * self.kind.page_entry_len() as u64;
        ((self.index_len as u64 - tables.min(self.index_len as u64)) / PART_ENTRY_LEN as u64) as u32
    }

    /// Length of this object itself: the whole object, or a split
    /// snapshot's header and index (its body is in the parts).
    pub fn stored_len(&self) -> u64 {
        match self.kind {
            SegmentKind::SplitSnapshot => self.prefix_len(),
            _ => self.object_len(),
        }
    }

    /// Byte range of the index in the object.
    pub fn index_range(&self) -> Range<u64> {
        HEADER_LEN as u64..self.prefix_len()
    }

    /// Byte range of the body in the object.
    pub fn body_range(&self) -> Range<u64> {
        self.prefix_len()..self.object_len()
    }

    /// Length of the whole object (for a split snapshot: the virtual
    /// object, its header and index followed by every part).
    pub fn object_len(&self) -> u64 {
        self.prefix_len() + self.body_len
    }

    pub fn meta(&self) -> SegmentMeta {
        SegmentMeta {
            db_id: self.db_id,
            epoch: self.epoch,
            page_size: self.page_size,
            kind: self.kind,
        }
    }
}

impl SegmentIndex {
    /// Decode header and index from a prefix of the object holding at least
    /// `HEADER_LEN + index_len` bytes, checking every entry.
    pub fn decode(prefix: &[u8]) -> Result<SegmentIndex> {
        let header = SegmentHeader::decode(prefix)?;
        let end = header.prefix_len();
        let idx = usize::try_from(end)
            .ok()
            .and_then(|end| prefix.get(HEADER_LEN..end))
            .ok_or_else(|| corrupt(format!("truncated: {} of {end} bytes", prefix.len())))?;
        if crc32c::crc32c(idx) != header.index_crc {
            return Err(corrupt("index checksum mismatch"));
        }
        let txn_bytes = header.txn_count as usize * TXN_ENTRY_LEN;
        let (txn_table, page_table) = idx.split_at(txn_bytes.min(idx.len()));
        let entry_len = header.kind.page_entry_len();
        let compact = header.kind == SegmentKind::SplitSnapshot;
        let page_bytes = header.page_count as usize * entry_len;
        let (page_table, part_table) = page_table.split_at(page_bytes.min(page_table.len()));
        let parts = decode_parts(&header, part_table)?;

        let mut txns = Vec::with_capacity(header.txn_count as usize);
        let mut next_entry: u64 = 0;
        for (i, e) in txn_table.chunks_exact(TXN_ENTRY_LEN).enumerate() {
            let t = TxnEntry {
                txid: TxId(u64_at(e, 0)),
                commit: Millis(u64_at(e, 8)),
                db_pages: u32_at(e, 16),
                first_entry: u32_at(e, 20),
                entry_count: u32_at(e, 24),
            };
            let want = header.first_txid.0 + i as u64;
            if t.txid.0 != want {
                return Err(corrupt(format!(
                    "txn table entry {i}: txid {}, expected {want}",
                    t.txid
                )));
            }
            if t.first_entry as u64 != next_entry {
                return Err(corrupt(format!(
                    "txn {}: page range does not follow the previous txn",
                    t.txid
                )));
            }
            next_entry += t.entry_count as u64;
            if next_entry > header.page_count as u64 {
                return Err(corrupt(format!(
                    "txn {}: page range beyond the page table",
                    t.txid
                )));
            }
            txns.push(t);
        }
        if next_entry != header.page_count as u64 {
            return Err(corrupt(format!(
                "txns cover {next_entry} of {} page entries",
                header.page_count
            )));
        }
        if header.kind.is_snapshot()
            && let Some(t) = txns.first()
            && t.entry_count != t.db_pages
        {
            return Err(corrupt(format!(
                "snapshot of {} pages holds {} pages",
                t.db_pages, t.entry_count
            )));
        }

        let (pages, offset) = if compact {
            decode_compact(&header, page_table, &parts)?
        } else {
            Self::decode_pages(&header, &txns, page_table)?
        };
        if offset != header.object_len() {
            return Err(corrupt(format!(
                "pages cover {} of {} body bytes",
                offset - end,
                header.body_len
            )));
        }
        Ok(SegmentIndex {
            header,
            txns,
            pages,
            parts,
        })
    }

    /// The page table of a segment or one-object snapshot (full entries;
    /// no parts); returns the entries and the offset after the last page.
    fn decode_pages(
        header: &SegmentHeader,
        txns: &[TxnEntry],
        page_table: &[u8],
    ) -> Result<(Vec<PageEntry>, u64)> {
        let page_size = header.page_size;
        let entry_len = header.kind.page_entry_len();
        let mut pages = Vec::with_capacity(header.page_count as usize);
        let end = header.prefix_len();
        let mut seen = std::collections::HashSet::new();
        let track = header.kind == SegmentKind::Segment;
        let mut offset = end;
        for t in txns {
            let start = t.first_entry as usize * entry_len;
            let len = t.entry_count as usize * entry_len;
            let table = page_table.get(start..start + len).ok_or_else(|| {
                corrupt(format!("txn {}: page range beyond the page table", t.txid))
            })?;
            let mut prev = 0u32;
            for e in table.chunks_exact(entry_len) {
                // Only segments hold deltas (and repeated pages).
                let earlier = track && seen.contains(&u32_at(e, 0));
                let (pgno, flags) = (u32_at(e, 0), u32_at(e, 4));
                let p = PageEntry {
                    pgno: PageNo(pgno),
                    compressed: flags & FLAG_LZ4 != 0,
                    delta: flags & FLAG_DELTA != 0,
                    offset: u64_at(e, 8),
                    stored_len: u32_at(e, 16),
                    crc: u32_at(e, 20),
                };
                if pgno == 0 || pgno > t.db_pages {
                    return Err(corrupt(format!(
                        "txn {}: page {pgno} beyond database size {} pages",
                        t.txid, t.db_pages
                    )));
                }
                if pgno <= prev {
                    return Err(corrupt(format!("txn {}: page {pgno} out of order", t.txid)));
                }
                prev = pgno;
                if flags & !(FLAG_LZ4 | FLAG_DELTA) != 0 {
                    return Err(corrupt(format!("page {pgno}: unknown flags {flags:#x}")));
                }
                if p.compressed && header.codec == Codec::None {
                    return Err(corrupt(format!(
                        "page {pgno}: compressed but codec is none"
                    )));
                }
                if p.delta && (p.compressed || !earlier || header.kind != SegmentKind::Segment) {
                    return Err(corrupt(format!(
                        "page {pgno}: a delta needs an earlier image in this segment"
                    )));
                }
                let len_ok = if p.delta {
                    p.stored_len >= 4 && p.stored_len <= page_size
                } else if p.compressed {
                    p.stored_len >= 1 && p.stored_len < page_size
                } else {
                    p.stored_len == page_size
                };
                if !len_ok {
                    return Err(corrupt(format!(
                        "page {pgno}: bad stored length {}",
                        p.stored_len
                    )));
                }
                if p.offset != offset {
                    return Err(corrupt(format!("page {pgno}: bad offset {}", p.offset)));
                }
                offset += p.stored_len as u64;
                if offset > header.object_len() {
                    return Err(corrupt(format!("page {pgno}: beyond the body")));
                }
                if track {
                    seen.insert(pgno);
                }
                pages.push(p);
            }
        }
        Ok((pages, offset))
    }

    /// Where the virtual bytes `range` of this object are: pieces of
    /// (part, range within that part object), or `None` for the object
    /// itself (bytes of a one-object kind, or a split snapshot's prefix).
    /// An empty result means the range lies outside the object.
    pub fn locate(&self, range: Range<u64>) -> Vec<(Option<usize>, Range<u64>)> {
        let mut out = Vec::new();
        if range.start >= range.end || range.end > self.object_len() {
            return out;
        }
        if self.parts.is_empty() {
            out.push((None, range));
            return out;
        }
        let prefix = self.prefix_len();
        let mut at = range.start;
        if at < prefix {
            let end = range.end.min(prefix);
            out.push((None, at..end));
            at = end;
        }
        let first = self.parts.partition_point(|p| p.range().end <= at);
        for (i, p) in self.parts.iter().enumerate().skip(first) {
            if at >= range.end {
                break;
            }
            let end = range.end.min(p.range().end);
            out.push((Some(i), at - p.start..end - p.start));
            at = end;
        }
        out
    }

    /// The page entries whose stored bytes lie in part `i` (in a snapshot,
    /// entries are in offset order).
    pub fn pages_in_part(&self, i: usize) -> &[PageEntry] {
        let Some(part) = self.parts.get(i) else {
            return &[];
        };
        let a = self.pages.partition_point(|e| e.offset < part.start);
        let b = self.pages.partition_point(|e| e.offset < part.range().end);
        self.pages.get(a..b.max(a)).unwrap_or(&[])
    }

    /// Decode every page of part `i` from the part's bytes into `out`,
    /// checking each: the images back to back (`out` must hold exactly
    /// `pages_in_part(i).len()` pages); returns the first page's number (a
    /// split snapshot's pages are consecutive, so they follow it).
    pub fn decode_part_into(&self, i: usize, part: &[u8], out: &mut [u8]) -> Result<PageNo> {
        let start = self.parts.get(i).map_or(0, |p| p.start);
        let pages = self.pages_in_part(i);
        let ps = self.header.page_size as usize;
        if out.len() != pages.len() * ps {
            return Err(Error::invalid(format!(
                "part {i} holds {} pages, the buffer {} bytes",
                pages.len(),
                out.len()
            )));
        }
        for (e, page) in pages.iter().zip(out.chunks_exact_mut(ps)) {
            let at = (e.offset - start) as usize;
            let stored = part
                .get(at..at + e.stored_len as usize)
                .ok_or_else(|| corrupt(format!("page {} lies outside part {i}", e.pgno)))?;
            self.page_into(e, stored, page)?;
        }
        Ok(pages.first().map_or(PageNo(0), |e| e.pgno))
    }

    /// Whether every page of part `i` is stored raw: then the part's bytes
    /// are its pages' images back to back, and can be checked and written
    /// as fetched, without decoding them into another buffer.
    pub fn part_is_raw(&self, i: usize) -> bool {
        let (Some(part), pages) = (self.parts.get(i), self.pages_in_part(i)) else {
            return false;
        };
        let ps = self.header.page_size as u64;
        !pages.is_empty()
            && part.len == pages.len() as u64 * ps
            && pages.iter().enumerate().all(|(k, e)| {
                !e.compressed
                    && !e.delta
                    && e.stored_len as u64 == ps
                    && e.offset == part.start + k as u64 * ps
            })
    }

    /// Check a raw page's image, in place, against its entry.
    pub fn check_image(&self, entry: &PageEntry, image: &[u8]) -> Result<()> {
        if entry.compressed || entry.delta || image.len() != self.header.page_size as usize {
            return Err(Error::invalid(format!(
                "page {} is not stored as a raw image",
                entry.pgno
            )));
        }
        if crc32c::crc32c(image) != entry.crc {
            return Err(corrupt(format!("page {} checksum mismatch", entry.pgno)));
        }
        Ok(())
    }

    /// If part `i` [is raw](Self::part_is_raw), check every page of it in
    /// place and return the first page's number; `None` if the part must be
    /// decoded. The part's bytes are exactly these pages, so this checks
    /// every byte of it; the part table's own checksum is left to
    /// [`check_part`](Self::check_part) (verify), as combining the pages'
    /// (`crc32c_combine` per page) cost more than a second pass.
    pub fn check_raw_part(&self, i: usize, part: &[u8]) -> Result<Option<PageNo>> {
        if !self.part_is_raw(i) || part.len() as u64 != self.parts[i].len {
            return Ok(None);
        }
        let pages = self.pages_in_part(i);
        let ps = self.header.page_size as usize;
        for (e, image) in pages.iter().zip(part.chunks_exact(ps)) {
            self.check_image(e, image)?;
        }
        Ok(pages.first().map(|e| e.pgno))
    }

    /// Check a whole part object against the part table.
    pub fn check_part(&self, i: usize, data: &[u8]) -> Result<()> {
        let p = self
            .parts
            .get(i)
            .ok_or_else(|| corrupt(format!("no part {i}")))?;
        if data.len() as u64 != p.len {
            return Err(corrupt(format!(
                "part {i} is {} bytes, the index says {}",
                data.len(),
                p.len
            )));
        }
        if crc32c::crc32c(data) != p.crc {
            return Err(corrupt(format!("part {i} checksum mismatch")));
        }
        Ok(())
    }

    /// Length of the whole object.
    pub fn object_len(&self) -> u64 {
        self.header.object_len()
    }

    /// Bytes of header + index.
    pub fn prefix_len(&self) -> u64 {
        self.header.prefix_len()
    }

    /// The txn entry of `txid`, if it is in this object.
    pub fn txn_for(&self, txid: TxId) -> Option<&TxnEntry> {
        let i = txid.0.checked_sub(self.header.first_txid.0)?;
        let t = self.txns.get(usize::try_from(i).ok()?)?;
        (t.txid == txid).then_some(t)
    }

    /// The page entries of one transaction, sorted by page number.
    pub fn pages_of(&self, txn: &TxnEntry) -> &[PageEntry] {
        let start = txn.first_entry as usize;
        self.pages
            .get(start..start.saturating_add(txn.entry_count as usize))
            .unwrap_or(&[])
    }

    /// The newest image of `pgno` written by a txn `<= upto` in this object,
    /// with the txn that wrote it. The caller checks the target txn's
    /// `db_pages` (a page past the end after a truncation does not exist).
    pub fn find_page(&self, pgno: PageNo, upto: TxId) -> Option<(&TxnEntry, &PageEntry)> {
        self.txns
            .iter()
            .rev()
            .filter(|t| t.txid <= upto)
            .find_map(|t| {
                let pages = self.pages_of(t);
                let i = pages.binary_search_by_key(&pgno, |p| p.pgno).ok()?;
                Some((t, &pages[i]))
            })
    }

    /// Decompress and check one page from its stored bytes (exactly
    /// `entry.range()` of the object).
    pub fn page_bytes(&self, entry: &PageEntry, stored: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.header.page_size as usize];
        self.page_into(entry, stored, &mut out)?;
        Ok(out)
    }

    /// Like [`page_bytes`](Self::page_bytes), into `out` (`page_size` bytes).
    pub fn page_into(&self, entry: &PageEntry, stored: &[u8], out: &mut [u8]) -> Result<()> {
        let pgno = entry.pgno;
        let page_size = self.header.page_size as usize;
        if out.len() != page_size {
            return Err(Error::invalid(format!(
                "page buffer is {} bytes, page size {page_size}",
                out.len()
            )));
        }
        if stored.len() != entry.stored_len as usize {
            return Err(corrupt(format!(
                "page {pgno}: {} stored bytes, expected {}",
                stored.len(),
                entry.stored_len
            )));
        }
        if entry.delta {
            return Err(Error::invalid(format!(
                "page {pgno} is stored as a delta: resolve it against its base"
            )));
        }
        if entry.compressed {
            match lz4_flex::block::decompress_into(stored, out) {
                Ok(n) if n == page_size => {}
                _ => return Err(corrupt(format!("page {pgno}: bad lz4 data"))),
            }
        } else if stored.len() == page_size {
            out.copy_from_slice(stored);
        } else {
            return Err(corrupt(format!(
                "page {pgno}: bad stored length {}",
                stored.len()
            )));
        }
        if crc32c::crc32c(out) != entry.crc {
            return Err(corrupt(format!("page {pgno} checksum mismatch")));
        }
        Ok(())
    }
}

/// One transaction's pages with deltas resolved.
pub type ResolvedTxn = Vec<(PageNo, Vec<u8>)>;

impl SegmentIndex {
    /// Resolve a delta entry against `base` (the page's previous image in
    /// this segment) into `out`, checking the result's checksum.
    pub fn page_into_with_base(
        &self,
        entry: &PageEntry,
        stored: &[u8],
        base: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        if !entry.delta {
            return self.page_into(entry, stored, out);
        }
        let pgno = entry.pgno;
        if base.len() != out.len() || out.len() != self.header.page_size as usize {
            return Err(Error::invalid(format!(
                "page {pgno}: base or buffer is not one page"
            )));
        }
        out.copy_from_slice(base);
        match crate::format::delta::apply(out, stored) {
            Ok(n) if n == stored.len() => {}
            Ok(_) => {
                return Err(corrupt(format!(
                    "page {pgno}: trailing bytes after its delta"
                )));
            }
            Err(e) => return Err(corrupt(format!("page {pgno}: {e}"))),
        }
        if crc32c::crc32c(out) != entry.crc {
            return Err(corrupt(format!("page {pgno} checksum mismatch")));
        }
        Ok(())
    }
}

impl Segment {
    /// Every transaction's pages, deltas resolved, in order.
    pub fn resolve(&self) -> Result<Vec<ResolvedTxn>> {
        let ps = self.index.header.page_size as usize;
        let mut latest: std::collections::HashMap<PageNo, Vec<u8>> = Default::default();
        let mut out = Vec::with_capacity(self.index.txns.len());
        for t in &self.index.txns {
            let mut pages = Vec::new();
            for e in self.index.pages_of(t) {
                let mut page = vec![0u8; ps];
                match latest.get(&e.pgno) {
                    Some(base) if e.delta => {
                        self.index
                            .page_into_with_base(e, self.stored(e)?, base, &mut page)?
                    }
                    _ => self.index.page_into(e, self.stored(e)?, &mut page)?,
                }
                latest.insert(e.pgno, page.clone());
                pages.push((e.pgno, page));
            }
            out.push(pages);
        }
        Ok(out)
    }

    pub fn header(&self) -> &SegmentHeader {
        &self.index.header
    }

    /// The stored bytes of one page entry.
    pub fn stored(&self, entry: &PageEntry) -> Result<&[u8]> {
        let r = entry.range();
        usize::try_from(r.start)
            .ok()
            .zip(usize::try_from(r.end).ok())
            .and_then(|(s, e)| self.data.get(s..e))
            .ok_or_else(|| corrupt(format!("page {}: beyond the object", entry.pgno)))
    }

    /// One page, decompressed and checked.
    pub fn page(&self, entry: &PageEntry) -> Result<Vec<u8>> {
        self.index.page_bytes(entry, self.stored(entry)?)
    }

    /// Like [`page`](Self::page), but a raw page is checked in place and
    /// shared with the object (no copy, no new memory).
    pub fn page_shared(&self, entry: &PageEntry) -> Result<Bytes> {
        let stored = self.stored(entry)?;
        if entry.compressed || entry.delta {
            return self.index.page_bytes(entry, stored).map(Bytes::from);
        }
        self.index.check_image(entry, stored)?;
        Ok(self.data.slice_ref(stored))
    }

    /// The pages of the `i`-th transaction (empty if there is none).
    pub fn txn_pages(&self, i: usize) -> impl Iterator<Item = Result<(PageNo, Vec<u8>)>> + '_ {
        let pages: Vec<Result<(PageNo, Vec<u8>)>> = match self.resolve() {
            Ok(mut all) if i < all.len() => all.swap_remove(i).into_iter().map(Ok).collect(),
            Ok(_) => Vec::new(),
            Err(e) => vec![Err(e)],
        };
        pages.into_iter()
    }

    /// Every transaction with its pages, each checked.
    pub fn to_txns(&self) -> Result<Vec<TxnPages>> {
        let all = self.resolve()?;
        Ok(self
            .index
            .txns
            .iter()
            .zip(all)
            .map(|(t, pages)| TxnPages {
                txid: t.txid,
                commit: t.commit,
                db_pages: t.db_pages,
                pages: pages
                    .into_iter()
                    .map(|(n, p)| (n, Bytes::from(p)))
                    .collect(),
            })
            .collect())
    }

    /// Check every page's checksum (the body checksum was checked by decode).
    pub fn verify(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }
}

/// Encode with the default options (lz4, created now).
pub fn encode(meta: &SegmentMeta, txns: &[TxnPages]) -> Result<Bytes> {
    encode_with(meta, txns, &EncodeOptions::default())
}

/// Encode a segment or snapshot object. Within a txn, a page given twice
/// keeps its last image; pages are stored sorted by page number.
pub fn encode_with(meta: &SegmentMeta, txns: &[TxnPages], opts: &EncodeOptions) -> Result<Bytes> {
    check_page_size(meta.page_size).map_err(Error::invalid)?;
    let page_size = meta.page_size as usize;
    let (Some(first), Some(last)) = (txns.first(), txns.last()) else {
        return Err(Error::invalid("no transactions to encode"));
    };
    if meta.kind == SegmentKind::SplitSnapshot {
        return Err(Error::invalid(
            "a split snapshot is written page by page: use SnapshotWriter",
        ));
    }
    if meta.kind == SegmentKind::Snapshot && txns.len() != 1 {
        return Err(Error::invalid(format!(
            "a snapshot holds exactly one transaction, got {}",
            txns.len()
        )));
    }
    if first.txid.0 == 0 {
        return Err(Error::invalid("txid 0 is not a transaction"));
    }

    // Validate, dedup (last image wins) and sort each txn's pages.
    let mut sorted: Vec<Vec<(PageNo, &Bytes)>> = Vec::with_capacity(txns.len());
    let mut prev: Option<TxId> = None;
    for t in txns {
        if let Some(p) = prev
            && p.0.checked_add(1) != Some(t.txid.0)
        {
            return Err(Error::invalid(format!(
                "txids not consecutive: {} after {p}",
                t.txid
            )));
        }
        prev = Some(t.txid);
        let mut map: BTreeMap<PageNo, &Bytes> = BTreeMap::new();
        for (pgno, data) in &t.pages {
            if pgno.0 == 0 || pgno.0 > t.db_pages {
                return Err(Error::invalid(format!(
                    "txn {}: page {pgno} beyond database size {} pages",
                    t.txid, t.db_pages
                )));
            }
            if data.len() != page_size {
                return Err(Error::invalid(format!(
                    "txn {}: page {pgno} is {} bytes, page size {page_size}",
                    t.txid,
                    data.len()
                )));
            }
            map.insert(*pgno, data);
        }
        if meta.kind == SegmentKind::Snapshot && map.len() != t.db_pages as usize {
            return Err(Error::invalid(format!(
                "snapshot of {} pages holds {} distinct pages",
                t.db_pages,
                map.len()
            )));
        }
        sorted.push(map.into_iter().collect());
    }

    let too_big = || Error::invalid("too many pages for one object");
    let page_total: usize = sorted.iter().map(Vec::len).sum();
    let txn_count = u32::try_from(txns.len()).map_err(|_| too_big())?;
    let page_count = u32::try_from(page_total).map_err(|_| too_big())?;
    let index_len = u32::try_from(
        txns.len() as u64 * TXN_ENTRY_LEN as u64 + page_total as u64 * PAGE_ENTRY_LEN as u64,
    )
    .map_err(|_| too_big())?;
    let prefix_len = HEADER_LEN + index_len as usize;

    // Header placeholder and index space, then the body appended directly.
    let mut out = vec![0u8; prefix_len];
    out.reserve(page_total * page_size / 2);
    let mut txn_table = Vec::with_capacity(txns.len() * TXN_ENTRY_LEN);
    let mut page_table = Vec::with_capacity(page_total * PAGE_ENTRY_LEN);
    let mut next_entry = 0u32;
    let mut latest: std::collections::HashMap<u32, &[u8]> = Default::default();
    for (t, pages) in txns.iter().zip(&sorted) {
        txn_table.extend_from_slice(&t.txid.0.to_le_bytes());
        txn_table.extend_from_slice(&t.commit.0.to_le_bytes());
        txn_table.extend_from_slice(&t.db_pages.to_le_bytes());
        txn_table.extend_from_slice(&next_entry.to_le_bytes());
        txn_table.extend_from_slice(&(pages.len() as u32).to_le_bytes());
        txn_table.extend_from_slice(&0u32.to_le_bytes());
        next_entry += pages.len() as u32;
        for (pgno, data) in pages {
            let offset = out.len() as u64;
            let crc = crc32c::crc32c(data);
            let mut flags = 0u32;
            // A page already in this segment is stored as its change, when small.
            let base = if meta.kind == SegmentKind::Segment && opts.compress {
                latest.insert(pgno.0, &data[..])
            } else {
                None
            };
            if base.is_some_and(|b| crate::format::delta::encode(b, data, page_size / 4, &mut out))
            {
                flags |= FLAG_DELTA;
                let stored_len = (out.len() as u64 - offset) as u32;
                page_table.extend_from_slice(&pgno.0.to_le_bytes());
                page_table.extend_from_slice(&flags.to_le_bytes());
                page_table.extend_from_slice(&offset.to_le_bytes());
                page_table.extend_from_slice(&stored_len.to_le_bytes());
                page_table.extend_from_slice(&crc.to_le_bytes());
                continue;
            }
            let compressed = if opts.compress {
                lz4_flex::block::compress(data)
            } else {
                Vec::new()
            };
            if opts.compress && worth_compressing(compressed.len(), page_size) {
                flags |= FLAG_LZ4;
                out.extend_from_slice(&compressed);
            } else {
                out.extend_from_slice(data);
            }
            let stored_len = (out.len() as u64 - offset) as u32;
            page_table.extend_from_slice(&pgno.0.to_le_bytes());
            page_table.extend_from_slice(&flags.to_le_bytes());
            page_table.extend_from_slice(&offset.to_le_bytes());
            page_table.extend_from_slice(&stored_len.to_le_bytes());
            page_table.extend_from_slice(&crc.to_le_bytes());
        }
    }
    put(&mut out, HEADER_LEN, &txn_table);
    put(&mut out, HEADER_LEN + txn_table.len(), &page_table);

    let index = out.get(HEADER_LEN..prefix_len).unwrap_or(&[]);
    let body = out.get(prefix_len..).unwrap_or(&[]);
    let header = SegmentHeader {
        version: VERSION,
        kind: meta.kind,
        codec: if opts.compress {
            Codec::Lz4
        } else {
            Codec::None
        },
        page_size: meta.page_size,
        db_id: meta.db_id,
        epoch: meta.epoch,
        first_txid: first.txid,
        last_txid: last.txid,
        created: opts.created.unwrap_or_else(Millis::now),
        txn_count,
        page_count,
        index_len,
        body_len: body.len() as u64,
        index_crc: crc32c::crc32c(index),
        body_crc: crc32c::crc32c(body),
    };
    put(&mut out, 0, &header.encode());
    Ok(Bytes::from(out))
}

/// Writes a snapshot page by page, so that a large database never has to be
/// in memory at once: its body is cut into parts of about `part_bytes`
/// (at page boundaries), handed out as they fill. A snapshot whose body
/// fits in one part is written as one object of kind `Snapshot` instead.
pub struct SnapshotWriter {
    meta: SegmentMeta,
    txid: TxId,
    commit: Millis,
    db_pages: u32,
    opts: EncodeOptions,
    part_bytes: usize,
    /// (flags, offset in the body, stored length, crc) of pages 1, 2, ...
    entries: Vec<(u32, u64, u32, u32)>,
    cur: Vec<u8>,
    parts: Vec<(u64, u32)>,
    body_len: u64,
    body_crc: u32,
}

/// A finished snapshot.
pub enum Written {
    /// Small enough for one object (kind `Snapshot`): nothing was handed out.
    Whole(Bytes),
    /// The index object (kind `SplitSnapshot`) and the last part, if the
    /// last page did not just fill one.
    Split { index: Bytes, last: Option<Bytes> },
}

impl SnapshotWriter {
    pub fn new(
        meta: &SegmentMeta,
        txid: TxId,
        commit: Millis,
        db_pages: u32,
        part_bytes: u64,
        opts: &EncodeOptions,
    ) -> Result<SnapshotWriter> {
        check_page_size(meta.page_size).map_err(Error::invalid)?;
        if txid.0 == 0 {
            return Err(Error::invalid("txid 0 is not a transaction"));
        }
        if db_pages == 0 {
            return Err(Error::invalid("a snapshot holds at least one page"));
        }
        let part_bytes = usize::try_from(part_bytes)
            .ok()
            .filter(|&n| n >= meta.page_size as usize)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "snapshot parts of {part_bytes} bytes cannot hold a {}-byte page",
                    meta.page_size
                ))
            })?;
        Ok(SnapshotWriter {
            meta: *meta,
            txid,
            commit,
            db_pages,
            opts: *opts,
            part_bytes,
            entries: Vec::with_capacity(db_pages as usize),
            cur: Vec::with_capacity(part_bytes.min(64 << 20)),
            parts: Vec::new(),
            body_len: 0,
            body_crc: 0,
        })
    }

    /// Add the next page (pages come in order, 1 to `db_pages`). Returns a
    /// part once one is full: the caller uploads it.
    pub fn push(&mut self, page: &[u8]) -> Result<Option<Bytes>> {
        let pgno = self.entries.len() as u32 + 1;
        if pgno > self.db_pages {
            return Err(Error::invalid(format!(
                "page {pgno} beyond database size {} pages",
                self.db_pages
            )));
        }
        if page.len() != self.meta.page_size as usize {
            return Err(Error::invalid(format!(
                "page {pgno} is {} bytes, page size {}",
                page.len(),
                self.meta.page_size
            )));
        }
        let compressed = if self.opts.compress {
            lz4_flex::block::compress(page)
        } else {
            Vec::new()
        };
        let (flags, stored): (u32, &[u8]) =
            if self.opts.compress && worth_compressing(compressed.len(), page.len()) {
                (FLAG_LZ4, &compressed)
            } else {
                (0, page)
            };
        // A page goes to the next part if it would overfill this one.
        let full = (!self.cur.is_empty() && self.cur.len() + stored.len() > self.part_bytes)
            .then(|| self.cut());
        self.entries.push((
            flags,
            self.body_len + self.cur.len() as u64,
            stored.len() as u32,
            crc32c::crc32c(page),
        ));
        self.cur.extend_from_slice(stored);
        Ok(full)
    }

    fn cut(&mut self) -> Bytes {
        let part = std::mem::replace(&mut self.cur, Vec::with_capacity(self.part_bytes));
        let crc = crc32c::crc32c(&part);
        self.body_crc = crc32c::crc32c_append(self.body_crc, &part);
        self.body_len += part.len() as u64;
        self.parts.push((part.len() as u64, crc));
        Bytes::from(part)
    }

    /// The index object (and the last part), once every page was pushed.
    pub fn finish(mut self) -> Result<Written> {
        if self.entries.len() != self.db_pages as usize {
            return Err(Error::invalid(format!(
                "snapshot of {} pages got {} pages",
                self.db_pages,
                self.entries.len()
            )));
        }
        let whole = self.parts.is_empty();
        let last = (!whole && !self.cur.is_empty()).then(|| self.cut());
        let body = whole.then(|| std::mem::take(&mut self.cur));
        if let Some(b) = &body {
            self.body_crc = crc32c::crc32c(b);
            self.body_len = b.len() as u64;
        }
        let too_big = || Error::invalid("too many pages for one snapshot");
        let kind = if whole {
            SegmentKind::Snapshot
        } else {
            SegmentKind::SplitSnapshot
        };
        let index_len = u32::try_from(
            TXN_ENTRY_LEN as u64
                + self.entries.len() as u64 * kind.page_entry_len() as u64
                + self.parts.len() as u64 * PART_ENTRY_LEN as u64,
        )
        .map_err(|_| too_big())?;
        let prefix_len = HEADER_LEN as u64 + index_len as u64;
        let mut out = Vec::with_capacity(prefix_len as usize + body.as_ref().map_or(0, Vec::len));
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(&self.txid.0.to_le_bytes());
        out.extend_from_slice(&self.commit.0.to_le_bytes());
        out.extend_from_slice(&self.db_pages.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.db_pages.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for (i, &(flags, offset, len, crc)) in self.entries.iter().enumerate() {
            if !whole {
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&crc.to_le_bytes());
                continue;
            }
            out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&(prefix_len + offset).to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&crc.to_le_bytes());
        }
        for &(len, crc) in &self.parts {
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        let header = SegmentHeader {
            version: VERSION,
            kind,
            codec: if self.opts.compress {
                Codec::Lz4
            } else {
                Codec::None
            },
            page_size: self.meta.page_size,
            db_id: self.meta.db_id,
            epoch: self.meta.epoch,
            first_txid: self.txid,
            last_txid: self.txid,
            created: self.opts.created.unwrap_or_else(Millis::now),
            txn_count: 1,
            page_count: self.db_pages,
            index_len,
            body_len: self.body_len,
            index_crc: crc32c::crc32c(&out[HEADER_LEN..]),
            body_crc: self.body_crc,
        };
        put(&mut out, 0, &header.encode());
        Ok(match body {
            Some(b) => {
                out.extend_from_slice(&b);
                Written::Whole(Bytes::from(out))
            }
            None => Written::Split {
                index: Bytes::from(out),
                last,
            },
        })
    }
}

/// Decode a split snapshot's own object: exactly its header and index.
pub fn decode_split_index(object: &[u8]) -> Result<SegmentIndex> {
    let idx = SegmentIndex::decode(object)?;
    if idx.header.kind != SegmentKind::SplitSnapshot {
        return Err(Error::invalid("not a split snapshot"));
    }
    if object.len() as u64 != idx.header.stored_len() {
        return Err(corrupt(format!(
            "{} bytes, its header says {}",
            object.len(),
            idx.header.stored_len()
        )));
    }
    Ok(idx)
}

/// Decode a whole object (copies it; see [`decode_bytes`] to avoid that).
pub fn decode(object: &[u8]) -> Result<Segment> {
    decode_bytes(Bytes::copy_from_slice(object))
}

/// Decode a whole object: header, index and the body checksum. Page
/// checksums are checked as pages are read ([`Segment::verify`] checks all).
pub fn decode_bytes(object: Bytes) -> Result<Segment> {
    let header = SegmentHeader::decode(&object)?;
    let want = header.object_len();
    let have = object.len() as u64;
    if have < want {
        return Err(corrupt(format!("truncated: {have} of {want} bytes")));
    }
    if have > want {
        return Err(corrupt(format!(
            "trailing bytes: {have} bytes, header says {want}"
        )));
    }
    let index = SegmentIndex::decode(&object)?;
    let body = object
        .get(HEADER_LEN + header.index_len as usize..)
        .unwrap_or(&[]);
    if crc32c::crc32c(body) != header.body_crc {
        return Err(corrupt("body checksum mismatch"));
    }
    Ok(Segment {
        index,
        data: object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// Small deterministic PRNG (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.next() as u8;
            }
        }
    }

    const PS: u32 = 1024;

    fn meta(kind: SegmentKind) -> SegmentMeta {
        SegmentMeta {
            db_id: DbId([7; 16]),
            epoch: Epoch(3),
            page_size: PS,
            kind,
        }
    }

    fn opts() -> EncodeOptions {
        EncodeOptions {
            created: Some(Millis(1_700_000_000_000)),
            compress: true,
        }
    }

    /// Random (incompressible) or patterned (compressible) page.
    fn page(rng: &mut Rng, compressible: bool) -> Bytes {
        let mut p = vec![0u8; PS as usize];
        if compressible {
            let b = rng.next() as u8;
            for (i, x) in p.iter_mut().enumerate() {
                *x = if i % 64 < 8 { b } else { 0 };
            }
        } else {
            rng.fill(&mut p);
        }
        Bytes::from(p)
    }

    /// Several txns with duplicates, mixed compressibility, a shrink.
    fn sample_txns(rng: &mut Rng) -> Vec<TxnPages> {
        let mut txns = Vec::new();
        for (i, db_pages) in [20u32, 24, 24, 10, 12].into_iter().enumerate() {
            let n = 1 + rng.below(6) as usize;
            let mut pages = Vec::new();
            for _ in 0..n {
                let pgno = PageNo(1 + rng.below(db_pages as u64) as u32);
                let compressible = rng.below(2) == 0;
                pages.push((pgno, page(rng, compressible)));
            }
            // A duplicate of the first page, with a new image: last one wins.
            let dup = pages[0].0;
            pages.push((dup, page(rng, true)));
            txns.push(TxnPages {
                txid: TxId(41 + i as u64),
                commit: Millis(1000 + i as u64),
                db_pages,
                pages,
            });
        }
        txns
    }

    /// What decoding must give: per txn, dedup keeping the last, sorted.
    fn expected(txns: &[TxnPages]) -> Vec<TxnPages> {
        txns.iter()
            .map(|t| {
                let map: BTreeMap<PageNo, Bytes> = t.pages.iter().cloned().collect();
                TxnPages {
                    pages: map.into_iter().collect(),
                    ..t.clone()
                }
            })
            .collect()
    }

    #[test]
    fn roundtrip_segment() {
        let mut rng = Rng(0x1234_5678);
        let txns = sample_txns(&mut rng);
        let obj = encode_with(&meta(SegmentKind::Segment), &txns, &opts()).unwrap();
        let seg = decode(&obj).unwrap();
        let h = seg.header();
        assert_eq!(h.meta(), meta(SegmentKind::Segment));
        assert_eq!((h.first_txid, h.last_txid), (TxId(41), TxId(45)));
        assert_eq!(h.codec, Codec::Lz4);
        assert_eq!(h.created, Millis(1_700_000_000_000));
        assert_eq!(seg.index.object_len(), obj.len() as u64);
        assert_eq!(seg.to_txns().unwrap(), expected(&txns));
        seg.verify().unwrap();
        // Both compressed and raw pages are present.
        assert!(seg.index.pages.iter().any(|p| p.compressed));
        assert!(seg.index.pages.iter().any(|p| !p.compressed));
        assert_eq!(seg.index.txn_for(TxId(43)).unwrap().txid, TxId(43));
        assert!(seg.index.txn_for(TxId(40)).is_none());
        assert!(seg.index.txn_for(TxId(46)).is_none());
        // Encoding is deterministic.
        assert_eq!(
            obj,
            encode_with(&meta(SegmentKind::Segment), &txns, &opts()).unwrap()
        );
    }

    #[test]
    fn a_shared_page_is_the_decoded_page_and_a_damaged_one_is_refused() {
        let mut rng = Rng(7);
        let pages: Vec<_> = (1..=9)
            .map(|n| (PageNo(n), page(&mut rng, n % 3 == 0)))
            .collect();
        let snap = vec![TxnPages {
            txid: TxId(3),
            commit: Millis(5),
            db_pages: 9,
            pages,
        }];
        let obj = encode_with(&meta(SegmentKind::Snapshot), &snap, &opts()).unwrap();
        let seg = decode_bytes(obj.clone()).unwrap();
        let entries = seg.index.pages.clone();
        assert!(entries.iter().any(|e| e.compressed) && entries.iter().any(|e| !e.compressed));
        let within = obj.as_ptr_range();
        for e in &entries {
            let shared = seg.page_shared(e).unwrap();
            assert_eq!(&shared[..], &seg.page(e).unwrap()[..]);
            // Raw pages point into the object: no copy was made.
            assert_eq!(
                !e.compressed,
                within.contains(&shared.as_ptr()),
                "page {}",
                e.pgno
            );
        }
        let raw = entries.iter().find(|e| !e.compressed).unwrap();
        let mut damaged = obj.to_vec();
        damaged[raw.offset as usize + 100] ^= 1;
        let seg = Segment {
            index: seg.index,
            data: Bytes::from(damaged),
        };
        let err = seg.page_shared(raw).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn roundtrip_uncompressed_and_snapshot() {
        let mut rng = Rng(99);
        let txns = sample_txns(&mut rng);
        let o = EncodeOptions {
            compress: false,
            ..opts()
        };
        let obj = encode_with(&meta(SegmentKind::Segment), &txns, &o).unwrap();
        let seg = decode(&obj).unwrap();
        assert_eq!(seg.header().codec, Codec::None);
        assert!(seg.index.pages.iter().all(|p| !p.compressed));
        assert_eq!(seg.to_txns().unwrap(), expected(&txns));

        let pages: Vec<_> = (1..=9)
            .rev()
            .map(|n| (PageNo(n), page(&mut rng, n % 2 == 0)))
            .collect();
        let snap = vec![TxnPages {
            txid: TxId(77),
            commit: Millis(5),
            db_pages: 9,
            pages,
        }];
        let obj = encode_with(&meta(SegmentKind::Snapshot), &snap, &opts()).unwrap();
        let seg = decode(&obj).unwrap();
        assert_eq!(seg.header().kind, SegmentKind::Snapshot);
        assert_eq!(seg.to_txns().unwrap(), expected(&snap));
    }

    #[test]
    fn ranged_read_path() {
        let mut rng = Rng(7);
        let txns = sample_txns(&mut rng);
        let obj = encode_with(&meta(SegmentKind::Segment), &txns, &opts()).unwrap();
        // First GET: a guess at the prefix; the header says how much is needed.
        let header = SegmentHeader::decode(&obj[..HEADER_LEN]).unwrap();
        let prefix = &obj[..header.prefix_len() as usize];
        let err = SegmentIndex::decode(&prefix[..prefix.len() - 1]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().starts_with("truncated"), "{err}");
        let index = SegmentIndex::decode(prefix).unwrap();
        let want = expected(&txns);
        for (t, w) in index.txns.iter().zip(&want) {
            assert_eq!(t.db_pages, w.db_pages);
            for (e, (pgno, data)) in index.pages_of(t).iter().zip(&w.pages) {
                let r = e.range();
                let page = index
                    .page_bytes(e, &obj[r.start as usize..r.end as usize])
                    .unwrap();
                assert_eq!((e.pgno, &page[..]), (*pgno, &data[..]));
            }
        }
        // find_page: newest image at or before a txid.
        for upto in [41u64, 43, 45] {
            for pgno in 1..=24 {
                let pgno = PageNo(pgno);
                let newest = want
                    .iter()
                    .filter(|t| t.txid.0 <= upto)
                    .rev()
                    .find_map(|t| {
                        t.pages
                            .iter()
                            .find(|(n, _)| *n == pgno)
                            .map(|(_, img)| (t.txid, img))
                    });
                match (index.find_page(pgno, TxId(upto)), newest) {
                    (None, None) => {}
                    (Some((t, e)), Some((txid, img))) => {
                        assert_eq!(t.txid, txid);
                        let r = e.range();
                        let got = index
                            .page_bytes(e, &obj[r.start as usize..r.end as usize])
                            .unwrap();
                        assert_eq!(&got[..], &img[..]);
                    }
                    (got, want) => panic!("find_page({pgno}, {upto}): {got:?} vs {want:?}"),
                }
            }
        }
        assert!(index.find_page(PageNo(1000), TxId(45)).is_none());
        // A wrong slice is caught.
        let e = &index.pages[0];
        let r = e.range();
        let mut bad = obj[r.start as usize..r.end as usize].to_vec();
        bad[0] ^= 1;
        let err = index.page_bytes(e, &bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(index.page_bytes(e, &bad[1..]).is_err());
    }

    #[test]
    fn encode_rejects_bad_input() {
        let mut rng = Rng(5);
        let m = meta(SegmentKind::Segment);
        let t = |txid, db_pages, pages| TxnPages {
            txid: TxId(txid),
            commit: Millis(0),
            db_pages,
            pages,
        };
        let p = page(&mut rng, false);
        let inv = |r: Result<Bytes>| assert_eq!(r.unwrap_err().kind(), ErrorKind::Invalid);
        inv(encode(&m, &[]));
        inv(encode(&m, &[t(1, 5, vec![(PageNo(6), p.clone())])]));
        inv(encode(&m, &[t(1, 5, vec![(PageNo(0), p.clone())])]));
        inv(encode(&m, &[t(1, 5, vec![(PageNo(1), p.slice(..100))])]));
        inv(encode(&m, &[t(1, 5, vec![]), t(3, 5, vec![])]));
        inv(encode(&m, &[t(2, 5, vec![]), t(2, 5, vec![])]));
        inv(encode(&m, &[t(0, 5, vec![])]));
        for ps in [0, 256, 1000, 131072] {
            inv(encode(
                &SegmentMeta { page_size: ps, ..m },
                &[t(1, 0, vec![])],
            ));
        }
        let s = meta(SegmentKind::Snapshot);
        inv(encode(
            &s,
            &[t(1, 1, vec![(PageNo(1), p.clone())]), t(2, 1, vec![])],
        ));
        inv(encode(&s, &[t(1, 2, vec![(PageNo(1), p.clone())])]));
        encode(&s, &[t(1, 1, vec![(PageNo(1), p.clone())])]).unwrap();
        // Consecutive txns, empty txns are fine.
        encode(&m, &[t(1, 5, vec![]), t(2, 5, vec![(PageNo(5), p)])]).unwrap();
    }

    #[test]
    fn error_messages() {
        let mut rng = Rng(11);
        let obj =
            encode_with(&meta(SegmentKind::Segment), &sample_txns(&mut rng), &opts()).unwrap();
        let msg = |b: &[u8]| decode(b).unwrap_err().to_string();
        assert_eq!(msg(&obj[..100]), "truncated: 100 of 128 header bytes");
        assert_eq!(
            msg(&obj[..obj.len() - 1]),
            format!("truncated: {} of {} bytes", obj.len() - 1, obj.len())
        );
        let mut b = obj.to_vec();
        b[0] = b'X';
        assert_eq!(msg(&b), "bad magic");
        let mut b = obj.to_vec();
        b[offsets::EPOCH] ^= 1;
        assert_eq!(msg(&b), "header checksum mismatch");
        let mut b = obj.to_vec();
        b[HEADER_LEN + 3] ^= 1;
        assert_eq!(msg(&b), "index checksum mismatch");
        let mut b = obj.to_vec();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert_eq!(msg(&b), "body checksum mismatch");
        // Page checksum names the page (ranged path, no body check).
        let seg = decode(&obj).unwrap();
        let e = seg.index.pages.iter().find(|p| !p.compressed).unwrap();
        let mut stored = seg.stored(e).unwrap().to_vec();
        stored[10] ^= 0x40;
        assert_eq!(
            seg.index.page_bytes(e, &stored).unwrap_err().to_string(),
            format!("page {} checksum mismatch", e.pgno)
        );
    }

    fn check_no_panic(obj: &[u8], want: &[TxnPages], rng: &mut Rng, rounds: usize) {
        let prefix_len = SegmentHeader::decode(obj).unwrap().prefix_len() as usize;
        for n in 0..obj.len() {
            assert!(decode(&obj[..n]).is_err(), "truncation to {n} decoded");
            let r = SegmentIndex::decode(&obj[..n]);
            assert_eq!(r.is_ok(), n >= prefix_len, "index of truncation to {n}");
        }
        for _ in 0..rounds {
            let mut b = obj.to_vec();
            let pos = rng.below(b.len() as u64) as usize;
            b[pos] ^= 1 + rng.below(255) as u8;
            // Whole-object path.
            if let Ok(seg) = decode(&b) {
                assert_eq!(seg.to_txns().unwrap(), want, "flip at {pos} changed pages");
                assert!(
                    (offsets::HEADER_END..HEADER_LEN).contains(&pos),
                    "flip at {pos} undetected"
                );
            }
            // Ranged path: index from the prefix, each page from its slice,
            // no body checksum; the page checksum must catch it.
            if let Ok(index) = SegmentIndex::decode(&b) {
                let mut buf = vec![0u8; index.header.page_size as usize];
                for (t, w) in index.txns.iter().zip(want) {
                    for (e, (_, img)) in index.pages_of(t).iter().zip(&w.pages) {
                        let r = e.range();
                        let Some(stored) = b.get(r.start as usize..r.end as usize) else {
                            continue;
                        };
                        if index.page_into(e, stored, &mut buf).is_ok() {
                            assert_eq!(&buf[..], &img[..], "flip at {pos} changed page {}", e.pgno);
                        }
                    }
                }
            }
        }
    }

    /// Pages rewritten in later transactions of a segment are stored as
    /// deltas, decode exactly, and corrupting them never panics.
    #[test]
    fn repeated_pages_are_deltas() {
        let mut rng = Rng(99);
        let mut leaf = vec![0u8; 1024];
        let mut txns = Vec::new();
        for i in 1..=40u64 {
            leaf[1000 - 3 * i as usize] = i as u8;
            leaf[100] = i as u8;
            txns.push(TxnPages {
                txid: TxId(i),
                commit: Millis(i),
                db_pages: 3,
                pages: vec![
                    (PageNo(2), Bytes::from(leaf.clone())),
                    (PageNo(3), page(&mut rng, false)),
                ],
            });
        }
        let obj = encode_with(&meta(SegmentKind::Segment), &txns, &opts()).unwrap();
        let seg = decode(&obj).unwrap();
        let deltas = seg.index.pages.iter().filter(|e| e.delta).count();
        assert_eq!(deltas, 39, "page 2 after its first image");
        assert!(
            obj.len() < 40 * 1024 + 2 * 1024 + 40 * 100,
            "{} bytes",
            obj.len()
        );
        assert_eq!(seg.to_txns().unwrap(), expected(&txns));
        // A delta alone is refused with a clear error; with its base it resolves.
        let e = seg.index.pages.iter().find(|e| e.delta).unwrap();
        assert!(seg.page(e).is_err());
        check_no_panic(&obj, &expected(&txns), &mut rng, 2000);
    }

    #[test]
    fn no_panic_on_truncation_or_corruption() {
        let mut rng = Rng(0xdead_beef);
        let txns = sample_txns(&mut rng);
        let obj = encode_with(&meta(SegmentKind::Segment), &txns, &opts()).unwrap();
        check_no_panic(&obj, &expected(&txns), &mut rng, 10_000);

        let pages: Vec<_> = (1..=6)
            .map(|n| (PageNo(n), page(&mut rng, n % 2 == 1)))
            .collect();
        let snap = vec![TxnPages {
            txid: TxId(9),
            commit: Millis(1),
            db_pages: 6,
            pages,
        }];
        let obj = encode_with(&meta(SegmentKind::Snapshot), &snap, &opts()).unwrap();
        check_no_panic(&obj, &snap, &mut rng, 2_000);
    }

    /// Recompute index, body and header checksums after tampering, so the
    /// entry checks themselves are exercised.
    fn fix_crcs(b: &mut [u8]) {
        use offsets as o;
        let index_len = u32_at(b, o::INDEX_LEN) as usize;
        let prefix = (HEADER_LEN + index_len).min(b.len());
        let index_crc = crc32c::crc32c(&b[HEADER_LEN..prefix]);
        let body_crc = crc32c::crc32c(&b[prefix..]);
        b[o::INDEX_CRC..o::INDEX_CRC + 4].copy_from_slice(&index_crc.to_le_bytes());
        b[o::BODY_CRC..o::BODY_CRC + 4].copy_from_slice(&body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..o::HEADER_CRC]);
        b[o::HEADER_CRC..o::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn tampered_index_with_valid_checksums_never_panics() {
        let mut rng = Rng(0x5eed);
        let txns = sample_txns(&mut rng);
        let obj = encode_with(&meta(SegmentKind::Segment), &txns, &opts()).unwrap();
        let prefix_len = SegmentHeader::decode(&obj).unwrap().prefix_len() as usize;
        let mut rejected = 0;
        for i in 0..10_000 {
            let mut b = obj.to_vec();
            // Mostly index bytes, sometimes header fields.
            let pos = if i % 4 == 0 {
                rng.below(offsets::HEADER_CRC as u64) as usize
            } else {
                HEADER_LEN + rng.below((prefix_len - HEADER_LEN) as u64) as usize
            };
            b[pos] ^= 1 + rng.below(255) as u8;
            if i % 7 == 0 {
                // And sometimes a length change.
                let n = rng.below(b.len() as u64 + 1) as usize;
                b.truncate(n);
                if b.len() < HEADER_LEN {
                    continue;
                }
            }
            fix_crcs(&mut b);
            match decode(&b) {
                Ok(seg) => {
                    let _ = seg.to_txns();
                    let _ = seg.verify();
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Corrupt);
                    rejected += 1;
                }
            }
            if let Ok(index) = SegmentIndex::decode(&b) {
                let _ = index.find_page(PageNo(3), TxId(44));
            }
        }
        assert!(rejected > 5_000, "only {rejected} rejected");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(42);
        let mut header = encode_with(&meta(SegmentKind::Segment), &sample_txns(&mut rng), &opts())
            .unwrap()[..HEADER_LEN]
            .to_vec();
        for _ in 0..2000 {
            let n = rng.below(600) as usize;
            let mut b = vec![0u8; n];
            rng.fill(&mut b);
            assert!(decode(&b).is_err());
            // Valid magic + version but random fields, with a valid crc.
            rng.fill(&mut header[offsets::KIND..offsets::HEADER_CRC]);
            header[offsets::KIND] = 1 + rng.below(3) as u8;
            header[offsets::CODEC] = rng.below(2) as u8;
            header[offsets::PAGE_SIZE..offsets::PAGE_SIZE + 4].copy_from_slice(&PS.to_le_bytes());
            let crc = crc32c::crc32c(&header[..offsets::HEADER_CRC]);
            header[offsets::HEADER_CRC..offsets::HEADER_CRC + 4]
                .copy_from_slice(&crc.to_le_bytes());
            let mut obj = header.clone();
            obj.extend_from_slice(&b);
            let _ = decode(&obj);
            let _ = SegmentIndex::decode(&obj);
        }
    }

    /// Pages 1..=n, half of them compressible.
    fn snapshot_pages(rng: &mut Rng, n: u32) -> Vec<Bytes> {
        (1..=n).map(|i| page(rng, i % 2 == 0)).collect()
    }

    fn write_snapshot(pages: &[Bytes], part_bytes: u64) -> (Written, Vec<Bytes>) {
        let mut w = SnapshotWriter::new(
            &meta(SegmentKind::Snapshot),
            TxId(9),
            Millis(5),
            pages.len() as u32,
            part_bytes,
            &opts(),
        )
        .unwrap();
        let mut parts = Vec::new();
        for p in pages {
            parts.extend(w.push(p).unwrap());
        }
        (w.finish().unwrap(), parts)
    }

    #[test]
    fn a_small_snapshot_is_one_object_like_encode_makes() {
        let mut rng = Rng(5);
        let pages = snapshot_pages(&mut rng, 12);
        let (written, parts) = write_snapshot(&pages, 1 << 20);
        assert!(parts.is_empty());
        let Written::Whole(obj) = written else {
            panic!("a 12-page snapshot was split")
        };
        let txn = TxnPages {
            txid: TxId(9),
            commit: Millis(5),
            db_pages: 12,
            pages: pages
                .iter()
                .enumerate()
                .map(|(i, p)| (PageNo(i as u32 + 1), p.clone()))
                .collect(),
        };
        let same = encode_with(&meta(SegmentKind::Snapshot), &[txn], &opts()).unwrap();
        assert_eq!(obj, same);
    }

    #[test]
    fn a_page_is_compressed_only_when_that_saves_an_eighth() {
        let mut rng = Rng(8);
        // Random but for a zeroed head: lz4 saves about that head's length.
        let with_zeros = |rng: &mut Rng, zeros: usize| {
            let mut p = page(rng, false).to_vec();
            p[..zeros].fill(0);
            Bytes::from(p)
        };
        let pages = [
            with_zeros(&mut rng, PS as usize / 16),
            with_zeros(&mut rng, PS as usize / 2),
            page(&mut rng, true),
        ];
        let txn = TxnPages {
            txid: TxId(1),
            commit: Millis(1),
            db_pages: 3,
            pages: pages
                .iter()
                .enumerate()
                .map(|(i, p)| (PageNo(i as u32 + 1), p.clone()))
                .collect(),
        };
        let seg =
            decode(&encode_with(&meta(SegmentKind::Snapshot), &[txn], &opts()).unwrap()).unwrap();
        let stored: Vec<(bool, u32)> = seg
            .index
            .pages
            .iter()
            .map(|e| (e.compressed, e.stored_len))
            .collect();
        assert_eq!(stored[0], (false, PS), "saving a sixteenth is not worth it");
        assert!(stored[1].0 && stored[1].1 <= PS - PS / 8, "{:?}", stored[1]);
        assert!(stored[2].0, "a patterned page compresses");
        for (e, p) in seg.index.pages.iter().zip(&pages) {
            assert_eq!(&seg.page(e).unwrap()[..], &p[..]);
        }
    }

    #[test]
    fn a_raw_part_is_checked_in_place_and_a_compressed_one_is_decoded() {
        let mut rng = Rng(9);
        // Six random pages (two raw parts of three), then compressible ones.
        let pages: Vec<Bytes> = (0..12).map(|i| page(&mut rng, i >= 6)).collect();
        let (written, mut parts) = write_snapshot(&pages, 3 * PS as u64);
        let Written::Split { index, last } = written else {
            panic!("not split")
        };
        parts.extend(last);
        let idx = decode_split_index(&index).unwrap();
        assert!(idx.part_is_raw(0) && idx.part_is_raw(1));
        let z = parts.len() - 1;
        assert!(!idx.part_is_raw(z), "the compressible pages' part is raw");
        assert_eq!(idx.check_raw_part(z, &parts[z]).unwrap(), None);
        assert_eq!(idx.check_raw_part(1, &parts[1]).unwrap(), Some(PageNo(4)));
        assert_eq!(
            &parts[1][..],
            &pages[3..6].concat()[..],
            "a raw part is its images"
        );
        // A damaged page is caught by its own checksum, even in place.
        let mut bad = parts[1].to_vec();
        bad[PS as usize + 5] ^= 1;
        let err = idx.check_raw_part(1, &bad).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
        assert!(err.to_string().contains("page 5 checksum"), "{err}");
        assert!(
            idx.check_raw_part(1, &parts[1][PS as usize..])
                .unwrap()
                .is_none()
        );
        // Good pages under a part table entry that disagrees: verify's
        // whole-part check catches it.
        let mut other = idx.clone();
        other.parts[1].crc ^= 1;
        let err = other.check_part(1, &parts[1]).unwrap_err();
        assert!(err.to_string().contains("part 1 checksum"), "{err}");
        let compressed = idx.pages_in_part(z)[0];
        assert!(idx.check_image(&compressed, &parts[z]).is_err());
    }

    #[test]
    fn a_compact_table_decodes_the_same_in_halves_and_names_a_bad_entry() {
        let mut rng = Rng(11);
        let pages = snapshot_pages(&mut rng, 2000);
        let (written, _) = write_snapshot(&pages, 64 * PS as u64);
        let Written::Split { index, .. } = written else {
            panic!("not split")
        };
        let header = SegmentHeader::decode(&index).unwrap();
        let at = HEADER_LEN + TXN_ENTRY_LEN;
        let table = &index[at..at + 2000 * COMPACT_ENTRY_LEN];
        let parts = decode_parts(&header, &index[at + table.len()..]).unwrap();
        let one = decode_compact_at(&header, table, &parts, usize::MAX).unwrap();
        let two = decode_compact_at(&header, table, &parts, 64).unwrap();
        assert_eq!(one, two);
        assert_eq!(one.1, header.object_len());
        let mut offset = header.prefix_len();
        for (i, e) in one.0.iter().enumerate() {
            assert_eq!(
                (e.pgno, e.offset, e.delta),
                (PageNo(i as u32 + 1), offset, false)
            );
            assert_eq!(e.compressed, e.stored_len < PS);
            offset += u64::from(e.stored_len);
        }
        // A bad entry in the second half is found and named.
        let mut bad = table.to_vec();
        bad[1500 * COMPACT_ENTRY_LEN..][..4].copy_from_slice(&0u32.to_le_bytes());
        let err = decode_compact_at(&header, &bad, &parts, 64).unwrap_err();
        assert!(
            err.to_string().contains("page 1501: bad stored length 0"),
            "{err}"
        );
        // One that makes a page cross into the next part.
        let mut long = table.to_vec();
        let compressed = one.0.iter().position(|e| e.stored_len < PS).unwrap();
        long[compressed * COMPACT_ENTRY_LEN..][..4].copy_from_slice(&PS.to_le_bytes());
        assert!(decode_compact_at(&header, &long, &parts, 64).is_err());
    }

    #[test]
    fn a_split_snapshot_reads_back_through_its_parts() {
        let mut rng = Rng(6);
        let pages = snapshot_pages(&mut rng, 40);
        // Parts of at most three raw pages: ~14 parts, each cut at a page.
        let (written, mut parts) = write_snapshot(&pages, 3 * PS as u64);
        let Written::Split { index, last } = written else {
            panic!("not split")
        };
        parts.extend(last);
        assert!(parts.len() > 5, "{} parts", parts.len());
        let idx = SegmentIndex::decode(&index).unwrap();
        assert_eq!(idx.header.kind, SegmentKind::SplitSnapshot);
        assert_eq!(idx.header.stored_len(), index.len() as u64);
        assert_eq!(idx.header.part_count() as usize, parts.len());
        // A compact page table: 8 bytes a page, then 16 a part.
        assert_eq!(
            index.len(),
            HEADER_LEN + TXN_ENTRY_LEN + 40 * COMPACT_ENTRY_LEN + parts.len() * PART_ENTRY_LEN
        );
        assert_eq!(idx.parts.len(), parts.len());
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= 3 * PS as usize);
            idx.check_part(i, p).unwrap();
            // Its pages, decoded back to back from the first one's number.
            let mut images = vec![0u8; idx.pages_in_part(i).len() * PS as usize];
            let first = idx.decode_part_into(i, p, &mut images).unwrap();
            for (k, image) in images.chunks(PS as usize).enumerate() {
                assert_eq!(image, &pages[first.0 as usize - 1 + k][..], "part {i}");
            }
        }
        assert_eq!(decode_split_index(&index).unwrap(), idx);
        assert!(decode_split_index(&index[..index.len() - 1]).is_err());
        // The virtual object decodes like a one-object snapshot.
        let mut virt = index.to_vec();
        for p in &parts {
            virt.extend_from_slice(p);
        }
        let seg = decode(&virt).unwrap();
        seg.verify().unwrap();
        let got = seg.to_txns().unwrap();
        assert_eq!(got[0].pages.len(), 40);
        for (i, (n, p)) in got[0].pages.iter().enumerate() {
            assert_eq!((n.0, p), (i as u32 + 1, &pages[i]));
        }
        // Every page's range lies in one part; a long range spans several.
        for e in &idx.pages {
            let at = idx.locate(e.range());
            assert_eq!(at.len(), 1, "page {}", e.pgno);
            let (Some(k), r) = at[0].clone() else {
                panic!("page {} located in the index object", e.pgno)
            };
            assert_eq!(
                &parts[k][r.start as usize..r.end as usize],
                seg.stored(e).unwrap()
            );
        }
        let all = idx.locate(0..idx.object_len());
        assert_eq!(all.len(), parts.len() + 1);
        assert_eq!(all[0], (None, 0..index.len() as u64));
        assert!(idx.locate(0..idx.object_len() + 1).is_empty());
        // A damaged part is named.
        let mut bad = parts[2].to_vec();
        bad[7] ^= 1;
        let err = idx.check_part(2, &bad).unwrap_err().to_string();
        assert!(err.contains("part 2 checksum"), "{err}");
        assert!(idx.check_part(2, &parts[2][1..]).is_err());
        let mut virt_bad = index.to_vec();
        for (i, p) in parts.iter().enumerate() {
            virt_bad.extend_from_slice(if i == 2 { &bad } else { p });
        }
        assert!(decode(&virt_bad).is_err());
    }

    #[test]
    fn a_split_index_with_a_bad_part_table_is_rejected() {
        let mut rng = Rng(7);
        let pages = snapshot_pages(&mut rng, 20);
        let Written::Split { index, .. } = write_snapshot(&pages, 2 * PS as u64).0 else {
            panic!("not split")
        };
        let idx = SegmentIndex::decode(&index).unwrap();
        let table = HEADER_LEN + TXN_ENTRY_LEN + 20 * COMPACT_ENTRY_LEN;
        // Re-sign a modified index so that only the part table is wrong.
        let resign = |mut b: Vec<u8>| {
            let crc = crc32c::crc32c(&b[HEADER_LEN..]);
            b[offsets::INDEX_CRC..offsets::INDEX_CRC + 4].copy_from_slice(&crc.to_le_bytes());
            let h = crc32c::crc32c(&b[..offsets::HEADER_CRC]);
            b[offsets::HEADER_CRC..offsets::HEADER_CRC + 4].copy_from_slice(&h.to_le_bytes());
            b
        };
        // Parts that do not add up to the body.
        let mut b = index.to_vec();
        b[table] = b[table].wrapping_add(1);
        let err = SegmentIndex::decode(&resign(b)).unwrap_err().to_string();
        assert!(err.contains("body bytes") || err.contains("spans"), "{err}");
        // A boundary moved into a page: the two parts' lengths still add up.
        let mut b = index.to_vec();
        let l0 = idx.parts[0].len - 1;
        let l1 = idx.parts[1].len + 1;
        b[table..table + 8].copy_from_slice(&l0.to_le_bytes());
        b[table + 16..table + 24].copy_from_slice(&l1.to_le_bytes());
        let err = SegmentIndex::decode(&resign(b)).unwrap_err().to_string();
        assert!(err.contains("spans two parts"), "{err}");
        // A page entry claiming a different length: offsets no longer add up.
        let mut b = index.to_vec();
        let e = HEADER_LEN + TXN_ENTRY_LEN + 3 * COMPACT_ENTRY_LEN;
        b[e..e + 4].copy_from_slice(&(PS - 1).to_le_bytes());
        assert!(SegmentIndex::decode(&resign(b)).is_err());
        let mut b = index.to_vec();
        b[e..e + 4].copy_from_slice(&(PS + 1).to_le_bytes());
        let err = SegmentIndex::decode(&resign(b)).unwrap_err().to_string();
        assert!(err.contains("stored length"), "{err}");
        // An empty part.
        let mut b = index.to_vec();
        b[table..table + 8].copy_from_slice(&0u64.to_le_bytes());
        assert!(SegmentIndex::decode(&resign(b)).is_err());
        // A split kind without a part table.
        let mut b = index[..table].to_vec();
        let len = (TXN_ENTRY_LEN + 20 * COMPACT_ENTRY_LEN) as u32;
        b[offsets::INDEX_LEN..offsets::INDEX_LEN + 4].copy_from_slice(&len.to_le_bytes());
        assert!(SegmentIndex::decode(&resign(b)).is_err());
        // Truncated anywhere: an error, never a panic.
        for n in 0..index.len() {
            assert!(SegmentIndex::decode(&index[..n]).is_err());
        }
    }

    #[test]
    fn the_snapshot_writer_refuses_wrong_input() {
        let m = meta(SegmentKind::Snapshot);
        assert!(SnapshotWriter::new(&m, TxId(0), Millis(0), 1, 1 << 20, &opts()).is_err());
        assert!(SnapshotWriter::new(&m, TxId(1), Millis(0), 0, 1 << 20, &opts()).is_err());
        assert!(SnapshotWriter::new(&m, TxId(1), Millis(0), 1, 100, &opts()).is_err());
        let mut w = SnapshotWriter::new(&m, TxId(1), Millis(0), 1, 1 << 20, &opts()).unwrap();
        assert!(w.push(&[0u8; 10]).is_err());
        w.push(&[0u8; PS as usize]).unwrap();
        assert!(w.push(&[0u8; PS as usize]).is_err());
        let w = SnapshotWriter::new(&m, TxId(1), Millis(0), 2, 1 << 20, &opts()).unwrap();
        assert!(w.finish().is_err());
        let split = SegmentMeta {
            kind: SegmentKind::SplitSnapshot,
            ..m
        };
        assert!(encode(&split, &[]).is_err());
    }
}
