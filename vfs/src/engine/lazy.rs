//! A local copy that is filled on demand: opening a database that is not on
//! this node downloads nothing. The local file is created sparse at its full
//! size; a page is fetched from the bucket (one ranged GET, `pages.rs`) the
//! first time SQLite reads it, written into the file, and marked present in
//! `<db>-strata/lazy.bitmap`. Pages SQLite writes itself (checkpoints) are
//! marked present too. `hydrate` fills the rest with a bulk parallel restore.
//!
//! Invariant: a page is written from the bucket only while it is not
//! present, under the same lock as SQLite's own writes mark it present, so
//! a fetched (older) image can never overwrite a newer local one.

use super::pages::PageMap;
use super::restore::{self, Target};
use crate::bucket::Store;
use crate::error::{Error, IoResultExt, Result};
use crate::format::keys::DbKeys;
use crate::format::manifest::Manifest;
use crate::types::{PageNo, TxId};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const BITMAP: &str = "lazy.bitmap";

pub struct LazyFile {
    /// Where missing pages are; `None` while the copy was opened with the
    /// bucket unreachable (built on the first miss once it answers).
    map: parking_lot::RwLock<Option<Arc<PageMap>>>,
    /// The restore point the copy is based on (for building the map late).
    base: TxId,
    keys: DbKeys,
    page_size: u32,
    db_pages: u32,
    store: Store,
    db: File,
    bitmap_path: PathBuf,
    present: Mutex<Present>,
    complete: AtomicBool,
    readahead: Mutex<Readahead>,
}

/// An incomplete copy's bitmap (path, bits) and file, if it is incomplete.
fn open_partial(path: &Path, dir: &Path) -> Result<Option<(PathBuf, Vec<u8>, File)>> {
    let bitmap_path = dir.join(BITMAP);
    let bits = match std::fs::read(&bitmap_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read lazy bitmap", e)),
    };
    let db = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .io_ctx(format!("open {}", path.display()))?;
    Ok(Some((bitmap_path, bits, db)))
}

/// Size and base of a local copy.
struct Geometry {
    base: TxId,
    page_size: u32,
    db_pages: u32,
}

/// Sequential-miss detection: a miss right after the last fetched page
/// doubles the window (up to [`Readahead::MAX`] pages in one GET); any other
/// miss starts over with one page.
#[derive(Default)]
struct Readahead {
    last: u32,
    window: u32,
}

impl Readahead {
    const MAX: u32 = 256;

    fn window(&mut self, pgno: u32) -> u32 {
        self.window = if self.last != 0 && pgno == self.last + 1 {
            (self.window * 2).clamp(8, Self::MAX)
        } else {
            1
        };
        self.window
    }

    fn fetched(&mut self, last: u32) {
        self.last = last;
    }
}

struct Present {
    bits: Vec<u8>,
    file: File,
    missing: u64,
}

impl Present {
    fn get(&self, pgno: u32) -> bool {
        let i = (pgno - 1) as usize;
        self.bits
            .get(i / 8)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }
    fn set(&mut self, pgno: u32) {
        if self.set_in_memory(pgno) {
            let i = (pgno - 1) as usize / 8;
            // Best effort: a lost bit only means a page is fetched again.
            let _ = self.file.write_all_at(&self.bits[i..i + 1], i as u64);
        }
    }

    /// Set a bit without writing it out (bulk updates write the bitmap once).
    fn set_in_memory(&mut self, pgno: u32) -> bool {
        let i = (pgno - 1) as usize;
        match self.bits.get_mut(i / 8) {
            Some(b) if *b & (1 << (i % 8)) == 0 => {
                *b |= 1 << (i % 8);
                self.missing -= 1;
                true
            }
            _ => false,
        }
    }
}

impl LazyFile {
    /// Replace the local copy with an empty sparse file of the bucket's
    /// latest state.
    /// `manifest`, if the caller just read it, saves reading it again.
    pub fn create(
        path: &Path,
        dir: &Path,
        store: &Store,
        keys: &DbKeys,
        manifest: Option<&Manifest>,
    ) -> Result<LazyFile> {
        let map = PageMap::build_with(store.as_ref(), keys, Target::Latest, manifest)?;
        let db = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .io_ctx(format!("create {}", path.display()))?;
        db.set_len(map.db_pages as u64 * map.page_size as u64)
            .io_ctx("size local copy")?;
        let bitmap_path = dir.join(BITMAP);
        let bits = vec![0u8; (map.db_pages as usize).div_ceil(8)];
        std::fs::write(&bitmap_path, &bits).io_ctx("create lazy bitmap")?;
        Self::with(map, keys, store, db, bitmap_path, bits)
    }

    /// Resume a copy that was not fully filled before the last close.
    pub fn reopen(
        path: &Path,
        dir: &Path,
        store: &Store,
        keys: &DbKeys,
    ) -> Result<Option<LazyFile>> {
        let Some((bitmap_path, mut bits, db)) = open_partial(path, dir)? else {
            return Ok(None);
        };
        let map = PageMap::build(store.as_ref(), keys, Target::Latest)?;
        bits.resize((map.db_pages as usize).div_ceil(8).max(bits.len()), 0);
        Self::with(map, keys, store, db, bitmap_path, bits).map(Some)
    }

    /// Resume an incomplete copy while the bucket is unreachable: the pages
    /// it has are served; a missing page fails (`Unavailable`) until the
    /// bucket answers, then the map of `base` (the head this node last saw:
    /// the state its missing pages belong to) is built on the next miss.
    pub fn reopen_offline(
        path: &Path,
        dir: &Path,
        store: &Store,
        keys: &DbKeys,
        base: TxId,
        page_size: u32,
    ) -> Result<Option<LazyFile>> {
        let Some((bitmap_path, mut bits, db)) = open_partial(path, dir)? else {
            return Ok(None);
        };
        let len = db.metadata().io_ctx("stat local copy")?.len();
        if page_size == 0 || len % page_size as u64 != 0 {
            return Err(Error::corrupt(format!(
                "{}: size {len} is not a whole number of {page_size}-byte pages",
                path.display()
            )));
        }
        let db_pages = (len / page_size as u64) as u32;
        bits.resize((db_pages as usize).div_ceil(8).max(bits.len()), 0);
        let geometry = Geometry {
            base,
            page_size,
            db_pages,
        };
        Self::assemble(None, geometry, keys, store, db, bitmap_path, bits).map(Some)
    }

    fn with(
        map: PageMap,
        keys: &DbKeys,
        store: &Store,
        db: File,
        bitmap_path: PathBuf,
        bits: Vec<u8>,
    ) -> Result<LazyFile> {
        let geometry = Geometry {
            base: map.txid,
            page_size: map.page_size,
            db_pages: map.db_pages,
        };
        Self::assemble(
            Some(Arc::new(map)),
            geometry,
            keys,
            store,
            db,
            bitmap_path,
            bits,
        )
    }

    fn assemble(
        map: Option<Arc<PageMap>>,
        g: Geometry,
        keys: &DbKeys,
        store: &Store,
        db: File,
        bitmap_path: PathBuf,
        bits: Vec<u8>,
    ) -> Result<LazyFile> {
        let file = OpenOptions::new()
            .write(true)
            .open(&bitmap_path)
            .io_ctx("open lazy bitmap")?;
        let mut present = Present {
            bits,
            file,
            missing: 0,
        };
        present.missing = (1..=g.db_pages).filter(|&p| !present.get(p)).count() as u64;
        let lazy = LazyFile {
            map: parking_lot::RwLock::new(map),
            base: g.base,
            keys: keys.clone(),
            page_size: g.page_size,
            db_pages: g.db_pages,
            store: store.clone(),
            db,
            bitmap_path,
            present: Mutex::new(present),
            complete: AtomicBool::new(false),
            readahead: Mutex::new(Readahead::default()),
        };
        lazy.finish_if_complete(&mut lazy.present.lock());
        Ok(lazy)
    }

    /// The page map, built now if the copy was opened offline.
    fn map(&self) -> Result<Arc<PageMap>> {
        if let Some(m) = self.map.read().as_ref() {
            return Ok(m.clone());
        }
        let built = PageMap::build(self.store.as_ref(), &self.keys, Target::TxId(self.base))
            .map_err(|e| {
                e.context(format!(
                    "a page of {} is not on this node and the bucket cannot be read",
                    self.keys.root()
                ))
            })?;
        let built = Arc::new(built);
        *self.map.write() = Some(built.clone());
        tracing::info!(txid = %self.base, "bucket reachable again: missing pages can be fetched");
        Ok(built)
    }

    pub fn missing_pages(&self) -> u64 {
        self.present.lock().missing
    }

    fn finish_if_complete(&self, p: &mut Present) {
        if p.missing == 0 && !self.complete.swap(true, Ordering::AcqRel) {
            let _ = std::fs::remove_file(&self.bitmap_path);
            tracing::info!("local copy complete: every page is on this node");
        }
    }

    /// Pages `[offset, offset + len)` are about to be read: fetch the ones
    /// this node does not have.
    pub fn ensure(&self, offset: u64, len: usize) -> Result<()> {
        if self.complete.load(Ordering::Acquire) || len == 0 {
            return Ok(());
        }
        let ps = self.page_size as u64;
        let first = offset / ps + 1;
        let last = ((offset + len as u64 - 1) / ps + 1).min(self.db_pages as u64);
        for pgno in first..=last {
            let pgno = pgno as u32;
            if self.present.lock().get(pgno) {
                continue;
            }
            // Fetch without the lock (it may take a round trip)...
            let map = self.map()?;
            let cached = map.cached(PageNo(pgno));
            let window = match cached {
                Some(_) => 1,
                None => self.readahead.lock().window(pgno),
            };
            let pages = if let Some(page) = cached {
                vec![(PageNo(pgno), page.to_vec())]
            } else if window > 1 {
                map.read_run(self.store.as_ref(), PageNo(pgno), window)?
            } else {
                let page = map.read_page_cached(self.store.as_ref(), PageNo(pgno))?;
                vec![(PageNo(pgno), page.to_vec())]
            };
            // ...and write only what SQLite did not write meanwhile.
            let mut p = self.present.lock();
            for (n, page) in &pages {
                if !p.get(n.0) {
                    self.db
                        .write_all_at(page, n.offset(self.page_size))
                        .io_ctx("write fetched page")?;
                    p.set(n.0);
                }
            }
            self.finish_if_complete(&mut p);
            if let Some((n, _)) = pages.last() {
                self.readahead.lock().fetched(n.0);
            }
        }
        Ok(())
    }

    /// SQLite writes `[offset, offset + len)` itself: run `write` under the
    /// lock and mark the pages present (their local image is now newer).
    pub fn write_through<T>(&self, offset: u64, len: usize, write: impl FnOnce() -> T) -> T {
        if self.complete.load(Ordering::Acquire) {
            return write();
        }
        let ps = self.page_size as u64;
        let mut p = self.present.lock();
        let out = write();
        if len > 0 {
            for pgno in
                offset / ps + 1..=((offset + len as u64 - 1) / ps + 1).min(self.db_pages as u64)
            {
                p.set(pgno as u32);
            }
        }
        self.finish_if_complete(&mut p);
        out
    }

    /// Fetch every missing page. Each object holding some is read whole
    /// with parallel ranged GETs (as a restore reads it); its missing pages
    /// are decoded on several threads and written straight into the local
    /// copy: each exactly once, never over a page SQLite or an earlier fetch
    /// already put there. Returns how many pages were written.
    pub fn hydrate(&self, progress: Option<restore::ProgressFn>) -> Result<u64> {
        if self.complete.load(Ordering::Acquire) {
            return Ok(0);
        }
        let map = self.map()?;
        let todo: Vec<_> = map
            .pages_by_object()
            .into_iter()
            .filter_map(|(o, pages)| {
                let p = self.present.lock();
                let missing: Vec<PageNo> = pages.into_iter().filter(|g| !p.get(g.0)).collect();
                (!missing.is_empty()).then_some((o, missing))
            })
            .collect();
        let total: u64 = todo.iter().map(|(o, _)| map.object_len(*o)).sum();
        let done = AtomicU64::new(0);
        let tick = |n: u64| {
            let d = done.fetch_add(n, Ordering::Relaxed) + n;
            if let Some(p) = &progress {
                p(d, total)
            }
        };
        let opts = restore::Options::default();
        let filled = AtomicU64::new(0);
        // Write the pages of a run that are still missing (checked under the
        // lock), each stretch of them with one write, around the page cache
        // where possible (`direct.rs`).
        let ps = self.page_size as usize;
        let direct = super::direct::DirectWriter::for_file(&self.db, self.page_size);
        let write = |first: PageNo, pages: &[u8]| -> Result<()> {
            let n = (pages.len() / ps) as u32;
            let mut p = self.present.lock();
            let mut k = 0;
            while k < n {
                if p.get(first.0 + k) {
                    k += 1;
                    continue;
                }
                let start = k;
                while k < n && !p.get(first.0 + k) {
                    k += 1;
                }
                super::direct::write_pages(
                    &self.db,
                    direct.as_ref(),
                    &pages[start as usize * ps..k as usize * ps],
                    PageNo(first.0 + start).offset(self.page_size),
                )
                .io_ctx("write page")?;
                // Present only once written: a failed write leaves them missing.
                for g in start..k {
                    p.set_in_memory(first.0 + g);
                }
                filled.fetch_add((k - start) as u64, Ordering::Relaxed);
            }
            Ok(())
        };
        for (o, missing) in todo {
            map.fetch_pages(self.store.as_ref(), o, &missing, &opts, &tick, &write)?;
        }
        let filled = filled.into_inner();
        self.db.sync_data().io_ctx("sync local copy")?;
        let mut p = self.present.lock();
        p.file
            .write_all_at(&p.bits, 0)
            .io_ctx("write lazy bitmap")?;
        self.finish_if_complete(&mut p);
        Ok(filled)
    }
}
