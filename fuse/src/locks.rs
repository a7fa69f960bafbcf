//! POSIX record locks (`fcntl` F_SETLK/F_GETLK), which the kernel forwards
//! here (FUSE_POSIX_LOCKS): a table per inode of the byte ranges each lock
//! owner (a process, as the kernel names it) holds. A live database file
//! moves to a newer state only while its table is empty (db_file.rs); other
//! files only need the conflicts answered.
//!
//! Ranges are inclusive (`start..=end`), as the kernel sends them; `end` is
//! `u64::MAX`-ish (OFFSET_MAX) for "to the end of the file". No request
//! ever waits here: a conflicting one (F_SETLKW too) gets EAGAIN.

use fuser::Errno;
use std::collections::HashMap;

/// Sorted, disjoint, non-adjacent inclusive byte ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn add(&mut self, start: u64, end: u64) {
        let (mut s, mut e) = (start, end.max(start));
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.0 {
            if b.saturating_add(1) < s {
                out.push((a, b));
            } else if e.saturating_add(1) < a {
                if !placed {
                    out.push((s, e));
                    placed = true;
                }
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        if !placed {
            out.push((s, e));
        }
        self.0 = out;
    }

    pub fn remove(&mut self, start: u64, end: u64) {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < start || a > end {
                out.push((a, b));
                continue;
            }
            if a < start {
                out.push((a, start - 1));
            }
            if b > end {
                out.push((end + 1, b));
            }
        }
        self.0 = out;
    }

    /// The first held range that overlaps `start..=end`.
    pub fn overlapping(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        self.0
            .iter()
            .find(|&&(a, b)| a <= end && b >= start)
            .copied()
    }
}

#[derive(Debug, Default)]
struct Held {
    pid: u32,
    read: Ranges,
    write: Ranges,
}

/// The locks held on one inode, by lock owner.
#[derive(Debug, Default)]
pub struct Locks {
    owners: HashMap<u64, Held>,
}

/// A lock another owner holds: (start, end, type, pid), as F_GETLK reports it.
pub type Conflict = (u64, u64, i32, u32);

impl Locks {
    /// Whether no owner holds any lock.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// A lock of another owner that a lock of type `typ` (F_RDLCK or
    /// F_WRLCK) by `owner` over `start..=end` would conflict with.
    pub fn conflict(&self, owner: u64, start: u64, end: u64, typ: i32) -> Option<Conflict> {
        // The lowest conflicting range, so the answer does not depend on
        // the map's iteration order.
        self.owners
            .iter()
            .filter(|(o, _)| **o != owner)
            .filter_map(|(_, h)| {
                let write = h
                    .write
                    .overlapping(start, end)
                    .map(|(a, b)| (a, b, libc::F_WRLCK, h.pid));
                let read = (typ == libc::F_WRLCK)
                    .then(|| h.read.overlapping(start, end))
                    .flatten()
                    .map(|(a, b)| (a, b, libc::F_RDLCK, h.pid));
                match (write, read) {
                    (Some(w), Some(r)) => Some(if r.0 < w.0 { r } else { w }),
                    (w, r) => w.or(r),
                }
            })
            .min_by_key(|c| (c.0, c.3))
    }

    /// F_SETLK: take (F_RDLCK, F_WRLCK) or release (F_UNLCK) `start..=end`
    /// for `owner`. A lock replaces whatever the owner held there (POSIX:
    /// a read lock over a write lock downgrades it, and back).
    pub fn set(
        &mut self,
        owner: u64,
        pid: u32,
        start: u64,
        end: u64,
        typ: i32,
    ) -> Result<(), Errno> {
        match typ {
            libc::F_UNLCK => {
                if let Some(h) = self.owners.get_mut(&owner) {
                    h.read.remove(start, end);
                    h.write.remove(start, end);
                    if h.read.is_empty() && h.write.is_empty() {
                        self.owners.remove(&owner);
                    }
                }
                Ok(())
            }
            libc::F_RDLCK | libc::F_WRLCK => {
                if self.conflict(owner, start, end, typ).is_some() {
                    return Err(Errno::EAGAIN);
                }
                let h = self.owners.entry(owner).or_default();
                h.pid = pid;
                if typ == libc::F_RDLCK {
                    h.write.remove(start, end);
                    h.read.add(start, end);
                } else {
                    h.read.remove(start, end);
                    h.write.add(start, end);
                }
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Everything `owner` holds goes (it closed a descriptor of the file:
    /// POSIX drops all of the process's locks on it).
    pub fn drop_owner(&mut self, owner: u64) {
        self.owners.remove(&owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), Errno>) -> i32 {
        r.err().map_or(0, |e| e.code())
    }

    /// SQLite's bytes: PENDING, RESERVED, SHARED.
    const PENDING: u64 = 0x4000_0000;
    const SHARED: (u64, u64) = (PENDING + 2, PENDING + 511);

    #[test]
    fn ranges_merge_split_and_overlap() {
        let mut r = Ranges::default();
        r.add(10, 19);
        r.add(30, 39);
        r.add(20, 29); // adjacent on both sides: one range
        assert_eq!(r, Ranges(vec![(10, 39)]));
        r.remove(15, 24); // a hole in the middle
        assert_eq!(r, Ranges(vec![(10, 14), (25, 39)]));
        assert_eq!(r.overlapping(0, 9), None);
        assert_eq!(r.overlapping(14, 30), Some((10, 14)));
        assert_eq!(r.overlapping(15, 24), None);
        r.add(0, 5);
        r.add(100, u64::MAX);
        assert_eq!(r, Ranges(vec![(0, 5), (10, 14), (25, 39), (100, u64::MAX)]));
        r.remove(0, u64::MAX);
        assert!(r.is_empty());
        // A range added before all others, and one that swallows several.
        r.add(50, 60);
        r.add(70, 80);
        r.add(1, 2);
        assert_eq!(r, Ranges(vec![(1, 2), (50, 60), (70, 80)]));
        r.add(40, 90);
        assert_eq!(r, Ranges(vec![(1, 2), (40, 90)]));
    }

    #[test]
    fn a_sqlite_read_transaction_leaves_nothing_behind() {
        let mut l = Locks::default();
        // unixLock(SHARED): PENDING, then the SHARED range, then PENDING off.
        l.set(7, 100, PENDING, PENDING, libc::F_RDLCK).unwrap();
        l.set(7, 100, SHARED.0, SHARED.1, libc::F_RDLCK).unwrap();
        l.set(7, 100, PENDING, PENDING, libc::F_UNLCK).unwrap();
        assert!(!l.is_empty());
        // Another process reads at the same time: read locks never conflict.
        l.set(8, 200, PENDING, PENDING, libc::F_RDLCK).unwrap();
        l.set(8, 200, SHARED.0, SHARED.1, libc::F_RDLCK).unwrap();
        l.set(8, 200, PENDING, PENDING, libc::F_UNLCK).unwrap();
        // A writer would be refused, and F_GETLK names a holder.
        assert_eq!(
            code(l.set(9, 300, SHARED.0, SHARED.1, libc::F_WRLCK)),
            libc::EAGAIN
        );
        let c = l
            .conflict(9, PENDING, PENDING + 600, libc::F_WRLCK)
            .unwrap();
        assert_eq!((c.0, c.1, c.2), (SHARED.0, SHARED.1, libc::F_RDLCK));
        assert!(l.conflict(9, 0, u64::MAX, libc::F_RDLCK).is_none());
        // unixUnlock(NO_LOCK): the whole file.
        l.set(7, 100, 0, u64::MAX, libc::F_UNLCK).unwrap();
        assert!(!l.is_empty(), "owner 8 still reads");
        // A partial unlock keeps the rest.
        l.set(8, 200, SHARED.0, SHARED.0 + 10, libc::F_UNLCK)
            .unwrap();
        assert!(!l.is_empty());
        l.drop_owner(8);
        assert!(l.is_empty());
    }

    #[test]
    fn an_owner_never_conflicts_with_itself() {
        let mut l = Locks::default();
        l.set(1, 1, 0, 99, libc::F_WRLCK).unwrap();
        l.set(1, 1, 50, 59, libc::F_RDLCK).unwrap(); // downgrade part
        assert_eq!(
            code(l.set(2, 2, 55, 55, libc::F_RDLCK)),
            0,
            "read under a read"
        );
        assert_eq!(code(l.set(2, 2, 10, 10, libc::F_RDLCK)), libc::EAGAIN);
        assert_eq!(code(l.set(1, 1, 0, 0, 99)), libc::EINVAL);
    }
}
