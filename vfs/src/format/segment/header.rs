//! The fixed header: encode, decode, and the ranges it implies.

use super::*;

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
