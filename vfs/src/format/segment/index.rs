//! The index (txn table, page table, part table) and reading pages
//! through it, from a ranged read or a whole object.

use super::*;

/// A split snapshot's part table: parts tile the body in order, none empty.
pub(super) fn decode_parts(header: &SegmentHeader, table: &[u8]) -> Result<Vec<Part>> {
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
pub(super) fn decode_compact_at(
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
