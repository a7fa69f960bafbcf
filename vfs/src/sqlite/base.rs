//! A file opened through the base VFS (SQLite's own `unix` VFS): strata
//! forwards every file operation to it, so locking, the `-shm` shared memory
//! and on-disk formats are exactly SQLite's, and other processes using plain
//! SQLite interoperate with ours.

use super::ffi;
use std::ffi::{c_char, c_int, c_void};

/// `sqlite3_file` storage of the base VFS's size, and the open file in it.
pub struct BaseFile {
    // u64s keep the buffer aligned for the base VFS's struct.
    buf: Box<[u64]>,
    open: bool,
}

// SAFETY: SQLite's unix VFS files may be used from any thread as long as
// calls are not concurrent; SQLite serializes calls per file and sqlite-plugin
// hands us `&mut` handles.
unsafe impl Send for BaseFile {}

pub type Rc = c_int;

impl BaseFile {
    /// Open `name` (a pointer SQLite gave us, or null for a temp file).
    ///
    /// # Safety
    /// `vfs` must be a registered VFS; `name` null or a SQLite filename.
    pub unsafe fn open(
        vfs: *mut ffi::sqlite3_vfs,
        name: *const c_char,
        flags: c_int,
    ) -> Result<(BaseFile, c_int), Rc> {
        let sz = unsafe { (*vfs).szOsFile } as usize;
        let mut f = BaseFile {
            buf: vec![0u64; sz.div_ceil(8).max(1)].into_boxed_slice(),
            open: false,
        };
        let mut out_flags: c_int = 0;
        let x_open = unsafe { (*vfs).xOpen }.ok_or(sqlite_plugin::vars::SQLITE_INTERNAL)?;
        let rc = unsafe { x_open(vfs, name, f.file(), flags, &mut out_flags) };
        // Per the VFS contract, a failed xOpen may still have set pMethods;
        // then xClose must be called.
        f.open = unsafe { !(*f.file()).pMethods.is_null() };
        if rc != ffi::SQLITE_OK {
            return Err(rc);
        }
        Ok((f, out_flags))
    }

    fn file(&mut self) -> *mut ffi::sqlite3_file {
        self.buf.as_mut_ptr().cast()
    }

    fn methods(&mut self) -> &ffi::sqlite3_io_methods {
        // SAFETY: set by a successful xOpen and valid until xClose.
        unsafe { &*(*self.file()).pMethods }
    }

    fn rc(rc: c_int) -> Result<(), Rc> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(rc)
        }
    }

    /// Read; returns the bytes actually present (SQLite zero-fills the rest).
    pub fn read(&mut self, offset: usize, buf: &mut [u8]) -> Result<usize, Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xRead
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_READ)?;
        let rc = unsafe {
            x(
                f,
                buf.as_mut_ptr().cast::<c_void>(),
                buf.len() as c_int,
                offset as i64,
            )
        };
        if rc == ffi::SQLITE_IOERR_SHORT_READ {
            let size = self.file_size()?;
            return Ok(size.saturating_sub(offset).min(buf.len()));
        }
        Self::rc(rc).map(|_| buf.len())
    }

    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<usize, Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xWrite
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_WRITE)?;
        Self::rc(unsafe {
            x(
                f,
                data.as_ptr().cast::<c_void>(),
                data.len() as c_int,
                offset as i64,
            )
        })?;
        Ok(data.len())
    }

    pub fn truncate(&mut self, size: usize) -> Result<(), Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xTruncate
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_TRUNCATE)?;
        Self::rc(unsafe { x(f, size as i64) })
    }

    pub fn sync(&mut self) -> Result<(), Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xSync
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_FSYNC)?;
        Self::rc(unsafe { x(f, sqlite_plugin::vars::SQLITE_SYNC_NORMAL) })
    }

    pub fn file_size(&mut self) -> Result<usize, Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xFileSize
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_FSTAT)?;
        let mut size: i64 = 0;
        Self::rc(unsafe { x(f, &mut size) })?;
        Ok(size.max(0) as usize)
    }

    pub fn lock(&mut self, level: c_int) -> Result<(), Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xLock
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_LOCK)?;
        Self::rc(unsafe { x(f, level) })
    }

    pub fn unlock(&mut self, level: c_int) -> Result<(), Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xUnlock
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_UNLOCK)?;
        Self::rc(unsafe { x(f, level) })
    }

    pub fn check_reserved_lock(&mut self) -> Result<bool, Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xCheckReservedLock
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_CHECKRESERVEDLOCK)?;
        let mut out: c_int = 0;
        Self::rc(unsafe { x(f, &mut out) })?;
        Ok(out != 0)
    }

    pub fn sector_size(&mut self) -> c_int {
        let f = self.file();
        match self.methods().xSectorSize {
            Some(x) => unsafe { x(f) },
            None => 4096,
        }
    }

    pub fn device_characteristics(&mut self) -> c_int {
        let f = self.file();
        match self.methods().xDeviceCharacteristics {
            Some(x) => unsafe { x(f) },
            None => 0,
        }
    }

    pub fn shm_map(&mut self, region: usize, size: usize, extend: bool) -> Result<*mut u8, Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xShmMap
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_SHMMAP)?;
        let mut p: *mut c_void = std::ptr::null_mut();
        Self::rc(unsafe { x(f, region as c_int, size as c_int, extend as c_int, &mut p) })?;
        Ok(p.cast())
    }

    pub fn shm_lock(&mut self, offset: u32, n: u32, flags: c_int) -> Result<(), Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xShmLock
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_SHMLOCK)?;
        Self::rc(unsafe { x(f, offset as c_int, n as c_int, flags) })
    }

    pub fn shm_barrier(&mut self) {
        let f = self.file();
        if let Some(x) = self.methods().xShmBarrier {
            unsafe { x(f) }
        }
    }

    pub fn shm_unmap(&mut self, delete: bool) -> Result<(), Rc> {
        let f = self.file();
        let x = self
            .methods()
            .xShmUnmap
            .ok_or(sqlite_plugin::vars::SQLITE_IOERR_SHMMAP)?;
        Self::rc(unsafe { x(f, delete as c_int) })
    }

    pub fn close(mut self) -> Result<(), Rc> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<(), Rc> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        let f = self.file();
        match self.methods().xClose {
            Some(x) => Self::rc(unsafe { x(f) }),
            None => Ok(()),
        }
    }
}

impl Drop for BaseFile {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}
