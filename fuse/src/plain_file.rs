//! Ordinary objects of a tenant as ordinary files: `hooks/…`, `storage/…`
//! (folders are key prefixes) and `metadata.json`, under `tenants/<tenant>/`.
//!
//! Reads are ranged GETs. A file opened for writing is buffered in memory
//! and stored with one PUT when it is closed (flush), so the bucket only
//! ever holds a whole old or a whole new version. Rename is a copy and a
//! delete (not atomic). A folder made with mkdir exists only in this mount
//! until a file is written into it.

use crate::ctx::Ctx;
use crate::errno::{FsError, FsResult, NO_ENTRY};
use bytes::Bytes;
use fuser::Errno;
use std::sync::Arc;
use strata_vfs::ErrorKind;
use strata_vfs::format::keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File(u64),
    Dir,
}

fn key(tenant: &str, path: &str) -> FsResult<String> {
    Ok(format!("{}{path}", keys::tenant_prefix(tenant)?))
}

/// The roots that are always folders.
fn is_root_dir(path: &str) -> bool {
    crate::tenant::OBJECT_DIRS.contains(&path)
}

/// A file (with its size) or a folder; ENOENT if neither.
pub fn stat(ctx: &Ctx, tenant: &Arc<str>, path: &str) -> FsResult<Kind> {
    if is_root_dir(path) {
        return Ok(Kind::Dir);
    }
    let k = key(tenant, path)?;
    let dir = format!("{k}/");
    for o in ctx.store().list(&k)? {
        if o.key == k {
            return Ok(Kind::File(o.size));
        }
        if o.key.starts_with(&dir) {
            return Ok(Kind::Dir);
        }
    }
    if ctx
        .made_dirs
        .lock()
        .contains(&(tenant.clone(), path.to_owned()))
    {
        return Ok(Kind::Dir);
    }
    Err(NO_ENTRY)
}

/// The entries of folder `dir`.
pub fn children(ctx: &Ctx, tenant: &Arc<str>, dir: &str) -> FsResult<Vec<(String, Kind)>> {
    let prefix = format!("{}/", key(tenant, dir)?);
    let mut out: std::collections::BTreeMap<String, Kind> = Default::default();
    for o in ctx.store().list(&prefix)? {
        let rest = &o.key[prefix.len()..];
        match rest.split_once('/') {
            Some((d, _)) => out.insert(d.to_owned(), Kind::Dir),
            None => out.insert(rest.to_owned(), Kind::File(o.size)),
        };
    }
    let sub = format!("{dir}/");
    for (t, p) in ctx.made_dirs.lock().iter() {
        if t == tenant
            && let Some(name) = p.strip_prefix(&sub)
            && !name.contains('/')
        {
            out.entry(name.to_owned()).or_insert(Kind::Dir);
        }
    }
    Ok(out.into_iter().collect())
}

/// Whether `path` names something that may be written (under hooks/ or
/// storage/, or metadata.json).
pub fn writable(path: &str) -> bool {
    path == crate::tenant::METADATA
        || crate::tenant::OBJECT_DIRS
            .iter()
            .any(|d| path.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
}

/// An open object.
pub struct ObjectHandle {
    key: String,
    /// The whole content, once the file is written to.
    buf: Option<Vec<u8>>,
    dirty: bool,
}

impl ObjectHandle {
    /// `truncate`: start empty (O_TRUNC, or a new file), stored at close.
    pub fn open(tenant: &str, path: &str, truncate: bool) -> FsResult<ObjectHandle> {
        Ok(ObjectHandle {
            key: key(tenant, path)?,
            buf: truncate.then(Vec::new),
            dirty: truncate,
        })
    }

    pub fn size(&self) -> Option<u64> {
        self.buf.as_ref().map(|b| b.len() as u64)
    }

    pub fn read(&self, ctx: &Ctx, offset: u64, len: u32) -> FsResult<Vec<u8>> {
        if let Some(b) = &self.buf {
            let start = (offset as usize).min(b.len());
            let end = (start + len as usize).min(b.len());
            return Ok(b[start..end].to_vec());
        }
        match ctx
            .store()
            .get_range(&self.key, offset..offset + len as u64)
        {
            Ok(data) => Ok(data.to_vec()),
            // A range that starts at or past the end: end of file.
            Err(e) if e.kind() == ErrorKind::Invalid => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn loaded(&mut self, ctx: &Ctx) -> FsResult<&mut Vec<u8>> {
        if self.buf.is_none() {
            let data = match ctx.store().get(&self.key) {
                Ok(o) => o.data.to_vec(),
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            self.buf = Some(data);
        }
        Ok(self.buf.get_or_insert_with(Vec::new))
    }

    pub fn write(&mut self, ctx: &Ctx, offset: u64, data: &[u8]) -> FsResult<()> {
        let b = self.loaded(ctx)?;
        let end = offset as usize + data.len();
        if b.len() < end {
            b.resize(end, 0);
        }
        b[offset as usize..end].copy_from_slice(data);
        self.dirty = true;
        Ok(())
    }

    pub fn truncate(&mut self, ctx: &Ctx, size: u64) -> FsResult<()> {
        self.loaded(ctx)?.resize(size as usize, 0);
        self.dirty = true;
        Ok(())
    }

    /// Store the content if it changed: one PUT of the whole object.
    pub fn flush(&mut self, ctx: &Ctx) -> FsResult<()> {
        if let (true, Some(b)) = (self.dirty, &self.buf) {
            ctx.store().put(&self.key, Bytes::from(b.clone()))?;
            self.dirty = false;
        }
        Ok(())
    }
}

pub fn mkdir(ctx: &Ctx, tenant: &Arc<str>, path: &str) -> FsResult<()> {
    if stat(ctx, tenant, path).is_ok() {
        return Err(FsError::Sys(Errno::EEXIST));
    }
    ctx.made_dirs
        .lock()
        .insert((tenant.clone(), path.to_owned()));
    Ok(())
}

pub fn unlink(ctx: &Ctx, tenant: &Arc<str>, path: &str) -> FsResult<()> {
    match stat(ctx, tenant, path)? {
        Kind::File(_) => Ok(ctx.store().delete(&key(tenant, path)?)?),
        Kind::Dir => Err(FsError::Sys(Errno::EISDIR)),
    }
}

pub fn rmdir(ctx: &Ctx, tenant: &Arc<str>, path: &str) -> FsResult<()> {
    if is_root_dir(path) {
        return Err(FsError::Sys(Errno::EBUSY));
    }
    match stat(ctx, tenant, path)? {
        Kind::File(_) => Err(FsError::Sys(Errno::ENOTDIR)),
        Kind::Dir if !children(ctx, tenant, path)?.is_empty() => {
            Err(FsError::Sys(Errno::ENOTEMPTY))
        }
        Kind::Dir => {
            ctx.made_dirs
                .lock()
                .remove(&(tenant.clone(), path.to_owned()));
            Ok(())
        }
    }
}

/// A file only: copy, then delete the old key.
pub fn rename(ctx: &Ctx, tenant: &Arc<str>, from: &str, to: &str) -> FsResult<()> {
    match stat(ctx, tenant, from)? {
        Kind::Dir => Err(FsError::Sys(Errno::EXDEV)),
        Kind::File(_) => {
            let (src, dst) = (key(tenant, from)?, key(tenant, to)?);
            let data = ctx.store().get(&src)?.data;
            ctx.store().put(&dst, data)?;
            ctx.store().delete(&src)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hooks_storage_and_metadata_are_writable() {
        assert!(writable("hooks/main.pb.js"));
        assert!(writable("storage/a/b.png"));
        assert!(writable("metadata.json"));
        assert!(!writable("hooks"));
        assert!(!writable("hooksx/a"));
        assert!(!writable("data.db"));
    }
}
