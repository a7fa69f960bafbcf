//! Encoding a segment or a one-object snapshot.

use super::*;

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
