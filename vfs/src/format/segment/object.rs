//! A whole object in memory: decoding it and reading its transactions.

use super::*;

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
