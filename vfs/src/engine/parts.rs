//! Reading objects by offset whatever their layout. A split snapshot
//! (`format/segment/`, `docs/format.md` §2.8) keeps its header and index
//! in one object and its body in parts of a bounded size, so that no
//! request, upload or buffer ever has to hold a whole large database, and a
//! ranged GET of one page reads from an object of a few MiB.
//!
//! Offsets are always those of the *virtual* object (the index object
//! followed by every part), which is what page-table entries hold.

use super::direct::Scratch;
use crate::bucket::ObjectStore;
use crate::error::{Error, Result, ResultExt};
use crate::format::keys;
use crate::format::segment::SegmentIndex;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The key of part `i` of the split snapshot at `key`.
pub(crate) fn part_key(key: &str, idx: &SegmentIndex, i: usize) -> Result<String> {
    keys::snapshot_part(key, idx.header.epoch, i as u32).ok_or_else(|| {
        Error::corrupt(format!(
            "{key}: a split snapshot must be stored under snapshots/<txid>-<ms>.snap"
        ))
    })
}

/// A part named by an index that exists must exist: its absence is damage
/// to the stored history (`Corrupt`), not a missing database (`NotFound`).
fn missing_is_corrupt(e: Error, key: &str) -> Error {
    if e.is_not_found() {
        Error::corrupt(format!(
            "{key} is missing from the bucket, though its snapshot's index names it"
        ))
    } else {
        e
    }
}

/// Bytes `range` of the virtual object at `key`: one ranged GET, or one per
/// object the range touches (a range only spans parts when a caller reads
/// runs of pages across a part boundary).
pub(crate) fn read_range(
    store: &dyn ObjectStore,
    key: &str,
    idx: &SegmentIndex,
    range: std::ops::Range<u64>,
) -> Result<Bytes> {
    let pieces = idx.locate(range.clone());
    if pieces.is_empty() {
        return Err(Error::corrupt(format!(
            "{key}: bytes {}..{} lie outside the object ({} bytes)",
            range.start,
            range.end,
            idx.object_len()
        )));
    }
    let get = |(part, r): &(Option<usize>, std::ops::Range<u64>)| -> Result<Bytes> {
        let k = match part {
            Some(i) => part_key(key, idx, *i)?,
            None => key.to_string(),
        };
        let got = store
            .get_range(&k, r.clone())
            .map_err(|e| missing_is_corrupt(e, &k))
            .ctx(format!("read {k} bytes {}..{}", r.start, r.end))?;
        if got.len() as u64 != r.end - r.start {
            return Err(Error::corrupt(format!(
                "{k}: short read, {} of {} bytes (truncated object?)",
                got.len(),
                r.end - r.start
            )));
        }
        Ok(got)
    };
    if let [one] = pieces.as_slice() {
        return get(one);
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for p in &pieces {
        out.extend_from_slice(&get(p)?);
    }
    Ok(out.freeze())
}

/// What [`for_each_part`] calls with each checked part.
pub(crate) type PartFn<'a> = dyn Fn(usize, &[u8], &mut Scratch) -> Result<()> + Sync + 'a;

/// Fetch every part of the split snapshot at `key` with `parallelism`
/// concurrent GETs, check each against the part table, and hand it to
/// `each(part number, bytes, scratch)` on the fetching thread, in any order
/// (so decoding and writing overlap the downloads, and at most
/// `parallelism` parts are held). With `raw_checked_by_pages`, a part whose
/// pages are all stored raw is handed over after only its length is
/// checked: `each` must check every page it uses (`check_image`,
/// `check_raw_part`). The bytes start on a direct-I/O boundary;
/// `scratch` is the fetching thread's own buffer, reused from part to part.
pub(crate) fn for_each_part(
    store: &dyn ObjectStore,
    key: &str,
    idx: &SegmentIndex,
    parallelism: usize,
    tick: &(dyn Fn(u64) + Sync),
    raw_checked_by_pages: bool,
    each: &PartFn<'_>,
) -> Result<()> {
    let n = idx.parts.len();
    let next = AtomicUsize::new(0);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..parallelism.clamp(1, n.max(1)))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    // Both reused from part to part: the part as fetched
                    // (aligned, so its pages can be written as they are)
                    // and the callback's own buffer.
                    let (mut body, mut scratch) = (Scratch::default(), Scratch::default());
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        let result = (|| {
                            let k = part_key(key, idx, i)?;
                            let want = idx.parts[i].len;
                            let data = body.get(want as usize);
                            let got = store
                                .get_into(&k, data)
                                .map_err(|e| missing_is_corrupt(e, &k))
                                .ctx(format!("fetch {k}"))?;
                            if got != want {
                                return Err(Error::corrupt(format!(
                                    "{k}: part {i} is {got} bytes, the index says {want}"
                                )));
                            }
                            // A raw part's checksum is its pages' combined:
                            // a caller that checks each page it uses need not
                            // read the bytes twice.
                            if !(raw_checked_by_pages && idx.part_is_raw(i)) {
                                idx.check_part(i, data).ctx(&k)?;
                            }
                            tick(want);
                            each(i, data, &mut scratch).ctx(&k)
                        })();
                        if result.is_err() {
                            // Stop the other workers early.
                            next.store(n, Ordering::Relaxed);
                            return result;
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::corrupt("part fetch thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}
