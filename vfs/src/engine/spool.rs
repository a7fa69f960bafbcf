//! The local spool: committed transactions that are not in the bucket yet.
//!
//! Invariants:
//! - A transaction is appended to the spool *before* SQLite's commit frame
//!   reaches the WAL, so nothing SQLite considers committed can be missing
//!   here. (A crash in between leaves one record too many; recovery drops it
//!   by checking the WAL, see `engine::recover`.)
//! - The spool is fsynced whenever SQLite syncs the WAL or the database, so it
//!   is exactly as durable as the database itself.
//! - Records are removed only after the bucket's manifest names them.
//!
//! Files: `active.spool` takes appends; the uploader seals it by renaming it to
//! `<first txid>-<last txid>.spool` and uploads sealed files in order.
//! Record: `len u32 | crc32c u32 | txid u64 | commit_ms u64 | db_pages u32 |
//! page_size u32 | salt1 u32 | salt2 u32 | frame u32 | npages u32 |
//! npages × (pgno u32 | page)`, little-endian; `len`/`crc` cover what follows them.

use crate::error::{Error, IoResultExt, Result};
use crate::types::{Millis, PageNo, TxId};
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const RECORD_HEADER: usize = 48;
const ACTIVE: &str = "active.spool";

/// Where a transaction's commit frame sits in the WAL (frame 0: a
/// rollback-journal transaction, which has no WAL position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

impl SpoolTxn {
    pub fn encode(&self) -> Vec<u8> {
        let body: usize = self.pages.iter().map(|(_, p)| 4 + p.len()).sum();
        let mut out = Vec::with_capacity(RECORD_HEADER + body);
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
            out.extend_from_slice(page);
        }
        let len = (out.len() - 8) as u32;
        let crc = crc32c::crc32c(&out[8..]);
        out[0..4].copy_from_slice(&len.to_le_bytes());
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode one record from the front of `b`; `None` if it is torn or corrupt
    /// (the end of the valid spool), else the record and its encoded length.
    pub fn decode(b: &[u8]) -> Option<(SpoolTxn, usize)> {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        if b.len() < RECORD_HEADER {
            return None;
        }
        let len = u32_at(0) as usize;
        if len + 8 > b.len() || len + 8 < RECORD_HEADER {
            return None;
        }
        if crc32c::crc32c(&b[8..8 + len]) != u32_at(4) {
            return None;
        }
        let page_size = u32_at(28);
        let npages = u32_at(44) as usize;
        if !(512..=65536).contains(&page_size)
            || RECORD_HEADER + npages * (4 + page_size as usize) != len + 8
        {
            return None;
        }
        let data = Bytes::copy_from_slice(&b[RECORD_HEADER..8 + len]);
        let ps = page_size as usize;
        let pages = (0..npages)
            .map(|i| {
                let o = i * (4 + ps);
                let pgno = u32::from_le_bytes(data[o..o + 4].try_into().unwrap_or_default());
                (PageNo(pgno), data.slice(o + 4..o + 4 + ps))
            })
            .collect();
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
        Some((txn, len + 8))
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

/// The spool directory. Owned by one `Replica`, behind its lock.
pub struct Spool {
    dir: PathBuf,
    active: File,
    active_len: u64,
    active_range: Option<(TxId, TxId)>,
    sealed: Vec<Sealed>,
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
        let mut active = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .io_ctx(format!("open {}", path.display()))?;
        let mut buf = Vec::new();
        active.read_to_end(&mut buf).io_ctx("read spool")?;
        let (txns, valid) = decode_all(&buf);
        if valid < buf.len() {
            tracing::warn!(path = %path.display(), dropped = buf.len() - valid, "dropping torn spool tail");
            active.set_len(valid as u64).io_ctx("truncate spool")?;
        }
        let active_range = txns
            .first()
            .map(|f| (f.txid, txns.last().map_or(f.txid, |l| l.txid)));
        Ok(Spool {
            dir: dir.to_path_buf(),
            active,
            active_len: valid as u64,
            active_range,
            sealed,
        })
    }

    /// Append one record. On failure nothing of it remains.
    pub fn append(&mut self, txn: &SpoolTxn) -> Result<()> {
        let rec = txn.encode();
        if let Err(e) = self.active.write_all(&rec) {
            let _ = self.active.set_len(self.active_len);
            return Err(Error::io("append to spool", e));
        }
        self.active_len += rec.len() as u64;
        self.active_range = Some(match self.active_range {
            Some((first, _)) => (first, txn.txid),
            None => (txn.txid, txn.txid),
        });
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.active.sync_data().io_ctx("sync spool")
    }

    pub fn active_bytes(&self) -> u64 {
        self.active_len
    }

    /// Bytes waiting for upload (sealed and active).
    pub fn pending_bytes(&self) -> u64 {
        self.active_len + self.sealed.iter().map(|s| s.bytes).sum::<u64>()
    }

    /// The last txid in the spool, if any.
    pub fn last_txid(&self) -> Option<TxId> {
        self.active_range
            .map(|r| r.1)
            .or_else(|| self.sealed.last().map(|s| s.last))
    }

    /// Seal the active file (if it holds anything) so the uploader can take it.
    pub fn seal(&mut self) -> Result<()> {
        let Some((first, last)) = self.active_range else {
            return Ok(());
        };
        self.active.sync_data().io_ctx("sync spool")?;
        let path = self.dir.join(sealed_name(first, last));
        fs::rename(self.dir.join(ACTIVE), &path).io_ctx("seal spool")?;
        self.sealed.push(Sealed {
            path,
            first,
            last,
            bytes: self.active_len,
        });
        let active = self.dir.join(ACTIVE);
        self.active = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&active)
            .io_ctx(format!("open {}", active.display()))?;
        sync_dir(&self.dir);
        self.active_len = 0;
        self.active_range = None;
        Ok(())
    }

    /// The oldest sealed file, if any.
    pub fn next_sealed(&self) -> Option<Sealed> {
        self.sealed.first().cloned()
    }

    /// Forget a sealed file once the bucket's manifest covers it.
    pub fn remove_sealed(&mut self, first: TxId) -> Result<()> {
        if let Some(i) = self.sealed.iter().position(|s| s.first == first) {
            let s = self.sealed.remove(i);
            fs::remove_file(&s.path).io_ctx("remove uploaded spool")?;
        }
        Ok(())
    }

    /// Every record in the spool, oldest first (recovery and tests).
    pub fn read_all(&self) -> Result<Vec<SpoolTxn>> {
        let mut out = Vec::new();
        for s in &self.sealed {
            out.extend(read_file(&s.path)?);
        }
        let mut buf = vec![0u8; self.active_len as usize];
        self.active
            .read_exact_at(&mut buf, 0)
            .io_ctx("read spool")?;
        out.extend(decode_all(&buf).0);
        Ok(out)
    }

    /// Drop every record with txid > `keep` (recovery: transactions SQLite
    /// never committed). Only the active file can hold such records.
    pub fn truncate_after(&mut self, keep: TxId) -> Result<()> {
        let mut buf = vec![0u8; self.active_len as usize];
        self.active
            .read_exact_at(&mut buf, 0)
            .io_ctx("read spool")?;
        let mut off = 0;
        let mut range = None;
        while let Some((t, n)) = SpoolTxn::decode(&buf[off..]) {
            if t.txid > keep {
                break;
            }
            range = Some(match range {
                Some((f, _)) => (f, t.txid),
                None => (t.txid, t.txid),
            });
            off += n;
        }
        self.active.set_len(off as u64).io_ctx("truncate spool")?;
        self.active.sync_data().io_ctx("sync spool")?;
        self.active_len = off as u64;
        self.active_range = range;
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

/// Read a sealed spool file.
pub fn read_file(path: &Path) -> Result<Vec<SpoolTxn>> {
    let buf = fs::read(path).io_ctx(format!("read {}", path.display()))?;
    let (txns, valid) = decode_all(&buf);
    if valid != buf.len() {
        return Err(Error::corrupt(format!(
            "spool file {} is damaged at byte {valid}: the records after it cannot be replicated",
            path.display()
        )));
    }
    Ok(txns)
}

fn decode_all(buf: &[u8]) -> (Vec<SpoolTxn>, usize) {
    let mut out = Vec::new();
    let mut off = 0;
    while let Some((t, n)) = SpoolTxn::decode(&buf[off..]) {
        out.push(t);
        off += n;
    }
    (out, off)
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
    fn corrupt_records_never_decode() {
        let rec = txn(7, 2).encode();
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            if let Some((t, _)) = SpoolTxn::decode(&bad) {
                panic!("corrupted byte {i} decoded as txid {}", t.txid);
            }
        }
        for n in 0..rec.len() {
            assert!(SpoolTxn::decode(&rec[..n]).is_none());
        }
    }
}
