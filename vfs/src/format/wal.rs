//! SQLite's WAL file format (<https://sqlite.org/fileformat2.html#walformat>):
//! enough to find which transactions a `-wal` file really holds after a crash.
//!
//! A frame is valid iff its salts equal the header's and its checksum chains
//! from the previous frame; a transaction is committed iff its last frame is a
//! valid commit frame (non-zero "database size after commit").

pub const WAL_HEADER_LEN: usize = 32;
pub const FRAME_HEADER_LEN: usize = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The 32-byte WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    pub big_endian_cksum: bool,
    pub page_size: u32,
    pub checkpoint_seq: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub cksum: (u32, u32),
}

impl WalHeader {
    /// Parse and verify a header; `None` if it is not a valid WAL header
    /// (SQLite then treats the WAL as empty).
    pub fn parse(b: &[u8]) -> Option<WalHeader> {
        if b.len() < WAL_HEADER_LEN {
            return None;
        }
        let magic = be32(&b[0..4]);
        if magic != MAGIC_LE && magic != MAGIC_BE {
            return None;
        }
        let big = magic == MAGIC_BE;
        let page_size = match be32(&b[8..12]) {
            1 => 65536,
            n => n,
        };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        let cksum = checksum(big, (0, 0), &b[0..24]);
        if cksum != (be32(&b[24..28]), be32(&b[28..32])) {
            return None;
        }
        Some(WalHeader {
            big_endian_cksum: big,
            page_size,
            checkpoint_seq: be32(&b[12..16]),
            salt1: be32(&b[16..20]),
            salt2: be32(&b[20..24]),
            cksum,
        })
    }

    pub fn frame_size(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + self.page_size as u64
    }

    /// Byte offset of frame `idx` (1-based, as SQLite numbers frames).
    pub fn frame_offset(&self, idx: u32) -> u64 {
        WAL_HEADER_LEN as u64 + (idx as u64 - 1) * self.frame_size()
    }
}

/// SQLite's WAL checksum over 8-byte chunks, continuing from `s`.
pub fn checksum(big_endian: bool, s: (u32, u32), data: &[u8]) -> (u32, u32) {
    let (mut s1, mut s2) = s;
    for chunk in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (be32(&chunk[0..4]), be32(&chunk[4..8]))
        } else {
            (
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        };
        s1 = s1.wrapping_add(x0).wrapping_add(s2);
        s2 = s2.wrapping_add(x1).wrapping_add(s1);
    }
    (s1, s2)
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub pgno: u32,
    /// Database size in pages after commit; non-zero only on commit frames.
    pub commit_size: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub cksum: (u32, u32),
}

impl FrameHeader {
    pub fn parse(b: &[u8]) -> FrameHeader {
        FrameHeader {
            pgno: be32(&b[0..4]),
            commit_size: be32(&b[4..8]),
            salt1: be32(&b[8..12]),
            salt2: be32(&b[12..16]),
            cksum: (be32(&b[16..20]), be32(&b[20..24])),
        }
    }
}

/// What a WAL file holds: its header and the index of the last valid commit
/// frame (0 if none), exactly as SQLite's recovery would see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalScan {
    pub header: WalHeader,
    pub last_commit_frame: u32,
}

/// One committed transaction found in a WAL image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalTxn {
    pub commit_frame: u32,
    /// Database size in pages after the commit.
    pub db_pages: u32,
    /// The last image of each page it wrote: (page number, byte range in the WAL).
    pub pages: Vec<(u32, std::ops::Range<usize>)>,
}

/// The valid frames of a WAL image, in order: (1-based index, header, offset).
/// (1-based index, header, byte offset) of each valid frame.
type Frames = Vec<(u32, FrameHeader, usize)>;

fn valid_frames(wal: &[u8]) -> Option<(WalHeader, Frames)> {
    let header = WalHeader::parse(wal)?;
    let fsz = header.frame_size() as usize;
    let mut s = header.cksum;
    let mut out = Vec::new();
    let mut off = WAL_HEADER_LEN;
    while off + fsz <= wal.len() {
        let fh = FrameHeader::parse(&wal[off..off + FRAME_HEADER_LEN]);
        if fh.salt1 != header.salt1 || fh.salt2 != header.salt2 || fh.pgno == 0 {
            break;
        }
        let c = checksum(header.big_endian_cksum, s, &wal[off..off + 8]);
        let c = checksum(
            header.big_endian_cksum,
            c,
            &wal[off + FRAME_HEADER_LEN..off + fsz],
        );
        if c != fh.cksum {
            break;
        }
        s = c;
        out.push((out.len() as u32 + 1, fh, off));
        off += fsz;
    }
    Some((header, out))
}

/// Scan a whole WAL image. `None` if the header is invalid (an empty WAL).
pub fn scan(wal: &[u8]) -> Option<WalScan> {
    let (header, frames) = valid_frames(wal)?;
    let last_commit_frame = frames
        .iter()
        .rev()
        .find(|(_, fh, _)| fh.commit_size != 0)
        .map_or(0, |f| f.0);
    Some(WalScan {
        header,
        last_commit_frame,
    })
}

/// Every committed transaction of a WAL image, oldest first.
pub fn committed_txns(wal: &[u8]) -> Option<(WalHeader, Vec<WalTxn>)> {
    let (header, frames) = valid_frames(wal)?;
    let ps = header.page_size as usize;
    let mut txns = Vec::new();
    let mut pages: std::collections::BTreeMap<u32, std::ops::Range<usize>> = Default::default();
    for (idx, fh, off) in frames {
        let data = off + FRAME_HEADER_LEN;
        pages.insert(fh.pgno, data..data + ps);
        if fh.commit_size != 0 {
            txns.push(WalTxn {
                commit_frame: idx,
                db_pages: fh.commit_size,
                pages: std::mem::take(&mut pages).into_iter().collect(),
            });
        }
    }
    Some((header, txns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_a_real_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "wal").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.execute_batch("create table t(x); insert into t values (1); insert into t values (2);")
            .unwrap();
        let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap();
        let s = scan(&wal).expect("valid wal");
        assert_eq!(s.header.page_size, 4096);
        let frames = (wal.len() - WAL_HEADER_LEN) as u64 / s.header.frame_size();
        assert_eq!(s.last_commit_frame as u64, frames);
        // A torn last frame is not committed.
        let torn = &wal[..wal.len() - 10];
        assert!(scan(torn).unwrap().last_commit_frame < s.last_commit_frame);
        // A flipped bit in the last frame's page invalidates it.
        let mut bad = wal.clone();
        let n = bad.len();
        bad[n - 100] ^= 1;
        assert!(scan(&bad).unwrap().last_commit_frame < s.last_commit_frame);
        drop(c);
    }

    #[test]
    fn lists_committed_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "wal").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.execute_batch("create table t(x); insert into t values (1); insert into t values (2);")
            .unwrap();
        let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap();
        let (h, txns) = committed_txns(&wal).unwrap();
        assert_eq!(txns.len(), 3);
        assert_eq!(
            txns.last().unwrap().commit_frame,
            scan(&wal).unwrap().last_commit_frame
        );
        for t in &txns {
            assert!(t.db_pages >= 2);
            for (pgno, r) in &t.pages {
                assert!(*pgno >= 1 && r.len() == h.page_size as usize);
            }
        }
    }

    #[test]
    fn rejects_garbage_headers() {
        assert!(scan(&[]).is_none());
        assert!(scan(&[0u8; 64]).is_none());
    }
}
