//! The vfs's readers of stored and written bytes: segment, snapshot and
//! split-snapshot objects (header, txn and page tables, part table, pages),
//! the manifest and bucket keys, WAL images, and WAL capture. Decoders
//! return errors, never panic, and give back exactly what was encoded.

use crate::Input;
use bytes::Bytes;
use std::collections::BTreeMap;
use strata_vfs::format::manifest::Manifest;
use strata_vfs::format::segment::{
    Codec, EncodeOptions, Segment, SegmentHeader, SegmentIndex, SegmentKind, SegmentMeta,
    SnapshotWriter, TxnPages, Written, decode, decode_bytes, decode_split_index, encode_with,
};
use strata_vfs::format::wal::{
    self, FRAME_HEADER_LEN, WAL_HEADER_LEN, WalHeader, checksum, committed_txns,
};
use strata_vfs::format::{DbKeys, keys};
use strata_vfs::sqlite::capture::{WalCapture, WalWrite};
use strata_vfs::{DbId, Epoch, Millis, PageNo, TxId};

/// Pages decoded into one buffer at most (a part of many tiny pages would
/// otherwise ask for `pages x 64 KiB`).
const MAX_BUFFER: usize = 16 << 20;

/// `segment`: arbitrary bytes as an object (one-object segment or
/// snapshot), as a prefix (`SegmentIndex::decode`) and as a split
/// snapshot's index object, or its index followed by its parts. Whatever
/// decodes is read every way the engine reads it, and a whole object whose
/// pages all check out re-encodes to the same transactions.
pub fn segment(data: &[u8]) {
    if let Ok(h) = SegmentHeader::decode(data) {
        let again = SegmentHeader::decode(&h.encode()).expect("a decoded header re-decodes");
        assert_eq!(again, h);
        let _ = (
            h.part_count(),
            h.stored_len(),
            h.index_range(),
            h.body_range(),
        );
    }
    if let Ok(seg) = decode(data) {
        whole(&seg);
    }
    if let Ok(idx) = SegmentIndex::decode(data) {
        index(&idx, data);
    }
    if let Ok(idx) = decode_split_index(data) {
        assert_eq!(idx.header.kind, SegmentKind::SplitSnapshot);
        assert_eq!(idx.prefix_len(), data.len() as u64);
    }
}

fn whole(seg: &Segment) {
    let idx = &seg.index;
    for e in &idx.pages {
        let _ = seg.page(e);
        let _ = seg.page_shared(e);
    }
    let Ok(txns) = seg.to_txns() else {
        return;
    };
    let h = idx.header;
    assert_eq!(txns.len(), h.txn_count as usize);
    let meta = SegmentMeta {
        kind: match h.kind {
            SegmentKind::SplitSnapshot => SegmentKind::Snapshot,
            k => k,
        },
        ..h.meta()
    };
    let opts = EncodeOptions {
        created: Some(h.created),
        compress: h.codec == Codec::Lz4,
    };
    let obj = encode_with(&meta, &txns, &opts).expect("a decoded object re-encodes");
    let back = decode_bytes(obj).expect("decode").to_txns().expect("pages");
    assert_eq!(back, txns);
}

fn index(idx: &SegmentIndex, data: &[u8]) {
    let h = &idx.header;
    for t in &idx.txns {
        assert_eq!(idx.txn_for(t.txid), Some(t));
        for e in idx.pages_of(t) {
            let (_, found) = idx
                .find_page(e.pgno, t.txid)
                .expect("a listed page is found");
            assert_eq!(found.pgno, e.pgno);
        }
    }
    let len = idx.object_len();
    for r in [
        0..len,
        idx.prefix_len()..len,
        len / 3..len / 2,
        len..len + 1,
    ] {
        let pieces = idx.locate(r.clone());
        let total: u64 = pieces.iter().map(|(_, p)| p.end - p.start).sum();
        if r.start < r.end && r.end <= len {
            assert_eq!(total, r.end - r.start, "locate {r:?}");
        } else {
            assert!(pieces.is_empty(), "locate {r:?} outside the object");
        }
        for (part, p) in pieces {
            if let Some(i) = part {
                assert!(p.end <= idx.parts[i].len, "locate {r:?}: beyond part {i}");
            }
        }
    }
    if h.kind != SegmentKind::SplitSnapshot {
        return;
    }
    let ps = h.page_size as usize;
    for (i, part) in idx.parts.iter().enumerate() {
        let Some(bytes) = usize::try_from(part.start)
            .ok()
            .zip(usize::try_from(part.range().end).ok())
            .and_then(|(a, b)| data.get(a..b))
        else {
            continue;
        };
        let _ = idx.check_part(i, bytes);
        let raw = idx.check_raw_part(i, bytes);
        let n = idx.pages_in_part(i).len();
        if n * ps <= MAX_BUFFER {
            let mut out = vec![0u8; n * ps];
            let decoded = idx.decode_part_into(i, bytes, &mut out);
            if let (Ok(Some(first)), Ok(first2)) = (raw, decoded) {
                assert_eq!(first, first2);
                assert_eq!(out, bytes, "a raw part is its pages");
            }
        }
    }
}

fn page_size(b: u8) -> u32 {
    [512, 1024, 4096][b as usize % 3]
}

/// A page: a fill byte with up to 16 bytes of the input somewhere in it
/// (so pages compress, repeat and differ a little, and deltas happen).
fn page(i: &mut Input, ps: usize) -> Bytes {
    let mut p = vec![i.u8(); ps];
    let n = i.u8() as usize % 17;
    let at = i.u16() as usize;
    for (k, b) in i.take(n).iter().enumerate() {
        p[(at + k) % ps] = *b;
    }
    Bytes::from(p)
}

/// `segment_roundtrip`: transactions made from the input, encoded as a
/// segment or a snapshot (`encode_with`) and written by `SnapshotWriter`
/// (whole or split into parts), decode back to exactly those pages, every
/// way they can be read; one byte changed anywhere is an error or changes
/// no page.
pub fn segment_roundtrip(data: &[u8]) {
    let mut i = Input::new(data);
    let mode = i.u8();
    let ps = page_size(mode);
    let snapshot = mode & 4 != 0;
    let compress = mode & 8 != 0;
    let first = 1 + i.u16() as u64;
    let ntx = if snapshot { 1 } else { 1 + i.u8() % 4 };
    let mut txns = Vec::new();
    for t in 0..ntx as u64 {
        let db_pages = 1 + (i.u8() % 12) as u32;
        let mut pages = Vec::new();
        if snapshot {
            for n in 1..=db_pages {
                pages.push((PageNo(n), page(&mut i, ps as usize)));
            }
        } else {
            for _ in 0..i.u8() % 8 {
                let n = 1 + (i.u8() as u32 % db_pages);
                pages.push((PageNo(n), page(&mut i, ps as usize)));
            }
        }
        txns.push(TxnPages {
            txid: TxId(first + t),
            commit: Millis(1_700_000_000_000 + t),
            db_pages,
            pages,
        });
    }
    // What any reader must get back: the last image of each page, in order.
    let want: Vec<TxnPages> = txns
        .iter()
        .map(|t| TxnPages {
            pages: t
                .pages
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
            ..t.clone()
        })
        .collect();
    let meta = SegmentMeta {
        db_id: DbId([mode; 16]),
        epoch: Epoch(i.u8() as u64),
        page_size: ps,
        kind: if snapshot {
            SegmentKind::Snapshot
        } else {
            SegmentKind::Segment
        },
    };
    let opts = EncodeOptions {
        created: Some(Millis(1_700_000_000_000)),
        compress,
    };
    let obj = encode_with(&meta, &txns, &opts).expect("encode");
    let seg = decode(&obj).expect("decode what was encoded");
    assert_eq!(seg.header().meta(), meta);
    assert_eq!(seg.to_txns().expect("pages"), want);
    index(&seg.index, &obj);
    let flip = i.u32() as usize % obj.len();
    let xor = i.u8() | 1;
    let mut bad = obj.to_vec();
    bad[flip] ^= xor;
    if let Ok(txns) = decode(&bad).and_then(|s| s.to_txns()) {
        assert_eq!(
            txns, want,
            "byte {flip} ^ {xor:#x} changed a page unnoticed"
        );
    }
    if !snapshot {
        return;
    }
    // The same snapshot page by page, in parts of 1 to 4 pages' bytes.
    let part_bytes = ps as u64 * (1 + (i.u8() % 4) as u64);
    let t = &want[0];
    let mut w = SnapshotWriter::new(&meta, t.txid, t.commit, t.db_pages, part_bytes, &opts)
        .expect("snapshot writer");
    let mut parts = Vec::new();
    for (_, p) in &t.pages {
        parts.extend(w.push(p).expect("push"));
    }
    match w.finish().expect("finish") {
        Written::Whole(obj) => {
            assert!(parts.is_empty());
            let seg = decode_bytes(obj).expect("decode a whole snapshot");
            assert_eq!(seg.to_txns().expect("pages"), want);
        }
        Written::Split { index: head, last } => {
            parts.extend(last);
            let idx = decode_split_index(&head).expect("decode a split snapshot's index");
            assert_eq!(idx.parts.len(), parts.len());
            let mut got = Vec::new();
            for (k, part) in parts.iter().enumerate() {
                idx.check_part(k, part).expect("part checks");
                let mut out = vec![0u8; idx.pages_in_part(k).len() * ps as usize];
                idx.decode_part_into(k, part, &mut out)
                    .expect("decode part");
                got.extend(out);
            }
            let images: Vec<u8> = t.pages.iter().flat_map(|(_, p)| p.to_vec()).collect();
            assert_eq!(got, images);
            // The virtual object (index, then the parts) reads as a whole.
            let virt: Vec<u8> = [head.to_vec(), parts.concat()].concat();
            let seg = decode(&virt).expect("decode the virtual object");
            assert_eq!(seg.to_txns().expect("pages"), want);
            index(&seg.index, &virt);
        }
    }
}

/// `manifest_keys`: byte 0 even, the rest is a manifest (`from_bytes`),
/// read every way and re-serialized to the same manifest; odd, three lines
/// (tenant, database, key) for `DbKeys`' parsers, whose results format back
/// to the key they came from, and numbers from the rest formatted into keys
/// that parse back to them.
pub fn manifest_keys(data: &[u8]) {
    let mut i = Input::new(data);
    if i.u8() & 1 == 0 {
        let Ok(m) = Manifest::from_bytes(i.rest()) else {
            return;
        };
        let _ = m.validate();
        for t in [0, 1, m.head.0, m.head.0.saturating_add(1), u64::MAX] {
            let _ = m.epoch_owning(TxId(t));
            let _ = m.is_valid_snapshot(m.epoch, TxId(t));
            let _ = m.is_valid_segment(m.epoch, TxId(t), TxId(t.saturating_add(1)));
        }
        for e in &m.epochs {
            let _ = m.epoch_range(e.epoch);
        }
        let again = Manifest::from_bytes(&m.to_bytes()).expect("a manifest re-reads");
        assert_eq!(again, m);
        return;
    }
    let (tenant, db, key) = (i.text(), i.text(), i.text());
    let ok = keys::validate_tenant(&tenant).is_ok() && keys::validate_db_name(&db).is_ok();
    let Ok(k) = DbKeys::new(&tenant, &db) else {
        assert!(!ok, "DbKeys refused valid names {tenant:?} {db:?}");
        return;
    };
    assert!(ok);
    assert!(k.manifest().starts_with(&k.tenant_prefix()));
    if let Some(s) = k.parse_segment_key(&key) {
        assert_eq!(k.segment(s.first, s.last, s.epoch, s.last_commit), key);
    }
    if let Some(s) = k.parse_snapshot_key(&key) {
        assert_eq!(k.snapshot(s.txid, s.commit), key);
        let dir = keys::snapshot_parts_dir(&key, Epoch(7)).expect("a snapshot's parts");
        assert_eq!(k.parse_parts_dir(&dir), Some(s));
    }
    if let Some(s) = k.parse_parts_dir(&key) {
        assert!(key.starts_with(&k.parts_prefix()));
        assert!(
            k.snapshot(s.txid, s.commit)
                .starts_with(&k.snapshots_prefix())
        );
    }
    let _ = keys::snapshot_part(&key, Epoch(1), 0);
    let (a, b, e, c) = (i.u64(), i.u64(), i.u64(), i.u64());
    let (first, last) = (a.min(b), a.max(b));
    let seg = k.segment(TxId(first), TxId(last), Epoch(e), Millis(c));
    let parsed = k.parse_segment_key(&seg);
    assert_eq!(parsed.is_some(), first != 0, "{seg}");
    if let Some(s) = parsed {
        assert_eq!(
            (s.first.0, s.last.0, s.epoch.0, s.last_commit.0),
            (first, last, e, c)
        );
    }
    let snap = k.snapshot(TxId(a), Millis(c));
    let parsed = k.parse_snapshot_key(&snap);
    assert_eq!(parsed.is_some(), a != 0, "{snap}");
    if let Some(s) = parsed {
        assert_eq!((s.txid.0, s.commit.0), (a, c));
        let dir = keys::snapshot_parts_dir(&snap, Epoch(e)).expect("parts dir");
        assert_eq!(k.parse_parts_dir(&dir), Some(s), "{dir}");
    }
}

/// A valid WAL header (SQLite's layout and checksum).
pub fn wal_header(big_endian: bool, page_size: u32, salts: (u32, u32)) -> [u8; 32] {
    let mut h = [0u8; 32];
    let magic: u32 = if big_endian { 0x377f_0683 } else { 0x377f_0682 };
    h[0..4].copy_from_slice(&magic.to_be_bytes());
    h[4..8].copy_from_slice(&3_007_000u32.to_be_bytes());
    let ps = if page_size == 65536 { 1 } else { page_size };
    h[8..12].copy_from_slice(&ps.to_be_bytes());
    h[16..20].copy_from_slice(&salts.0.to_be_bytes());
    h[20..24].copy_from_slice(&salts.1.to_be_bytes());
    let c = checksum(big_endian, (0, 0), &h[..24]);
    h[24..28].copy_from_slice(&c.0.to_be_bytes());
    h[28..32].copy_from_slice(&c.1.to_be_bytes());
    h
}

/// A frame header (pgno, commit size, salts) without its checksum.
fn frame_header(pgno: u32, commit: u32, salts: (u32, u32)) -> [u8; 24] {
    let mut f = [0u8; 24];
    f[0..4].copy_from_slice(&pgno.to_be_bytes());
    f[4..8].copy_from_slice(&commit.to_be_bytes());
    f[8..12].copy_from_slice(&salts.0.to_be_bytes());
    f[12..16].copy_from_slice(&salts.1.to_be_bytes());
    f
}

/// `wal`: byte 0 even, the rest is a WAL image for `scan` and
/// `committed_txns`, which agree and stay inside it. Odd, a valid WAL is
/// built from the input (frames with their checksums chained, as SQLite
/// writes them), then one byte changed and the image cut short: both
/// readers find exactly the transactions committed before the damage.
pub fn wal(data: &[u8]) {
    let mut i = Input::new(data);
    let mode = i.u8();
    if mode & 1 == 0 {
        return check_wal(i.rest(), None);
    }
    let ps = [512u32, 1024][(mode >> 1) as usize & 1];
    let big = mode & 4 != 0;
    let salts = (i.u32(), i.u32());
    let mut img = wal_header(big, ps, salts).to_vec();
    let mut s = WalHeader::parse(&img).expect("valid header").cksum;
    let mut frames = Vec::new();
    for _ in 0..i.u8() % 12 {
        let pgno = 1 + (i.u8() % 8) as u32;
        let c = i.u8();
        let commit = if c & 3 == 0 { 1 + (c >> 2) as u32 } else { 0 };
        let mut f = frame_header(pgno, commit, salts).to_vec();
        f.extend(page(&mut i, ps as usize));
        s = checksum(big, s, &f[..8]);
        s = checksum(big, s, &f[FRAME_HEADER_LEN..]);
        f[16..20].copy_from_slice(&s.0.to_be_bytes());
        f[20..24].copy_from_slice(&s.1.to_be_bytes());
        frames.push((pgno, commit));
        img.extend(f);
    }
    let fsz = FRAME_HEADER_LEN + ps as usize;
    let at = i.u32() as usize;
    let xor = i.u8();
    let cut = img.len() - (i.u16() as usize % (img.len() + 1)).min(i.u8() as usize * 64);
    // Frames that survive: before the damaged one, and whole after the cut.
    let mut valid = (cut.saturating_sub(WAL_HEADER_LEN) / fsz).min(frames.len());
    if xor != 0 && at < img.len() {
        img[at] ^= xor;
        if at < WAL_HEADER_LEN {
            valid = usize::MAX;
        } else {
            valid = valid.min((at - WAL_HEADER_LEN) / fsz);
        }
    }
    img.truncate(cut);
    if cut < WAL_HEADER_LEN {
        valid = usize::MAX;
    }
    let expect = (valid != usize::MAX).then(|| {
        let mut txns = Vec::new();
        let mut pages = BTreeMap::new();
        for (k, &(pgno, commit)) in frames.iter().take(valid).enumerate() {
            let off = WAL_HEADER_LEN + k * fsz + FRAME_HEADER_LEN;
            pages.insert(pgno, off..off + ps as usize);
            if commit != 0 {
                txns.push(wal::WalTxn {
                    commit_frame: k as u32 + 1,
                    db_pages: commit,
                    pages: std::mem::take(&mut pages).into_iter().collect(),
                });
            }
        }
        txns
    });
    check_wal(&img, Some(expect));
}

fn check_wal(img: &[u8], expect: Option<Option<Vec<wal::WalTxn>>>) {
    let scan = wal::scan(img);
    let txns = committed_txns(img);
    assert_eq!(scan.is_some(), txns.is_some());
    if let (Some(s), Some((h, t))) = (scan, &txns) {
        assert_eq!(s.header, *h);
        assert_eq!(s.last_commit_frame, t.last().map_or(0, |t| t.commit_frame));
        let mut prev = 0;
        for t in t {
            assert!(t.commit_frame > prev && t.db_pages != 0);
            prev = t.commit_frame;
            for (pgno, r) in &t.pages {
                assert!(*pgno != 0 && r.end <= img.len() && r.len() == h.page_size as usize);
            }
        }
    }
    if let Some(want) = expect {
        assert_eq!(txns.map(|(_, t)| t), want);
    }
}

/// What `WalCapture` is expected to hold: the frames since the last
/// commit, header and page by frame index.
#[derive(Default)]
struct Model {
    page_size: u32,
    frames: BTreeMap<u32, (Option<[u8; 24]>, Option<Bytes>)>,
}

/// `wal_capture`: a sequence of writes to a WAL as SQLite makes them
/// (headers, frame headers, pages, whole frames, truncations) mixed with
/// writes of any offset and length, fed to `WalCapture::on_write`. Each
/// write is accepted, committed or refused exactly as a model of SQLite's
/// WAL says, and a commit carries the last image of each page written to
/// the frames up to the commit frame.
pub fn wal_capture(data: &[u8]) {
    let mut i = Input::new(data);
    let ps = [512u32, 1024][i.u8() as usize & 1];
    let salts = (i.u32(), i.u32());
    let fsz = FRAME_HEADER_LEN + ps as usize;
    let mut cap = WalCapture::default();
    let mut m = Model::default();
    let mut ops = 0;
    while !i.is_empty() && ops < 64 {
        ops += 1;
        let op = i.u8();
        let idx = 1 + (i.u8() % 8) as u32;
        let frame_at = WAL_HEADER_LEN + (idx as usize - 1) * fsz;
        let (offset, bytes): (usize, Vec<u8>) = match op % 8 {
            0 => (0, wal_header(op & 8 != 0, ps, salts).to_vec()),
            1 | 2 => {
                let pgno = 1 + (i.u8() % 8) as u32;
                let c = i.u8();
                let commit = if c & 1 == 0 { 0 } else { 1 + (c >> 1) as u32 };
                let mut f = frame_header(pgno, commit, salts).to_vec();
                if op % 8 == 2 {
                    f.extend(page(&mut i, ps as usize));
                }
                (frame_at, f)
            }
            3 => (
                frame_at + FRAME_HEADER_LEN,
                page(&mut i, ps as usize).to_vec(),
            ),
            4 => {
                cap.reset();
                m.frames.clear();
                continue;
            }
            5 => {
                // The VFS reads the header it did not see written.
                if cap.page_size() == 0 {
                    cap.set_page_size(ps);
                    m.page_size = ps;
                }
                continue;
            }
            _ => {
                let off = i.u32() as usize % (WAL_HEADER_LEN + 9 * fsz);
                let len = match i.u8() % 7 {
                    6 => i.u8() as usize,
                    k => [0, 1, 24, ps as usize, fsz, 32][k as usize],
                };
                (off, i.take(len).to_vec())
            }
        };
        let got = cap.on_write(offset, &bytes);
        match expect(&mut m, offset, &bytes) {
            Err(()) => assert!(
                got.is_err(),
                "write of {} at {offset} accepted",
                bytes.len()
            ),
            Ok(None) => assert!(
                matches!(got, Ok(WalWrite::Pending | WalWrite::Header)),
                "write of {} at {offset}",
                bytes.len()
            ),
            Ok(Some((frame, db_pages, salt, pages))) => {
                let Ok(WalWrite::Commit(c)) = got else {
                    panic!("write of {} at {offset} did not commit", bytes.len());
                };
                assert_eq!(
                    (c.commit_frame, c.db_pages, c.page_size),
                    (frame, db_pages, m.page_size)
                );
                assert_eq!((c.salt1, c.salt2), salt);
                assert_eq!(c.pages, pages);
            }
        }
        assert_eq!(cap.page_size(), m.page_size);
    }
}

/// Commit frame, database size, the commit frame's salts, the pages.
type Commit = (u32, u32, (u32, u32), Vec<(PageNo, Bytes)>);

/// The model's answer to a write: refused, pending, or this commit.
fn expect(m: &mut Model, offset: usize, data: &[u8]) -> Result<Option<Commit>, ()> {
    if offset == 0 {
        let h = WalHeader::parse(data).ok_or(())?;
        m.page_size = h.page_size;
        m.frames.clear();
        return Ok(None);
    }
    if m.page_size == 0 || offset < WAL_HEADER_LEN {
        return Err(());
    }
    let ps = m.page_size as usize;
    let fsz = FRAME_HEADER_LEN + ps;
    let idx = ((offset - WAL_HEADER_LEN) / fsz) as u32 + 1;
    let within = (offset - WAL_HEADER_LEN) % fsz;
    let slot = m.frames.entry(idx).or_default();
    if within == 0 && (data.len() == FRAME_HEADER_LEN || data.len() == fsz) {
        let mut h = [0u8; 24];
        h.copy_from_slice(&data[..FRAME_HEADER_LEN]);
        let page = (data.len() == fsz).then(|| Bytes::copy_from_slice(&data[FRAME_HEADER_LEN..]));
        *slot = (Some(h), page);
    } else if within == FRAME_HEADER_LEN && data.len() == ps {
        slot.1 = Some(Bytes::copy_from_slice(data));
    } else {
        if slot.0.is_none() && slot.1.is_none() {
            m.frames.remove(&idx);
        }
        return Err(());
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let (commit, salt) = match &*slot {
        (Some(h), Some(_)) if be(&h[4..8]) != 0 => (be(&h[4..8]), (be(&h[8..12]), be(&h[12..16]))),
        _ => return Ok(None),
    };
    let mut pages = BTreeMap::new();
    for (k, (h, p)) in std::mem::take(&mut m.frames) {
        if let (true, Some(h), Some(p)) = (k <= idx, h, p) {
            pages.insert(PageNo(be(&h[0..4])), p);
        }
    }
    Ok(Some((idx, commit, salt, pages.into_iter().collect())))
}
