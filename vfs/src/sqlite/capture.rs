//! Capturing transactions from the bytes SQLite writes.
//!
//! WAL mode: SQLite appends frames (a 24-byte header, then the page) to the
//! `-wal` file; the last frame of a transaction carries the database size
//! ("commit frame"). Frames of an uncommitted transaction may be rewritten in
//! place, and a rolled-back transaction's frames are overwritten by the next
//! one, so frames are kept by index and the transaction is cut at the commit
//! frame. Rollback-journal mode: pages are written straight into the
//! database file while the EXCLUSIVE lock is held.

use crate::format::wal::{FRAME_HEADER_LEN, FrameHeader, WAL_HEADER_LEN, WalHeader};
use crate::types::PageNo;
use bytes::Bytes;
use std::collections::BTreeMap;

/// A committed transaction found in the write stream.
pub struct Captured {
    pub commit_frame: u32,
    /// The WAL generation's salts, from the commit frame's header.
    pub salt1: u32,
    pub salt2: u32,
    pub db_pages: u32,
    pub page_size: u32,
    pub pages: Vec<(PageNo, Bytes)>,
}

/// What a write to the WAL means for capture.
pub enum WalWrite {
    /// Nothing committed yet.
    Pending,
    /// This write completes the commit frame of a transaction.
    Commit(Captured),
    /// A new WAL header (a restart): the salts changed.
    Header,
}

#[derive(Default)]
pub struct WalCapture {
    page_size: u32,
    /// Frames of the transaction in progress, by frame index (1-based).
    frames: BTreeMap<u32, (Option<FrameHeader>, Option<Bytes>)>,
}

impl WalCapture {
    pub fn set_page_size(&mut self, ps: u32) {
        self.page_size = ps;
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Interpret a write of `data` at `offset`. `Err` describes a write shape
    /// SQLite does not produce (the caller refuses it rather than guess).
    pub fn on_write(&mut self, offset: usize, data: &[u8]) -> Result<WalWrite, String> {
        if offset == 0 {
            let h = WalHeader::parse(data).ok_or("invalid WAL header written")?;
            self.page_size = h.page_size;
            self.frames.clear();
            return Ok(WalWrite::Header);
        }
        if self.page_size == 0 {
            return Err("WAL frame written before the page size is known".into());
        }
        let fsz = FRAME_HEADER_LEN + self.page_size as usize;
        let rel = offset
            .checked_sub(WAL_HEADER_LEN)
            .ok_or("write inside the WAL header")?;
        let idx = (rel / fsz) as u32 + 1;
        let within = rel % fsz;
        let (hdr, page) = match (within, data.len()) {
            (0, FRAME_HEADER_LEN) => (Some(FrameHeader::parse(data)), None),
            (FRAME_HEADER_LEN, n) if n == self.page_size as usize => {
                (None, Some(Bytes::copy_from_slice(data)))
            }
            (0, n) if n == fsz => (
                Some(FrameHeader::parse(&data[..FRAME_HEADER_LEN])),
                Some(Bytes::copy_from_slice(&data[FRAME_HEADER_LEN..])),
            ),
            _ => {
                return Err(format!(
                    "unexpected WAL write of {} bytes at offset {offset}",
                    data.len()
                ));
            }
        };
        let slot = self.frames.entry(idx).or_default();
        if hdr.is_some() {
            // A rewritten header starts the frame afresh.
            *slot = (hdr, page);
        } else {
            slot.1 = page;
        }
        let commit = match slot {
            (Some(h), Some(_)) if h.commit_size != 0 => Some((h.commit_size, h.salt1, h.salt2)),
            _ => None,
        };
        match commit {
            Some((size, s1, s2)) => Ok(WalWrite::Commit(self.take(idx, size, s1, s2))),
            None => Ok(WalWrite::Pending),
        }
    }

    /// Cut the transaction at its commit frame: the last image of each page.
    fn take(&mut self, commit: u32, db_pages: u32, salt1: u32, salt2: u32) -> Captured {
        let frames = std::mem::take(&mut self.frames);
        let mut pages: BTreeMap<u32, Bytes> = BTreeMap::new();
        for (idx, (h, p)) in frames {
            if idx > commit {
                continue; // leftovers of a rolled-back transaction
            }
            if let (Some(h), Some(p)) = (h, p) {
                pages.insert(h.pgno, p);
            }
        }
        Captured {
            commit_frame: commit,
            salt1,
            salt2,
            db_pages,
            page_size: self.page_size,
            pages: pages.into_iter().map(|(n, p)| (PageNo(n), p)).collect(),
        }
    }

    /// SQLite truncated or rewound the WAL: forget partial frames.
    pub fn reset(&mut self) {
        self.frames.clear();
    }
}

/// Pages written to the database file in rollback-journal mode.
#[derive(Default)]
pub struct RollbackCapture {
    pub pages: BTreeMap<u32, Bytes>,
    pub page_size: u32,
}

impl RollbackCapture {
    pub fn on_write(&mut self, offset: usize, data: &[u8]) -> Result<(), String> {
        let n = data.len();
        if !n.is_power_of_two() || !(512..=65536).contains(&n) || !offset.is_multiple_of(n) {
            return Err(format!(
                "unexpected database write of {n} bytes at offset {offset}"
            ));
        }
        if self.page_size != 0 && self.page_size as usize != n {
            // VACUUM into a new page size rewrites everything; start over.
            self.pages.clear();
        }
        self.page_size = n as u32;
        self.pages
            .insert((offset / n) as u32 + 1, Bytes::copy_from_slice(data));
        Ok(())
    }

    pub fn take(&mut self) -> Vec<(PageNo, Bytes)> {
        std::mem::take(&mut self.pages)
            .into_iter()
            .map(|(n, p)| (PageNo(n), p))
            .collect()
    }
}
