//! Read any page of any restore point straight from the bucket, without a
//! restore: the base of lazy opens and of the mount.
//!
//! [`PageMap::build`] reads the manifest (or lists the bucket for older
//! points), then the header and index of every object the restore point
//! needs, in parallel — one ranged GET each. It then knows, for every page,
//! which object entry holds its image at that point. [`PageMap::read_page`]
//! fetches one page with one ranged GET (a page stored as a delta brings its
//! base, which lies earlier in the same object, in the same request).
//! The snapshot's hot pages (page 1 and interior B-tree pages, see
//! `snapshot.rs`) come in the same round trip as the indexes and go into the
//! page cache, so a cold point query costs three sequential round trips:
//! manifest, {indexes ∥ hot pages}, leaf page.

use super::direct::Scratch;
use super::restore::{self, Target};
use crate::bucket::ObjectStore;
use crate::error::{Error, Result, ResultExt};
use crate::format::keys::DbKeys;
use crate::format::manifest::Manifest;
use crate::format::segment::{self, HEADER_LEN, SegmentHeader, SegmentIndex};
use crate::metrics::METRICS;
use crate::types::{PageNo, TxId};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

/// Pages fetched from the bucket, shared by every reader in the process.
/// Keyed by (bucket, object, page-table entry): an immutable page image,
/// whatever restore point it is read for. The bucket is part of the key
/// because one process may open several buckets that hold the same key
/// (two tests importing one tenant in the same millisecond did). Concurrent
/// misses of one key fetch once. Size: `STRATA_PAGE_CACHE` bytes (default
/// 64 MiB).
static CACHE: LazyLock<moka::sync::Cache<CacheKey, Bytes>> = LazyLock::new(|| {
    let bytes = std::env::var("STRATA_PAGE_CACHE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64u64 << 20);
    moka::sync::Cache::builder()
        .weigher(|_, v: &Bytes| v.len() as u32)
        .max_capacity(bytes)
        .build()
});

/// (bucket identity, object key, page-table entry).
type CacheKey = (Arc<str>, Arc<str>, u32);

const NOWHERE: (u32, u32) = (u32::MAX, u32::MAX);

/// How many runs of uncached pages of one long read are fetched at once.
pub const READ_AHEAD: usize = 8;
/// Page images by page number, as fetched for one long read.
type Images = Vec<(u32, Vec<u8>)>;

/// The most one ranged GET of adjacent pages asks for.
pub const RUN_BYTES: u64 = 1 << 20;

/// How much of an object to fetch first, hoping it holds the whole index.
const INDEX_GUESS: u64 = 64 << 10;

struct Object {
    key: Arc<str>,
    /// Shared with the maps of later points built from this one
    /// ([`PageMap::build_after`]): an object's index never changes.
    index: Arc<SegmentIndex>,
}

/// The location of every page of one restore point.
pub struct PageMap {
    plan: restore::Plan,
    pub txid: TxId,
    pub page_size: u32,
    pub db_pages: u32,
    objects: Vec<Object>,
    /// The bucket's [`identity`](ObjectStore::identity): the page cache's scope.
    bucket: Arc<str>,
    /// Page number → (object, entry in its page table) of its image;
    /// [`NOWHERE`] for a page no object holds.
    locs: Vec<(u32, u32)>,
}

impl PageMap {
    pub fn build(store: &dyn ObjectStore, keys: &DbKeys, target: Target) -> Result<PageMap> {
        Self::build_with(store, keys, target, None)
    }

    /// As [`build`](Self::build), with the manifest if the caller has it.
    pub fn build_with(
        store: &dyn ObjectStore,
        keys: &DbKeys,
        target: Target,
        manifest: Option<&Manifest>,
    ) -> Result<PageMap> {
        let plan = restore::plan_with(store, keys, target, manifest)?;
        Self::from_plan(store, keys, plan, None)
    }

    /// The head of `manifest`, built from `previous` (an earlier map of the
    /// same database): the indexes of objects both points use are shared,
    /// so following a live database costs the manifest and the indexes of
    /// the objects that are new since, not every index again. A manifest of
    /// another history (the database was replaced) shares nothing.
    pub fn build_after(
        store: &dyn ObjectStore,
        keys: &DbKeys,
        manifest: &Manifest,
        previous: &PageMap,
    ) -> Result<PageMap> {
        let plan = restore::plan_with(store, keys, Target::Latest, Some(manifest))?;
        let same_history = previous.plan.db_id == plan.db_id;
        Self::from_plan(store, keys, plan, Some(previous).filter(|_| same_history))
    }

    fn from_plan(
        store: &dyn ObjectStore,
        keys: &DbKeys,
        plan: restore::Plan,
        previous: Option<&PageMap>,
    ) -> Result<PageMap> {
        let known = |key: &str| {
            previous.and_then(|p| {
                p.objects
                    .iter()
                    .find(|o| &*o.key == key)
                    .map(|o| o.index.clone())
            })
        };
        let needed: Vec<(String, Option<u64>, Option<Arc<SegmentIndex>>)> = plan
            .snapshot
            .iter()
            .map(|s| (s.key.clone(), s.prefix))
            .chain(plan.segments.iter().map(|s| (s.key.clone(), s.prefix)))
            .map(|(k, hint)| {
                let have = known(&k);
                (k, hint, have)
            })
            .collect();
        // The hot pages came with the previous map if it had this snapshot.
        let hot_key = plan
            .snapshot
            .as_ref()
            .filter(|s| known(&s.key).is_none())
            .map(|s| keys.hot_pages(s.txid, s.commit));
        // One round trip: every index not known yet, and the snapshot's hot
        // pages, at once.
        let t0 = std::time::Instant::now();
        let (indexes, hot) = std::thread::scope(|s| {
            // Hot pages are decoded and checked on their own thread, while
            // the index is decoded on another.
            let hot = hot_key
                .as_ref()
                .map(|k| s.spawn(move || store.get(k).map(|o| decode_hot(k, o.data))));
            let handles: Vec<_> = needed
                .iter()
                .map(|(k, hint, have)| match have {
                    Some(index) => Ok(index.clone()),
                    None => Err(s.spawn(move || fetch_index(store, k, *hint).map(Arc::new))),
                })
                .collect();
            let indexes: Vec<Result<Arc<SegmentIndex>>> = handles
                .into_iter()
                .map(|h| match h {
                    Ok(index) => Ok(index),
                    Err(h) => h
                        .join()
                        .unwrap_or_else(|_| Err(Error::corrupt("index fetch thread panicked"))),
                })
                .collect();
            let hot = hot.and_then(|h| h.join().ok());
            (indexes, hot)
        });
        let t_fetch = t0.elapsed();
        let mut map = PageMap {
            plan: plan.clone(),
            txid: plan.txid,
            page_size: 0,
            db_pages: 0,
            objects: Vec::new(),
            bucket: store.identity().into(),
            locs: Vec::new(),
        };
        for ((key, _, _), index) in needed.into_iter().zip(indexes) {
            let index = index?;
            let o = map.objects.len() as u32;
            for t in index.txns.iter().take_while(|t| t.txid <= plan.txid) {
                if map.locs.len() <= t.db_pages as usize {
                    map.locs.resize(t.db_pages as usize + 1, NOWHERE);
                }
                for i in t.first_entry..t.first_entry + t.entry_count {
                    if let Some(e) = index.pages.get(i as usize)
                        && let Some(slot) = map.locs.get_mut(e.pgno.0 as usize)
                    {
                        *slot = (o, i);
                    }
                }
                map.db_pages = t.db_pages;
                map.page_size = index.header.page_size;
            }
            map.objects.push(Object {
                key: key.into(),
                index,
            });
        }
        map.locs.truncate(map.db_pages as usize + 1);
        let t_map = t0.elapsed();
        match hot {
            Some(Ok(pages)) => map.prefill(pages),
            Some(Err(e)) if !e.is_not_found() => {
                tracing::debug!(error = %e, "no hot pages; cold reads fetch them one by one")
            }
            _ => {}
        }
        tracing::debug!(fetch = ?t_fetch, map = ?(t_map - t_fetch), prefill = ?(t0.elapsed() - t_map), "page map built");
        Ok(map)
    }

    /// Put the snapshot's hot pages (page 1, interior B-tree pages) in the
    /// page cache, each checked against the snapshot's own index entry, and
    /// only where the snapshot still holds the page at this restore point.
    fn prefill(&self, hot: Vec<(segment::PageEntry, Bytes)>) {
        let Some(snap) = self
            .objects
            .first()
            .filter(|_| self.plan.snapshot.is_some())
        else {
            return;
        };
        for (entry, page) in hot {
            let Some(&(o, e)) = self.locs.get(entry.pgno.0 as usize) else {
                continue;
            };
            let Some(want) = snap.index.pages.get(e as usize) else {
                continue;
            };
            if o != 0 || want.crc != entry.crc {
                continue;
            }
            CACHE.insert(self.cache_key(0, e), page);
        }
    }

    /// The pages whose image differs between `old` and this map (another
    /// restore point of the same database): those held by a different
    /// object entry, and those past the end of either, in ascending order;
    /// every page if the maps read different histories.
    /// Object entries are immutable, so a page at the same entry of the
    /// same object reads the same in both. (Page 1 is among them only if
    /// its image moved; a caller presenting a header derived from the map
    /// must treat it as changed itself.)
    pub fn changed_since(&self, old: &PageMap) -> Vec<PageNo> {
        fn at(m: &PageMap, p: usize) -> Option<(&str, u32)> {
            let &(o, e) = m.locs.get(p).filter(|l| **l != NOWHERE)?;
            Some((&m.objects[o as usize].key, e))
        }
        let (shared, most) = (
            self.db_pages.min(old.db_pages),
            self.db_pages.max(old.db_pages),
        );
        // Another history: its object keys may repeat the old ones'.
        if self.db_id() != old.db_id() {
            return (1..=most).map(PageNo).collect();
        }
        let mut out: Vec<PageNo> = (1..=shared as usize)
            .filter(|&p| at(self, p) != at(old, p))
            .map(|p| PageNo(p as u32))
            .collect();
        out.extend((shared + 1..=most).map(PageNo));
        out
    }

    /// The objects this map reads from, as a restore plan (for bulk hydration).
    pub fn plan(&self) -> restore::Plan {
        self.plan.clone()
    }

    /// The history this map reads (the manifest's `db_id`).
    pub fn db_id(&self) -> crate::types::DbId {
        self.plan.db_id
    }

    /// How many objects this restore point spans.
    pub fn objects(&self) -> usize {
        self.objects.len()
    }

    /// The database's size in bytes at this restore point.
    pub fn size(&self) -> u64 {
        self.db_pages as u64 * self.page_size as u64
    }

    /// As [`read_at`](Self::read_at), for a reader that sees this map as a
    /// plain database file (the mount, the VFS's read-only opens): page 1's
    /// format bytes 18 and 19 read as 1 (rollback journal: the image holds
    /// every transaction, so SQLite needs no `-wal` or `-shm`), the change
    /// counter (24) and its version-valid-for copy (92) as the txid, and the
    /// size in pages (28) as the map's. So SQLite drops its cache when the
    /// state moves, and trusts the size.
    pub fn read_file_at(
        &self,
        store: &dyn ObjectStore,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let n = self.read_at(store, offset, buf)?;
        let counter = (self.txid.0 as u32).to_be_bytes();
        let pages = self.db_pages.to_be_bytes();
        let patches: [(u64, &[u8]); 5] = [
            (18, &[1]),
            (19, &[1]),
            (24, &counter),
            (28, &pages),
            (92, &counter),
        ];
        for (at, bytes) in patches {
            for (i, b) in bytes.iter().enumerate() {
                let pos = at + i as u64;
                if pos >= offset && pos < offset + n as u64 {
                    buf[(pos - offset) as usize] = *b;
                }
            }
        }
        Ok(n)
    }

    /// Bytes `offset..offset + buf.len()` of the database at this restore
    /// point, page by page through the page cache; short at the end of the
    /// database (returns how many bytes were filled). The uncached pages of
    /// a long read (a copy, a scan) are fetched in runs and kept out of the
    /// cache, so that a scan does not evict what point reads use.
    pub fn read_at(&self, store: &dyn ObjectStore, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let ps = self.page_size as u64;
        let size = self.size();
        if ps == 0 || offset >= size {
            return Ok(0);
        }
        let end = (offset + buf.len() as u64).min(size);
        let (first, last) = (offset / ps + 1, (end - 1) / ps + 1);
        let fetched = if last > first {
            self.fetch_uncached(store, (first..=last).map(|p| PageNo(p as u32)))?
        } else {
            HashMap::new()
        };
        let mut pos = offset;
        while pos < end {
            let pgno = PageNo((pos / ps) as u32 + 1);
            let cached;
            let page: &[u8] = match fetched.get(&pgno.0) {
                Some(p) => p,
                None => {
                    cached = self.read_page_cached(store, pgno)?;
                    &cached
                }
            };
            let in_page = (pos % ps) as usize;
            let n = (ps as usize - in_page).min((end - pos) as usize);
            let at = (pos - offset) as usize;
            let src = page
                .get(in_page..in_page + n)
                .ok_or_else(|| Error::corrupt(format!("page {pgno} is shorter than {ps} bytes")))?;
            buf[at..at + n].copy_from_slice(src);
            pos += n as u64;
        }
        Ok((end - offset) as usize)
    }

    fn cache_key(&self, object: u32, entry: u32) -> CacheKey {
        (
            self.bucket.clone(),
            self.objects[object as usize].key.clone(),
            entry,
        )
    }

    fn is_cached(&self, pgno: PageNo) -> bool {
        self.locs
            .get(pgno.0 as usize)
            .filter(|l| **l != NOWHERE)
            .is_some_and(|&(o, e)| CACHE.contains_key(&self.cache_key(o, e)))
    }

    /// The images of the uncached ones of `pages`. Pages whose images lie
    /// next to each other in one object (a snapshot stores pages in order)
    /// come as one ranged GET of up to [`RUN_BYTES`]; runs are fetched
    /// [`READ_AHEAD`] at a time in parallel.
    fn fetch_uncached(
        &self,
        store: &dyn ObjectStore,
        pages: impl Iterator<Item = PageNo>,
    ) -> Result<HashMap<u32, Vec<u8>>> {
        // Runs of (object, first entry, entries), in page order.
        let mut runs: Vec<(u32, u32, u32)> = Vec::new();
        for p in pages.filter(|p| !self.is_cached(*p)) {
            let Some(&(o, e)) = self.locs.get(p.0 as usize).filter(|l| **l != NOWHERE) else {
                continue;
            };
            let idx = &self.objects[o as usize].index;
            let entry = &idx.pages[e as usize];
            // A delta is a run of its own (`fetch_run` resolves its chain):
            // it neither joins a run nor starts one that others join.
            if let Some(r) = runs.last_mut()
                && r.0 == o
                && r.1 + r.2 == e
                && !entry.delta
                && !idx.pages[r.1 as usize].delta
                && entry.range().end - idx.pages[r.1 as usize].offset <= RUN_BYTES
            {
                r.2 += 1;
            } else {
                runs.push((o, e, 1));
            }
        }
        let mut out = HashMap::new();
        for batch in runs.chunks(READ_AHEAD) {
            let fetch = |&(o, e, n): &(u32, u32, u32)| self.fetch_run(store, o, e, n);
            let got: Vec<Result<Images>> = match batch {
                [one] => vec![fetch(one)],
                _ => std::thread::scope(|s| {
                    let hs: Vec<_> = batch.iter().map(|r| s.spawn(move || fetch(r))).collect();
                    hs.into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(Error::corrupt("page fetch thread panicked"))
                            })
                        })
                        .collect()
                }),
            };
            for r in got {
                out.extend(r?);
            }
        }
        Ok(out)
    }

    /// The images of entries `e..e + n` of object `o`, with one ranged GET
    /// (a single entry may be a delta: `read_page` fetches its chain).
    fn fetch_run(&self, store: &dyn ObjectStore, o: u32, e: u32, n: u32) -> Result<Images> {
        let obj = &self.objects[o as usize];
        let idx = &obj.index;
        let entries = &idx.pages[e as usize..(e + n) as usize];
        if n == 1 {
            let pgno = entries[0].pgno;
            return Ok(vec![(pgno.0, self.read_page(store, pgno)?)]);
        }
        let start = entries[0].offset;
        let end = entries[entries.len() - 1].range().end;
        let bytes = super::parts::read_range(store, &obj.key, &obj.index, start..end)
            .ctx(format!("read pages from {}", obj.key))?;
        entries
            .iter()
            .map(|entry| {
                let r = entry.range();
                let stored = bytes
                    .get((r.start - start) as usize..(r.end - start) as usize)
                    .ok_or_else(|| Error::corrupt(format!("{}: short read", obj.key)))?;
                let mut page = vec![0u8; idx.header.page_size as usize];
                idx.page_into(entry, stored, &mut page).ctx(&obj.key)?;
                Ok((entry.pgno.0, page))
            })
            .collect()
    }

    /// Like [`read_page`](Self::read_page), through the process's page cache.
    pub fn read_page_cached(&self, store: &dyn ObjectStore, pgno: PageNo) -> Result<Bytes> {
        let Some(&(o, e)) = self.locs.get(pgno.0 as usize).filter(|l| **l != NOWHERE) else {
            return self.read_page(store, pgno).map(Bytes::from);
        };
        let key = self.cache_key(o, e);
        let mut missed = false;
        let page = CACHE
            .try_get_with(key, || {
                missed = true;
                self.read_page(store, pgno).map(Bytes::from)
            })
            .map_err(|e| (*e).clone_error())?;
        if missed {
            METRICS.page_cache_misses.inc();
        } else {
            METRICS.page_cache_hits.inc();
        }
        Ok(page)
    }

    /// The image of `pgno` at this restore point (zeros past the database end
    /// are the caller's business: a page beyond `db_pages` is an error).
    pub fn read_page(&self, store: &dyn ObjectStore, pgno: PageNo) -> Result<Vec<u8>> {
        let (o, chain) = self.chain(pgno)?;
        let key = &self.objects[o].key;
        let range = chain[0].offset..chain[chain.len() - 1].range().end;
        let bytes = super::parts::read_range(store, key, &self.objects[o].index, range.clone())
            .ctx(format!("read page {pgno}"))?;
        self.decode(o, &chain, &bytes, range.start)
    }

    /// The image of `pgno` if the page cache has it (no request).
    pub fn cached(&self, pgno: PageNo) -> Option<Bytes> {
        let &(o, e) = self.locs.get(pgno.0 as usize).filter(|l| **l != NOWHERE)?;
        let page = CACHE.get(&self.cache_key(o, e))?;
        METRICS.page_cache_hits.inc();
        Some(page)
    }

    /// `first` and the pages after it, up to `max` in all, as far as they lie
    /// back to back in the same object as full images: one ranged GET
    /// (read-ahead for sequential scans). At least `first` is returned.
    pub fn read_run(
        &self,
        store: &dyn ObjectStore,
        first: PageNo,
        max: u32,
    ) -> Result<Vec<(PageNo, Vec<u8>)>> {
        let &(o, e) = self
            .locs
            .get(first.0 as usize)
            .filter(|l| **l != NOWHERE)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "page {first} is not in the database at txid {} ({} pages)",
                    self.txid, self.db_pages
                ))
            })?;
        let idx = &self.objects[o as usize].index;
        let mut n = 1;
        // Consecutive pages in consecutive entries of one object are back to
        // back in it; a delta starts a chain of its own.
        while n < max
            && !idx.pages[e as usize].delta
            && self.locs.get((first.0 + n) as usize) == Some(&(o, e + n))
            && idx.pages.get((e + n) as usize).is_some_and(|p| !p.delta)
        {
            n += 1;
        }
        METRICS.page_cache_misses.inc_by(n as u64);
        Ok(self
            .fetch_run(store, o, e, n)?
            .into_iter()
            .map(|(p, page)| (PageNo(p), page))
            .collect())
    }

    /// For bulk reads: every page of this restore point, grouped by the
    /// object that holds its image (object numbers for [`fetch_pages`](Self::fetch_pages)).
    pub fn pages_by_object(&self) -> Vec<(usize, Vec<PageNo>)> {
        let mut groups: Vec<Vec<PageNo>> = vec![Vec::new(); self.objects.len()];
        for (pgno, &(o, _)) in self.locs.iter().enumerate() {
            if o != NOWHERE.0
                && let Some(g) = groups.get_mut(o as usize)
            {
                g.push(PageNo(pgno as u32));
            }
        }
        groups.into_iter().enumerate().collect()
    }

    /// Bytes of object `o` (its virtual length, for progress).
    pub fn object_len(&self, o: usize) -> u64 {
        self.objects.get(o).map_or(0, |x| x.index.object_len())
    }

    /// Fetch object `o` whole and hand `pages` (which it must hold) to
    /// `each` as they are decoded, on several threads, as runs of
    /// consecutive pages: `each(first page, images back to back)`. A split
    /// snapshot is fetched part by part, each part decoded as it arrives
    /// (runs of up to a part); any other object with parallel ranged GETs,
    /// then decoded page by page.
    pub fn fetch_pages(
        &self,
        store: &dyn ObjectStore,
        o: usize,
        pages: &[PageNo],
        opts: &restore::Options,
        tick: &(dyn Fn(u64) + Sync),
        each: &(dyn Fn(PageNo, &[u8]) -> Result<()> + Sync),
    ) -> Result<()> {
        let obj = self
            .objects
            .get(o)
            .ok_or_else(|| Error::invalid(format!("no object {o} in this page map")))?;
        let idx = &obj.index;
        if !idx.parts.is_empty() {
            // Pages by the part their image lies in.
            let mut by_part: Vec<Vec<PageNo>> = vec![Vec::new(); idx.parts.len()];
            for &pgno in pages {
                let (_, chain) = self.chain(pgno)?;
                let at = chain[0].offset;
                let i = idx.parts.partition_point(|p| p.range().end <= at);
                if let Some(g) = by_part.get_mut(i) {
                    g.push(pgno);
                }
            }
            let ps = idx.header.page_size as usize;
            // Decode the wanted pages of a part back to back into the
            // fetching thread's scratch; hand over each stretch of
            // consecutive page numbers (`pages` is in ascending order).
            let decode = |i: usize, data: &[u8], scratch: &mut Scratch| -> Result<()> {
                let want = &by_part[i];
                if idx.part_is_raw(i) {
                    return self.hand_over_raw(o, i, want, data, each);
                }
                let buf = scratch.get(want.len() * ps);
                let mut from = 0;
                for (k, &pgno) in want.iter().enumerate() {
                    if k > from && pgno.0 != want[k - 1].0 + 1 {
                        each(want[from], &buf[from * ps..k * ps])?;
                        from = k;
                    }
                    let (o, chain) = self.chain(pgno)?;
                    let page = &mut buf[k * ps..(k + 1) * ps];
                    self.decode_into(o, &chain, data, idx.parts[i].start, page)?;
                }
                if from < want.len() {
                    each(want[from], &buf[from * ps..])?;
                }
                Ok(())
            };
            return super::parts::for_each_part(
                store,
                &obj.key,
                idx,
                opts.parallelism,
                tick,
                true,
                &decode,
            );
        }
        let data = restore::fetch(store, &obj.key, idx.object_len(), opts, tick)?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        let per = pages.len().div_ceil(threads).max(1);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = pages
                .chunks(per)
                .map(|chunk| {
                    let data = &data;
                    s.spawn(move || -> Result<()> {
                        for &pgno in chunk {
                            let (o, chain) = self.chain(pgno)?;
                            each(pgno, &self.decode(o, &chain, data, 0)?)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::corrupt("decode thread panicked")))
                })
                .collect()
        });
        results.into_iter().collect()
    }

    /// [`fetch_pages`](Self::fetch_pages) for part `i` of object `o` when
    /// it [is raw](segment::SegmentIndex::part_is_raw): each wanted page is
    /// checked where it lies in `data`, and each stretch of consecutive
    /// pages is handed over as a slice of `data` itself.
    fn hand_over_raw(
        &self,
        o: usize,
        i: usize,
        want: &[PageNo],
        data: &[u8],
        each: &(dyn Fn(PageNo, &[u8]) -> Result<()> + Sync),
    ) -> Result<()> {
        let obj = &self.objects[o];
        let idx = &obj.index;
        let ps = idx.header.page_size as usize;
        let start = idx.parts[i].start;
        // The stretch so far: its first page and where it starts in `data`.
        let mut stretch: Option<(PageNo, usize)> = None;
        let mut end = 0;
        for &pgno in want {
            let (_, chain) = self.chain(pgno)?;
            let e = chain[0];
            let at = (e.offset - start) as usize;
            let image = data.get(at..at + ps).ok_or_else(|| {
                Error::corrupt(format!("{}: page {pgno} lies outside part {i}", obj.key))
            })?;
            idx.check_image(e, image).ctx(&obj.key)?;
            match stretch {
                Some((first, a)) if at == end && pgno.0 == first.0 + ((end - a) / ps) as u32 => {}
                Some((first, a)) => {
                    each(first, &data[a..end])?;
                    stretch = Some((pgno, at));
                }
                None => stretch = Some((pgno, at)),
            }
            end = at + ps;
        }
        if let Some((first, a)) = stretch {
            each(first, &data[a..end])?;
        }
        Ok(())
    }

    /// The object holding `pgno` and the entries to decode, base image
    /// first: a page stored as a delta needs the earlier entries of the same
    /// page in that object, back to a full image.
    fn chain(&self, pgno: PageNo) -> Result<(usize, Vec<&segment::PageEntry>)> {
        let &(o, e) = self
            .locs
            .get(pgno.0 as usize)
            .filter(|l| **l != NOWHERE)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "page {pgno} is not in the database at txid {} ({} pages)",
                    self.txid, self.db_pages
                ))
            })?;
        let obj = &self.objects[o as usize];
        let idx = &obj.index;
        let entry = &idx.pages[e as usize];
        let mut chain = vec![entry];
        if entry.delta {
            for prev in idx.pages[..e as usize]
                .iter()
                .rev()
                .filter(|p| p.pgno == pgno)
            {
                chain.push(prev);
                if !prev.delta {
                    break;
                }
            }
            if chain.last().is_some_and(|p| p.delta) {
                return Err(Error::corrupt(format!(
                    "{}: page {pgno} has a delta without a base",
                    obj.key
                )));
            }
        }
        chain.reverse();
        Ok((o as usize, chain))
    }

    /// Decode a chain from `bytes`, which hold the object from offset `start`.
    fn decode(
        &self,
        o: usize,
        chain: &[&segment::PageEntry],
        bytes: &[u8],
        start: u64,
    ) -> Result<Vec<u8>> {
        let mut page = vec![0u8; self.objects[o].index.header.page_size as usize];
        self.decode_into(o, chain, bytes, start, &mut page)?;
        Ok(page)
    }

    /// [`decode`](Self::decode) into `page` (one page long).
    fn decode_into(
        &self,
        o: usize,
        chain: &[&segment::PageEntry],
        bytes: &[u8],
        start: u64,
        page: &mut [u8],
    ) -> Result<()> {
        let obj = &self.objects[o];
        let idx = &obj.index;
        let mut next = Vec::new();
        for (i, c) in chain.iter().enumerate() {
            let r = c.range();
            let stored = r
                .start
                .checked_sub(start)
                .and_then(|a| bytes.get(a as usize..(r.end - start) as usize))
                .ok_or_else(|| {
                    Error::corrupt(format!("{}: short read of page {}", obj.key, c.pgno))
                })?;
            if i == 0 {
                idx.page_into(c, stored, page).ctx(&obj.key)?;
            } else {
                next.resize(page.len(), 0);
                idx.page_into_with_base(c, stored, page, &mut next)
                    .ctx(&obj.key)?;
                page.copy_from_slice(&next);
            }
        }
        Ok(())
    }
}

/// A hot-pages object's pages, each decoded and checked (a raw page shares
/// the object's memory); an unreadable object or page is skipped with a
/// warning (cold reads fetch those pages).
fn decode_hot(key: &str, hot: Bytes) -> Vec<(segment::PageEntry, Bytes)> {
    let seg = match segment::decode_bytes(hot) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, object = %key, "ignoring unreadable hot pages");
            return Vec::new();
        }
    };
    seg.index
        .pages
        .iter()
        .filter_map(|entry| Some((*entry, seg.page_shared(entry).ok()?)))
        .collect()
}

/// An object's header and index, usually with one ranged GET.
fn fetch_index(store: &dyn ObjectStore, key: &str, hint: Option<u64>) -> Result<SegmentIndex> {
    // The manifest records the index length of the objects it names: then
    // one GET reads exactly the index; otherwise guess, and read on if short.
    let first = store
        .get_range(key, 0..hint.unwrap_or(INDEX_GUESS))
        .ctx(format!("read index of {key}"))?;
    let header = SegmentHeader::decode(&first[..first.len().min(HEADER_LEN)]).ctx(key)?;
    let need = header.prefix_len();
    let prefix = if (first.len() as u64) >= need {
        first
    } else {
        store
            .get_range(key, 0..need)
            .ctx(format!("read index of {key}"))?
    };
    SegmentIndex::decode(&prefix).ctx(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::Store;
    use crate::bucket::memory::MemoryStore;
    use std::sync::Arc;

    /// A 40-row database of 1 KiB pages imported into a memory bucket: the
    /// store, its keys and the file's bytes.
    fn imported() -> (Store, DbKeys, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        let c = rusqlite::Connection::open(&src).unwrap();
        c.execute_batch(
            "PRAGMA page_size=1024; CREATE TABLE t(x); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 40) \
             INSERT INTO t SELECT randomblob(300) FROM n;",
        )
        .unwrap();
        drop(c);
        let file = std::fs::read(&src).unwrap();
        let store: Store = Arc::new(MemoryStore::new());
        let keys = DbKeys::new("acme", "data.db").unwrap();
        crate::engine::import::import(&store, &keys, &src).unwrap();
        (store, keys, file)
    }

    #[test]
    fn read_at_spans_pages_and_stops_at_the_end() {
        let (store, keys, file) = imported();
        let map = PageMap::build(store.as_ref(), &keys, Target::Latest).unwrap();
        assert_eq!(map.size(), file.len() as u64);
        // A range across three pages, one at the very end, one past it.
        let mut buf = vec![0u8; 2500];
        assert_eq!(map.read_at(store.as_ref(), 1000, &mut buf).unwrap(), 2500);
        assert_eq!(buf, file[1000..3500]);
        let tail = file.len() as u64 - 10;
        assert_eq!(map.read_at(store.as_ref(), tail, &mut buf).unwrap(), 10);
        assert_eq!(buf[..10], file[tail as usize..]);
        assert_eq!(
            map.read_at(store.as_ref(), file.len() as u64, &mut buf)
                .unwrap(),
            0
        );
    }

    #[test]
    fn changed_since_names_rewritten_pages_and_the_tail() {
        let (store, keys, _) = imported();
        let a = PageMap::build(store.as_ref(), &keys, Target::Latest).unwrap();
        assert!(a.changed_since(&a).is_empty());
        let b = PageMap::build(store.as_ref(), &keys, Target::Latest).unwrap();
        assert!(b.changed_since(&a).is_empty(), "same point, same pages");
        // A map that is shorter (by hand): the tail counts as changed both ways.
        let mut short = PageMap::build(store.as_ref(), &keys, Target::Latest).unwrap();
        short.db_pages -= 3;
        short.locs.truncate(short.db_pages as usize + 1);
        let tail: Vec<PageNo> = (short.db_pages + 1..=a.db_pages).map(PageNo).collect();
        assert_eq!(a.changed_since(&short), tail);
        assert_eq!(short.changed_since(&a), tail);
        // A page held by another entry is changed.
        let mut moved = PageMap::build(store.as_ref(), &keys, Target::Latest).unwrap();
        moved.locs[5] = moved.locs[6];
        assert_eq!(moved.changed_since(&a), vec![PageNo(5)]);
    }

    /// A page stored as a delta, right before the next page's entry in the
    /// same segment: a long read fetches the delta with its chain and the
    /// next page on its own (they once shared a run, and the delta was
    /// decoded as if it were an image).
    #[test]
    fn a_long_read_resolves_a_delta_next_to_another_page() {
        use crate::format::manifest::SegmentRef;
        use crate::format::segment::{SegmentKind, SegmentMeta, TxnPages};
        use crate::types::Millis;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        rusqlite::Connection::open(&src)
            .unwrap()
            .execute_batch("PRAGMA page_size=1024; CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(2000));")
            .unwrap();
        let mut want = std::fs::read(&src).unwrap();
        let db_pages = (want.len() / 1024) as u32;
        assert!(db_pages >= 3);
        let store: Store = Arc::new(MemoryStore::new());
        let keys = DbKeys::new("acme", "data.db").unwrap();
        crate::engine::import::import(&store, &keys, &src).unwrap();
        let mut m = restore::read_manifest(store.as_ref(), &keys).unwrap();
        // txn 2 rewrites page 2; txn 3 changes a few bytes of it (a delta)
        // and rewrites page 3.
        let page = |n: usize| Bytes::copy_from_slice(&want[(n - 1) * 1024..n * 1024]);
        let mut a = page(2).to_vec();
        a[500..520].fill(7);
        let mut b = a.clone();
        b[600..604].fill(9);
        let mut c = page(3).to_vec();
        c.fill(3);
        let txn = |txid: u64, pages: Vec<(u32, Vec<u8>)>| TxnPages {
            txid: TxId(txid),
            commit: Millis(m.head_commit.0 + txid),
            db_pages,
            pages: pages
                .into_iter()
                .map(|(n, p)| (PageNo(n), Bytes::from(p)))
                .collect(),
        };
        let txns = [
            txn(2, vec![(2, a)]),
            txn(3, vec![(2, b.clone()), (3, c.clone())]),
        ];
        let meta = SegmentMeta {
            db_id: m.db_id,
            epoch: m.epoch,
            page_size: 1024,
            kind: SegmentKind::Segment,
        };
        let body = segment::encode(&meta, &txns).unwrap();
        let idx = SegmentIndex::decode(&body).unwrap();
        assert!(idx.pages[1].delta && !idx.pages[2].delta, "{:?}", idx.pages);
        let key = keys.segment(TxId(2), TxId(3), m.epoch, txns[1].commit);
        store.put(&key, body.clone()).unwrap();
        m.segments.push(SegmentRef {
            first: TxId(2),
            last: TxId(3),
            first_commit: txns[0].commit,
            last_commit: txns[1].commit,
            epoch: m.epoch,
            key,
            size: body.len() as u64,
            prefix: None,
        });
        m.head = TxId(3);
        m.head_commit = txns[1].commit;
        store.put(&keys.manifest(), m.to_bytes()).unwrap();
        want[1024..2048].copy_from_slice(&b);
        want[2048..3072].copy_from_slice(&c);
        let map = PageMap::build(store.as_ref(), &keys, Target::Latest).unwrap();
        let mut got = vec![0u8; want.len()];
        assert_eq!(
            map.read_at(store.as_ref(), 0, &mut got).unwrap(),
            want.len()
        );
        assert!(got == want, "the long read differs");
    }

    #[test]
    fn the_page_cache_never_answers_for_another_bucket() {
        // Two buckets holding one key: a page cached from the first is never
        // the answer for the second, where that object is damaged.
        let (a, keys, file) = imported();
        let map_a = PageMap::build(a.as_ref(), &keys, Target::Latest).unwrap();
        let pgno = PageNo(3);
        let page = map_a.read_page_cached(a.as_ref(), pgno).unwrap();
        assert_eq!(page[..], file[2048..3072]);
        assert!(map_a.cached(pgno).is_some());

        let b: Store = Arc::new(MemoryStore::new());
        for o in a.list("").unwrap() {
            b.put(&o.key, a.get(&o.key).unwrap().data).unwrap();
        }
        let &(o, e) = map_a.locs.get(pgno.0 as usize).unwrap();
        let object = &map_a.objects[o as usize];
        let mut bad = a.get(&object.key).unwrap().data.to_vec();
        bad[object.index.pages[e as usize].offset as usize + 10] ^= 0x40;
        b.put(&object.key, bad.into()).unwrap();

        let map_b = PageMap::build(b.as_ref(), &keys, Target::Latest).unwrap();
        assert!(map_b.cached(pgno).is_none(), "a hit from another bucket");
        let err = map_b.read_page_cached(b.as_ref(), pgno).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
    }
}
