//! Bulk page writes that bypass the page cache.
//!
//! Restore and hydrate write whole runs of pages into a file whose holes
//! they fill (a lazy copy is a sparse file; a restore writes parts in the
//! order they arrive). On this project's ext4, filling holes through the
//! page cache runs at ~350 MB/s, and with `O_DIRECT` at ~1.2 GB/s
//! (`docs/benchmarks.md`). Durability is unchanged: callers still fsync.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

/// A second, `O_DIRECT` handle on an open file.
pub(crate) struct DirectWriter(File);

impl DirectWriter {
    /// Direct I/O needs buffers, offsets and lengths aligned to the logical
    /// block size; 4 KiB covers every common device.
    const ALIGN: usize = 4096;

    /// A direct handle on `file` (a new open file description, so `file`'s
    /// own flags are untouched), if pages of `page_size` are aligned and the
    /// file system supports direct I/O; `None` means: write through `file`.
    pub(crate) fn for_file(file: &File, page_size: u32) -> Option<DirectWriter> {
        if !(page_size as usize).is_multiple_of(Self::ALIGN) {
            return None;
        }
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .ok()
            .map(DirectWriter)
    }

    /// Write whole pages at a page-aligned offset. Bytes from a [`Scratch`]
    /// go straight to the device; others are copied to an aligned buffer.
    pub(crate) fn write_all_at(&self, bytes: &[u8], at: u64) -> std::io::Result<()> {
        if aligned(bytes) {
            return self.0.write_all_at(bytes, at);
        }
        let mut copy = Scratch::default();
        let buf = copy.get(bytes.len());
        buf.copy_from_slice(bytes);
        self.0.write_all_at(buf, at)
    }
}

fn aligned(bytes: &[u8]) -> bool {
    (bytes.as_ptr() as usize).is_multiple_of(DirectWriter::ALIGN)
        && bytes.len().is_multiple_of(DirectWriter::ALIGN)
}

/// A reusable buffer that starts on a direct-I/O boundary. Bulk writers
/// decode each part into one per thread: allocating a fresh 8 MiB buffer a
/// part cost more CPU in page faults than the decoding itself
/// (`docs/benchmarks.md`).
#[derive(Default)]
pub(crate) struct Scratch {
    raw: Vec<u8>,
    skip: usize,
}

impl Scratch {
    /// `len` bytes at an aligned start. Their contents are left over from
    /// earlier use: callers overwrite every byte they write out.
    pub(crate) fn get(&mut self, len: usize) -> &mut [u8] {
        if self.raw.len() < self.skip + len {
            self.raw = vec![0u8; len + DirectWriter::ALIGN];
            self.skip = self.raw.as_ptr().align_offset(DirectWriter::ALIGN);
        }
        &mut self.raw[self.skip..self.skip + len]
    }
}

/// Write `bytes` at `at` through `direct` if there is one, else `file`.
pub(crate) fn write_pages(
    file: &File,
    direct: Option<&DirectWriter>,
    bytes: &[u8],
    at: u64,
) -> std::io::Result<()> {
    match direct.map(|d| d.write_all_at(bytes, at)) {
        Some(Ok(())) => Ok(()),
        // A file system that opens with O_DIRECT but refuses the write
        // (EINVAL): the same bytes through the page cache.
        Some(Err(e)) if e.raw_os_error() == Some(libc::EINVAL) => file.write_all_at(bytes, at),
        Some(Err(e)) => Err(e),
        None => file.write_all_at(bytes, at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn direct_and_buffered_writes_land_in_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("f"))
            .unwrap();
        f.set_len(5 * 4096).unwrap();
        let d = DirectWriter::for_file(&f, 4096);
        assert!(DirectWriter::for_file(&f, 1024).is_none());
        let pages: Vec<u8> = (0..2 * 4096).map(|i| (i % 251) as u8).collect();
        write_pages(&f, d.as_ref(), &pages, 3 * 4096).unwrap();
        write_pages(&f, None, &[7u8; 4096], 0).unwrap();
        let mut back = vec![0u8; 5 * 4096];
        f.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back[3 * 4096..], &pages[..]);
        assert_eq!(&back[..4096], &[7u8; 4096][..]);
        assert!(back[4096..3 * 4096].iter().all(|&b| b == 0));
    }

    #[test]
    fn scratch_is_aligned_and_reused() {
        let mut s = Scratch::default();
        let first = s.get(3 * 4096).as_ptr();
        assert!(aligned(s.get(3 * 4096)));
        assert_eq!(
            s.get(4096).as_ptr(),
            first,
            "a smaller request reuses the buffer"
        );
        assert!(aligned(s.get(5 * 4096)), "a larger one is aligned too");
        assert_eq!(s.get(5 * 4096).len(), 5 * 4096);
    }
}
