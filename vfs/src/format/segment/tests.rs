use super::index::{decode_compact_at, decode_parts};
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
    let obj = encode_with(&meta(SegmentKind::Segment), &sample_txns(&mut rng), &opts()).unwrap();
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
        header[offsets::HEADER_CRC..offsets::HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
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
    let seg = decode(&encode_with(&meta(SegmentKind::Snapshot), &[txn], &opts()).unwrap()).unwrap();
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
