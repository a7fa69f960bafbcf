//! Writing a snapshot page by page, split into parts when large.

use super::*;

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
