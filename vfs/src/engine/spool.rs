//! The local spool: committed transactions that are not in the bucket yet.
//!
//! Invariants:
//! - A record is appended (to memory) under the writer lock together with the
//!   WAL write that commits it, so the spool never holds a transaction whose
//!   commit failed, and the uploader never sees one half-done.
//! - Appends are buffered in memory and written to `active.spool` in batches
//!   (one `write(2)` per ~1 MiB instead of one per commit). The buffer is
//!   written before anything could lose the WAL frames it mirrors: before
//!   SQLite syncs the WAL or the database (so the spool is as durable as they
//!   are), before the WAL restarts or is truncated, and at every seal. After
//!   a crash the lost buffer is rebuilt from the WAL (`Replica::open`).
//! - Records are removed only after the bucket's manifest names them.
//!
//! Files: `active.spool` takes appends; the uploader seals it by renaming it to
//! `<first txid>-<last txid>.spool` and uploads sealed files in order.
//! Record: `len u32 | crc32c u32 | txid u64 | commit_ms u64 | db_pages u32 |
//! page_size u32 | salt1 u32 | salt2 u32 | frame u32 | npages u32 |
//! npages × (pgno u32 | kind u8 | page or delta)`, little-endian; `len`/`crc`
//! cover what follows them. Kind 0 is a full page; kind 1 a delta
//! (`format::delta`) against the page's previous image in the same file.

use crate::error::{Error, IoResultExt, Result};
use crate::types::{Millis, PageNo, TxId};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const RECORD_HEADER: usize = 48;
/// Buffered bytes that force a write to `active.spool`.
const FLUSH_AT: usize = 4 << 20;
/// Buffered bytes at which the committer asks the uploader thread to write
/// them. At 64 KiB the thread woke hundreds of times a second under a small-
/// transaction load and took CPU from the writer on a 2-core machine; 512 KiB
/// measured 0.91–0.97 of plain SQLite instead of 0.83–0.92.
pub const BACKGROUND_AT: usize = 512 << 10;
const ACTIVE: &str = "active.spool";

/// Where a transaction's commit frame sits in the WAL (frame 0: a
/// rollback-journal transaction, which has no WAL position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct WalPos {
    pub salt1: u32,
    pub salt2: u32,
    pub frame: u32,
}

/// One committed transaction: the pages it wrote and the size it left.
#[derive(Debug, Clone)]
pub struct SpoolTxn {
    pub txid: TxId,
    pub commit: Millis,
    pub db_pages: u32,
    pub page_size: u32,
    pub wal: WalPos,
    pub pages: Vec<(PageNo, Bytes)>,
}

/// The latest image of each page recorded in one spool file. A record stores
/// only the bytes a page changed since its previous image in the same file
/// (an append to a B-tree leaf changes ~100 bytes of a 4 KiB page), which
/// keeps the spool's disk traffic far below the WAL's. Each file starts
/// empty, so every file decodes on its own.
#[derive(Default)]
pub struct PageImages {
    map: HashMap<u32, Bytes>,
    bytes: usize,
}

impl PageImages {
    /// Images kept per file before starting over with full pages.
    const MAX_BYTES: usize = 8 << 20;

    fn get(&self, pgno: u32) -> Option<&Bytes> {
        self.map.get(&pgno)
    }

    fn insert(&mut self, pgno: u32, page: Bytes) {
        if self.bytes + page.len() > Self::MAX_BYTES {
            self.clear();
        }
        self.bytes += page.len();
        if let Some(old) = self.map.insert(pgno, page) {
            self.bytes -= old.len();
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

const ENTRY_FULL: u8 = 0;
const ENTRY_DELTA: u8 = 1;

/// The next `n` bytes of `body` at `*at`, advancing it.
fn take<'a>(body: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let s = body.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(s)
}

/// A record that is structurally wrong although its checksum holds.
#[derive(Debug)]
pub struct BadRecord(pub String);

impl SpoolTxn {
    /// Encode with full pages (no shared images).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out, &mut PageImages::default());
        out
    }

    /// Append the encoded record to `out`, as deltas against `images` where
    /// that is smaller, and remember this record's pages in `images`.
    pub fn encode_into(&self, out: &mut Vec<u8>, images: &mut PageImages) {
        let start = out.len();
        out.reserve(RECORD_HEADER + self.pages.len() * 256);
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&self.txid.0.to_le_bytes());
        out.extend_from_slice(&self.commit.0.to_le_bytes());
        out.extend_from_slice(&self.db_pages.to_le_bytes());
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&self.wal.salt1.to_le_bytes());
        out.extend_from_slice(&self.wal.salt2.to_le_bytes());
        out.extend_from_slice(&self.wal.frame.to_le_bytes());
        out.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        for (pgno, page) in &self.pages {
            out.extend_from_slice(&pgno.0.to_le_bytes());
            out.push(ENTRY_DELTA);
            let kind_at = out.len() - 1;
            let delta = match images.get(pgno.0) {
                Some(old) => crate::format::delta::encode(old, page, page.len() / 2, out),
                None => false,
            };
            if !delta {
                out[kind_at] = ENTRY_FULL;
                out.extend_from_slice(page);
            }
            images.insert(pgno.0, page.clone());
        }
        let len = (out.len() - start - 8) as u32;
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decode one record from the front of `b`, resolving deltas against
    /// `images` (the file's earlier records). `Ok(None)`: a torn or
    /// checksum-failing record, the end of the valid spool. `Err`: a record
    /// whose checksum holds but whose contents are impossible.
    pub fn decode(
        b: &[u8],
        images: &mut PageImages,
    ) -> Result<Option<(SpoolTxn, usize)>, BadRecord> {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        if b.len() < RECORD_HEADER {
            return Ok(None);
        }
        let len = u32_at(0) as usize;
        if len + 8 > b.len() || len + 8 < RECORD_HEADER {
            return Ok(None);
        }
        if crc32c::crc32c(&b[8..8 + len]) != u32_at(4) {
            return Ok(None);
        }
        let bad = |what: &str| Err(BadRecord(format!("txid {}: {what}", u64_at(8))));
        let page_size = u32_at(28);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return bad("bad page size");
        }
        let ps = page_size as usize;
        let npages = u32_at(44) as usize;
        let body = &b[RECORD_HEADER..8 + len];
        let mut at = 0usize;
        let mut pages = Vec::with_capacity(npages);
        for _ in 0..npages {
            let Some(head) = take(body, &mut at, 5) else {
                return bad("truncated page entry");
            };
            let pgno = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let page = match head[4] {
                ENTRY_FULL => match take(body, &mut at, ps) {
                    Some(p) => Bytes::copy_from_slice(p),
                    None => return bad("truncated page"),
                },
                ENTRY_DELTA => {
                    let Some(base) = images.get(pgno).filter(|p| p.len() == ps) else {
                        return bad(&format!("delta of page {pgno} without an earlier image"));
                    };
                    let mut page = base.to_vec();
                    match crate::format::delta::apply(&mut page, &body[at..]) {
                        Ok(n) => at += n,
                        Err(e) => return bad(&format!("page {pgno}: {e}")),
                    }
                    Bytes::from(page)
                }
                _ => return bad("unknown page entry kind"),
            };
            pages.push((PageNo(pgno), page));
        }
        if at != body.len() {
            return bad("trailing bytes");
        }
        for (pgno, page) in &pages {
            images.insert(pgno.0, page.clone());
        }
        let txn = SpoolTxn {
            txid: TxId(u64_at(8)),
            commit: Millis(u64_at(16)),
            db_pages: u32_at(24),
            page_size,
            wal: WalPos {
                salt1: u32_at(32),
                salt2: u32_at(36),
                frame: u32_at(40),
            },
            pages,
        };
        Ok(Some((txn, len + 8)))
    }
}

/// A sealed spool file waiting for upload.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub path: PathBuf,
    pub first: TxId,
    pub last: TxId,
    pub bytes: u64,
}

/// The file that takes appends, shared with the uploader thread, which writes
/// the buffer out in the background so commits only copy into memory.
/// Lock order: the replica's writer lock, then this.
pub struct Active {
    file: File,
    /// Bytes on disk.
    len: u64,
    /// Bytes whose write failed (e.g. disk full): written first next time,
    /// never dropped while the process lives.
    retry: Vec<u8>,
}

impl Active {
    /// Append `data` after anything that failed before.
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        if !self.retry.is_empty() {
            let retry = std::mem::take(&mut self.retry);
            if let Err(e) = self.write(&retry) {
                self.retry = retry;
                self.retry.extend_from_slice(data);
                return Err(e);
            }
        }
        if let Err(e) = self.write(data) {
            self.retry.extend_from_slice(data);
            return Err(e);
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(data) {
            // Keep the file a sequence of whole records.
            let _ = self.file.set_len(self.len);
            return Err(Error::io("write spool", e));
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// A second handle on the file, to fsync without holding any lock.
    pub fn handle(&self) -> Result<File> {
        self.file.try_clone().io_ctx("clone spool handle")
    }
}

/// The spool directory. Owned by one `Replica`, behind its writer lock.
pub struct Spool {
    dir: PathBuf,
    active: Arc<Mutex<Active>>,
    /// Encoded records not yet handed to `active`.
    buf: Vec<u8>,
    /// Txids in the active file and `buf`.
    active_range: Option<(TxId, TxId)>,
    /// The WAL position of the newest record.
    last_wal: Option<WalPos>,
    /// Page images of the active file, for delta records (see `PageImages`).
    images: PageImages,
    sealed: Vec<Sealed>,
}

fn open_active(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .io_ctx(format!("open {}", path.display()))
}

impl Spool {
    /// Open (or create) the spool in `dir`, dropping a torn tail of the active file.
    pub fn open(dir: &Path) -> Result<Spool> {
        fs::create_dir_all(dir).io_ctx(format!("create spool {}", dir.display()))?;
        let mut sealed = Vec::new();
        for entry in fs::read_dir(dir).io_ctx("list spool")? {
            let entry = entry.io_ctx("list spool")?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((first, last)) = parse_sealed_name(&name) {
                let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
                sealed.push(Sealed {
                    path: entry.path(),
                    first,
                    last,
                    bytes,
                });
            }
        }
        sealed.sort_by_key(|s| s.first);
        let path = dir.join(ACTIVE);
        let mut file = open_active(&path)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).io_ctx("read spool")?;
        let (txns, valid) = decode_all(&buf).map_err(|e| e.context(path.display()))?;
        if valid < buf.len() {
            tracing::warn!(path = %path.display(), dropped = buf.len() - valid, "dropping torn spool tail");
            file.set_len(valid as u64).io_ctx("truncate spool")?;
        }
        let active_range = txns
            .first()
            .map(|f| (f.txid, txns.last().map_or(f.txid, |l| l.txid)));
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            active: Arc::new(Mutex::new(Active {
                file,
                len: valid as u64,
                retry: Vec::new(),
            })),
            buf: Vec::new(),
            active_range,
            last_wal: None,
            images: PageImages::default(),
            sealed,
        };
        spool.last_wal = spool.read_all()?.last().map(|t| t.wal);
        Ok(spool)
    }

    /// Append one record to memory (see the module invariants).
    pub fn append(&mut self, txn: &SpoolTxn) -> Result<()> {
        if self.buf.len() >= FLUSH_AT {
            // The background writer fell behind: write here.
            self.flush()?;
        }
        txn.encode_into(&mut self.buf, &mut self.images);
        self.active_range = Some(match self.active_range {
            Some((first, _)) => (first, txn.txid),
            None => (txn.txid, txn.txid),
        });
        self.last_wal = Some(txn.wal);
        Ok(())
    }

    /// Remove the newest record again (its commit failed). It is still in
    /// memory: the caller held the writer lock since appending it.
    pub fn pop_buffered(&mut self, txn: &SpoolTxn, len_before: usize) {
        self.buf.truncate(len_before);
        // The images now include the removed record's pages: start over.
        self.images.clear();
        self.active_range = match self.active_range {
            Some((first, _)) if first < txn.txid => Some((first, TxId(txn.txid.0 - 1))),
            _ => None,
        };
    }

    /// Bytes buffered in memory.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Hand the buffer to the caller for a background write: it must lock the
    /// returned file before releasing the writer lock, so appends keep their order.
    pub fn take_buffer(&mut self) -> Option<(Vec<u8>, Arc<Mutex<Active>>)> {
        if self.buf.is_empty() {
            return None;
        }
        let cap = self.buf.capacity();
        Some((
            std::mem::replace(&mut self.buf, Vec::with_capacity(cap)),
            self.active.clone(),
        ))
    }

    /// Write buffered records to the active file (no fsync).
    pub fn flush(&mut self) -> Result<()> {
        let mut a = self.active.lock();
        let r = a.append(&self.buf);
        // On failure the bytes wait in `retry`, in order.
        self.buf.clear();
        r
    }

    /// Flush and fsync: SQLite is syncing the WAL or the database.
    pub fn sync(&mut self) -> Result<()> {
        self.flushed_handle()?.sync_data().io_ctx("sync spool")
    }

    /// Flush, and a handle on the active file to fsync without the lock.
    pub fn flushed_handle(&mut self) -> Result<File> {
        self.flush()?;
        self.active.lock().handle()
    }

    /// The WAL position of the newest spooled record (`None`: no record, or
    /// the newest is a rollback-journal transaction).
    pub fn last_wal(&self) -> Option<WalPos> {
        self.last_wal.filter(|w| w.frame != 0)
    }

    /// Bytes of the active file, written or buffered.
    pub fn active_bytes(&self) -> u64 {
        let a = self.active.lock();
        a.len + a.retry.len() as u64 + self.buf.len() as u64
    }

    /// Bytes waiting for upload (sealed and active).
    pub fn pending_bytes(&self) -> u64 {
        self.active_bytes() + self.sealed.iter().map(|s| s.bytes).sum::<u64>()
    }

    /// The last txid in the spool, if any.
    pub fn last_txid(&self) -> Option<TxId> {
        self.active_range
            .map(|r| r.1)
            .or_else(|| self.sealed.last().map(|s| s.last))
    }

    /// Seal the active file (if it holds anything) so the uploader can take it.
    /// No fsync: records are exactly as durable as SQLite made them (`sync`).
    pub fn seal(&mut self) -> Result<()> {
        let Some((first, last)) = self.active_range else {
            return Ok(());
        };
        self.flush()?;
        let mut a = self.active.lock();
        let path = self.dir.join(sealed_name(first, last));
        fs::rename(self.dir.join(ACTIVE), &path).io_ctx("seal spool")?;
        self.sealed.push(Sealed {
            path,
            first,
            last,
            bytes: a.len,
        });
        a.file = open_active(&self.dir.join(ACTIVE))?;
        a.len = 0;
        drop(a);
        self.images.clear();
        self.active_range = None;
        Ok(())
    }

    /// The oldest sealed file, if any.
    pub fn next_sealed(&self) -> Option<Sealed> {
        self.sealed.first().cloned()
    }

    /// The oldest sealed files, together up to about `max_bytes` (at least
    /// one): a backlog (after an outage) uploads as few, larger segments.
    pub fn next_sealed_batch(&self, max_bytes: u64) -> Vec<Sealed> {
        let mut total = 0;
        self.sealed
            .iter()
            .take_while(|s| {
                let first = total == 0;
                total += s.bytes;
                first || total <= max_bytes
            })
            .cloned()
            .collect()
    }

    /// Forget a sealed file once the bucket's manifest covers it.
    pub fn remove_sealed(&mut self, first: TxId) -> Result<()> {
        if let Some(i) = self.sealed.iter().position(|s| s.first == first) {
            let s = self.sealed.remove(i);
            fs::remove_file(&s.path).io_ctx("remove uploaded spool")?;
        }
        Ok(())
    }

    /// The active file's records: on disk, waiting to be retried, buffered.
    fn active_image(&self) -> Result<Vec<u8>> {
        let a = self.active.lock();
        let mut buf = vec![0u8; a.len as usize];
        a.file.read_exact_at(&mut buf, 0).io_ctx("read spool")?;
        buf.extend_from_slice(&a.retry);
        buf.extend_from_slice(&self.buf);
        Ok(buf)
    }

    /// Every record in the spool, oldest first (recovery and tests).
    pub fn read_all(&self) -> Result<Vec<SpoolTxn>> {
        let mut out = Vec::new();
        for s in &self.sealed {
            out.extend(read_file(&s.path)?);
        }
        out.extend(decode_all(&self.active_image()?)?.0);
        Ok(out)
    }

    /// Drop every record with txid > `keep` (recovery: transactions SQLite
    /// never committed). Only the active file can hold such records.
    pub fn truncate_after(&mut self, keep: TxId) -> Result<()> {
        self.flush()?;
        let buf = self.active_image()?;
        let mut off = 0;
        let mut range = None;
        let mut images = PageImages::default();
        while let Some((t, n)) =
            SpoolTxn::decode(&buf[off..], &mut images).map_err(|e| Error::corrupt(e.0))?
        {
            if t.txid > keep {
                break;
            }
            range = Some(match range {
                Some((f, _)) => (f, t.txid),
                None => (t.txid, t.txid),
            });
            off += n;
        }
        {
            let mut a = self.active.lock();
            a.file.set_len(off as u64).io_ctx("truncate spool")?;
            a.file.sync_data().io_ctx("sync spool")?;
            a.len = off as u64;
        }
        self.active_range = range;
        self.images.clear();
        self.last_wal = self.read_all()?.last().map(|t| t.wal);
        Ok(())
    }

    /// Remove everything (the bucket is ahead and the local copy is replaced).
    pub fn clear(&mut self) -> Result<()> {
        for s in std::mem::take(&mut self.sealed) {
            fs::remove_file(&s.path).io_ctx("clear spool")?;
        }
        self.truncate_after(TxId::ZERO)
    }
}

impl Drop for Spool {
    /// Best effort: the WAL still holds whatever this cannot write.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "spool buffer not written at close; it is rebuilt from the WAL at the next open");
        }
    }
}

/// What a spool directory holds, read without changing anything (another
/// process may be writing it): for `strata status`.
#[derive(Debug, Clone, Default)]
pub struct SpoolSummary {
    pub files: usize,
    pub bytes: u64,
    pub first: Option<TxId>,
    pub last: Option<TxId>,
    pub oldest_commit: Option<Millis>,
}

pub fn summarize(dir: &Path) -> Result<SpoolSummary> {
    let mut sum = SpoolSummary::default();
    let mut names: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "spool"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(sum),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    // Sealed files sort by first txid; the active one holds the newest.
    names.sort_by_key(|p| (p.file_name().is_some_and(|n| n == ACTIVE), p.clone()));
    for p in names {
        let buf = fs::read(&p).io_ctx(format!("read {}", p.display()))?;
        sum.files += 1;
        sum.bytes += buf.len() as u64;
        for t in decode_all(&buf)?.0 {
            sum.first.get_or_insert(t.txid);
            sum.oldest_commit.get_or_insert(t.commit);
            sum.last = Some(t.txid);
        }
    }
    Ok(sum)
}

/// Read a sealed spool file.
pub fn read_file(path: &Path) -> Result<Vec<SpoolTxn>> {
    let buf = fs::read(path).io_ctx(format!("read {}", path.display()))?;
    let (txns, valid) = decode_all(&buf).map_err(|e| e.context(path.display()))?;
    if valid != buf.len() {
        return Err(Error::corrupt(format!(
            "spool file {} is damaged at byte {valid}: the records after it cannot be replicated",
            path.display()
        )));
    }
    Ok(txns)
}

/// The valid records at the front of `buf` and their length. A record whose
/// checksum holds but whose contents are impossible is an error, not an end.
fn decode_all(buf: &[u8]) -> Result<(Vec<SpoolTxn>, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    let mut images = PageImages::default();
    while let Some((t, n)) = SpoolTxn::decode(&buf[off..], &mut images)
        .map_err(|e| Error::corrupt(format!("spool record at byte {off}: {}", e.0)))?
    {
        out.push(t);
        off += n;
    }
    Ok((out, off))
}

fn sealed_name(first: TxId, last: TxId) -> String {
    format!("{:020}-{:020}.spool", first.0, last.0)
}

fn parse_sealed_name(name: &str) -> Option<(TxId, TxId)> {
    let stem = name.strip_suffix(".spool")?;
    let (a, b) = stem.split_once('-')?;
    Some((TxId(a.parse().ok()?), TxId(b.parse().ok()?)))
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(txid: u64, npages: u32) -> SpoolTxn {
        SpoolTxn {
            txid: TxId(txid),
            commit: Millis(1000 + txid),
            db_pages: npages,
            page_size: 512,
            wal: WalPos {
                salt1: 1,
                salt2: 2,
                frame: txid as u32,
            },
            pages: (1..=npages)
                .map(|p| (PageNo(p), Bytes::from(vec![p as u8; 512])))
                .collect(),
        }
    }

    #[test]
    fn append_seal_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap();
        s.append(&txn(1, 2)).unwrap();
        s.append(&txn(2, 1)).unwrap();
        s.seal().unwrap();
        s.append(&txn(3, 3)).unwrap();
        assert_eq!(s.last_txid(), Some(TxId(3)));
        drop(s);
        let s = Spool::open(dir.path()).unwrap();
        let all = s.read_all().unwrap();
        assert_eq!(
            all.iter().map(|t| t.txid.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(all[2].pages.len(), 3);
        assert_eq!(&all[2].pages[1].1[..], &[2u8; 512][..]);
        let sealed = s.next_sealed().unwrap();
        assert_eq!((sealed.first, sealed.last), (TxId(1), TxId(2)));
    }

    #[test]
    fn torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap();
        s.append(&txn(1, 1)).unwrap();
        s.append(&txn(2, 1)).unwrap();
        drop(s);
        let p = dir.path().join(ACTIVE);
        let len = fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.last_txid(), Some(TxId(1)));
        let mut s = s;
        s.append(&txn(2, 1)).unwrap();
        assert_eq!(s.read_all().unwrap().len(), 2);
    }

    #[test]
    fn truncate_after_drops_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap();
        for i in 1..=4 {
            s.append(&txn(i, 1)).unwrap();
        }
        s.truncate_after(TxId(2)).unwrap();
        assert_eq!(s.last_txid(), Some(TxId(2)));
        assert_eq!(s.read_all().unwrap().len(), 2);
    }

    #[test]
    fn small_changes_are_stored_as_deltas_and_decode_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path()).unwrap();
        let mut page = vec![0u8; 4096];
        let mut expect = Vec::new();
        for i in 1..=50u64 {
            // Append-like change: a few bytes at the end and a header counter.
            page[4000 - i as usize] = i as u8;
            page[3] = i as u8;
            let t = SpoolTxn {
                txid: TxId(i),
                commit: Millis(i),
                db_pages: 2,
                page_size: 4096,
                wal: WalPos::default(),
                pages: vec![
                    (PageNo(2), Bytes::from(page.clone())),
                    (PageNo(1), Bytes::from(vec![i as u8; 4096])),
                ],
            };
            s.append(&t).unwrap();
            expect.push(t);
            if i == 30 {
                s.seal().unwrap();
            }
        }
        // Deltas keep the spool far smaller than the pages it holds.
        assert!(
            s.pending_bytes() < 50 * 4096 + 50 * 4096 / 2,
            "{} bytes",
            s.pending_bytes()
        );
        let check = |got: Vec<SpoolTxn>| {
            assert_eq!(got.len(), expect.len());
            for (g, e) in got.iter().zip(&expect) {
                assert_eq!(g.txid, e.txid);
                assert_eq!(g.pages, e.pages);
            }
        };
        check(s.read_all().unwrap());
        drop(s);
        let s = Spool::open(dir.path()).unwrap();
        check(s.read_all().unwrap());
        // A sealed file decodes on its own.
        let sealed = read_file(&s.next_sealed().unwrap().path).unwrap();
        assert_eq!(sealed.last().unwrap().txid, TxId(30));
        assert_eq!(sealed[29].pages, expect[29].pages);
    }

    #[test]
    fn corrupt_records_never_decode() {
        let rec = txn(7, 2).encode();
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            if let Ok(Some((t, _))) = SpoolTxn::decode(&bad, &mut PageImages::default()) {
                panic!("corrupted byte {i} decoded as txid {}", t.txid);
            }
        }
        for n in 0..rec.len() {
            assert!(matches!(
                SpoolTxn::decode(&rec[..n], &mut PageImages::default()),
                Ok(None)
            ));
        }
    }
}
