//! The `fuser::Filesystem`: resolves inode numbers to nodes, dispatches to
//! the node files, and turns failures into errno (through `errno.rs` only).

use crate::ctx::Ctx;
use crate::db_file::{self, DbHandle};
use crate::errno::{FsError, FsResult, NO_ENTRY, READ_ONLY};
use crate::inodes::{Inodes, Node};
use crate::locks::Locks;
use crate::plain_file::{self, Kind, ObjectHandle};
use crate::{history, root, stats, tenant};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// How long the kernel may cache what never changes (past restore points).
const FOREVER: Duration = Duration::from_secs(3600);

enum Handle {
    Db(DbHandle),
    Object { ino: u64, h: ObjectHandle },
    Stats(Vec<u8>),
    Dir(Vec<(u64, FileType, String)>),
}

pub struct StrataFs {
    ctx: Arc<Ctx>,
    inodes: Inodes,
    handles: Mutex<HashMap<u64, Arc<Mutex<Handle>>>>,
    /// POSIX locks on every file but live databases (those keep theirs in
    /// db_file.rs, where they decide when the file may move), by inode.
    locks: Mutex<HashMap<u64, Locks>>,
    next_fh: AtomicU64,
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
}

struct Attr {
    kind: FileType,
    size: u64,
    perm: u16,
    ttl: Duration,
}

impl Attr {
    fn dir(perm: u16, ttl: Duration) -> Attr {
        Attr {
            kind: FileType::Directory,
            size: 0,
            perm,
            ttl,
        }
    }
    fn file(size: u64, perm: u16, ttl: Duration) -> Attr {
        Attr {
            kind: FileType::RegularFile,
            size,
            perm,
            ttl,
        }
    }
}

fn name_str(name: &OsStr) -> FsResult<&str> {
    name.to_str().ok_or(NO_ENTRY)
}

fn wants_write(flags: OpenFlags) -> bool {
    flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0
}

impl StrataFs {
    pub fn new(ctx: Arc<Ctx>) -> StrataFs {
        StrataFs {
            ctx,
            inodes: Inodes::new(),
            handles: Mutex::default(),
            locks: Mutex::default(),
            next_fh: AtomicU64::new(1),
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
            mounted_at: SystemTime::now(),
        }
    }

    fn node(&self, ino: INodeNo) -> FsResult<Node> {
        self.inodes.node(ino.0).ok_or(FsError::Sys(Errno::ESTALE))
    }

    fn handle(&self, fh: FileHandle) -> FsResult<Arc<Mutex<Handle>>> {
        self.handles
            .lock()
            .get(&fh.0)
            .cloned()
            .ok_or(FsError::Sys(Errno::EBADF))
    }

    fn add_handle(&self, h: Handle) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Arc::new(Mutex::new(h)));
        FileHandle(fh)
    }

    /// The size of an object that is open for writing here (it may not be
    /// in the bucket yet).
    fn buffered_size(&self, ino: u64) -> Option<u64> {
        let hs: Vec<_> = self.handles.lock().values().cloned().collect();
        hs.iter().find_map(|h| match &*h.lock() {
            Handle::Object { ino: i, h } if *i == ino => h.size(),
            _ => None,
        })
    }

    fn attr_of(&self, ino: u64, node: &Node, fh: Option<FileHandle>) -> FsResult<Attr> {
        let refresh = self.ctx.opts.refresh;
        Ok(match node {
            Node::Root | Node::Tenant(_) | Node::HistoryDir(_) | Node::TxidDir(_) => {
                Attr::dir(0o555, refresh)
            }
            Node::Point(_, at) if db_file::settled(*at) => Attr::dir(0o555, FOREVER),
            Node::Point(..) => Attr::dir(0o555, refresh),
            Node::Stats => Attr::file(
                stats::content(&self.ctx).len() as u64,
                0o444,
                Duration::ZERO,
            ),
            Node::Db { tenant, db, at } => {
                let open = fh
                    .and_then(|fh| self.handle(fh).ok())
                    .and_then(|h| match &*h.lock() {
                        Handle::Db(d) => Some(d.clone()),
                        _ => None,
                    });
                if let Some(d) = open {
                    return Ok(Attr::file(d.map(&self.ctx)?.size(), 0o444, refresh));
                }
                match at {
                    // The size of the state the file shows now (looking at
                    // the head would move it: only locks and opens do).
                    None => {
                        let map = db_file::live(&self.ctx, tenant, db)?.map(&self.ctx)?;
                        Attr::file(map.size(), 0o444, refresh)
                    }
                    Some(at) => {
                        let map = db_file::past(&self.ctx, tenant, db, *at)?;
                        let ttl = if db_file::settled(*at) {
                            FOREVER
                        } else {
                            refresh
                        };
                        Attr::file(map.size(), 0o444, ttl)
                    }
                }
            }
            Node::Object { tenant, path } => {
                if let Some(size) = self.buffered_size(ino) {
                    return Ok(Attr::file(size, 0o644, Duration::ZERO));
                }
                match plain_file::stat(&self.ctx, tenant, path)? {
                    Kind::Dir => Attr::dir(0o755, refresh),
                    Kind::File(size) => Attr::file(size, 0o644, refresh),
                }
            }
        })
    }

    fn file_attr(&self, ino: u64, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind: a.kind,
            perm: a.perm,
            nlink: if a.kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    /// The node `name` inside `parent`.
    fn child(&self, parent: &Node, name: &str) -> FsResult<Node> {
        let ctx = &self.ctx;
        match parent {
            Node::Root => root::lookup(ctx, name),
            Node::Tenant(t) => tenant::lookup(ctx, t, name),
            Node::HistoryDir(t) | Node::TxidDir(t) => {
                let node = match parent {
                    Node::HistoryDir(_) => history::lookup_time(t, name)?,
                    _ => history::lookup_txid(t, name)?,
                };
                // A point no database has does not exist.
                match &node {
                    Node::Point(t, at) if history::point_children(ctx, t, *at)?.is_empty() => {
                        Err(NO_ENTRY)
                    }
                    _ => Ok(node),
                }
            }
            Node::Point(t, at) => history::point_lookup(ctx, t, *at, name),
            Node::Object { tenant, path } => Ok(Node::Object {
                tenant: tenant.clone(),
                path: format!("{path}/{name}").into(),
            }),
            Node::Db { .. } | Node::Stats => Err(FsError::Sys(Errno::ENOTDIR)),
        }
    }

    fn children(&self, node: &Node) -> FsResult<Vec<(String, Node, FileType)>> {
        let ctx = &self.ctx;
        let typed = |v: Vec<(String, Node)>| {
            v.into_iter()
                .map(|(n, node)| {
                    let kind = match &node {
                        Node::Db { .. } | Node::Stats => FileType::RegularFile,
                        Node::Object { path, .. } if &**path == tenant::METADATA => {
                            FileType::RegularFile
                        }
                        _ => FileType::Directory,
                    };
                    (n, node, kind)
                })
                .collect()
        };
        Ok(match node {
            Node::Root => typed(root::children(ctx)?),
            Node::Tenant(t) => typed(tenant::children(ctx, t)?),
            Node::HistoryDir(t) => typed(history::history_children(ctx, t)?),
            Node::TxidDir(t) => typed(history::txid_children(ctx, t)?),
            Node::Point(t, at) => typed(history::point_children(ctx, t, *at)?),
            Node::Object { tenant, path } => plain_file::children(ctx, tenant, path)?
                .into_iter()
                .map(|(n, kind)| {
                    let node = Node::Object {
                        tenant: tenant.clone(),
                        path: format!("{path}/{n}").into(),
                    };
                    let t = match kind {
                        Kind::Dir => FileType::Directory,
                        Kind::File(_) => FileType::RegularFile,
                    };
                    (n, node, t)
                })
                .collect(),
            Node::Db { .. } | Node::Stats => return Err(FsError::Sys(Errno::ENOTDIR)),
        })
    }

    /// Where a new or removed entry `name` of `parent` would live, if it is
    /// an ordinary object: (tenant, path). Anything else is read-only.
    fn object_target(parent: &Node, name: &str) -> FsResult<(Arc<str>, String)> {
        let path = match parent {
            Node::Object { path, .. } => format!("{path}/{name}"),
            Node::Tenant(_) if name == tenant::METADATA => name.to_owned(),
            _ => return Err(READ_ONLY),
        };
        match parent {
            Node::Object { tenant, .. } | Node::Tenant(tenant) if plain_file::writable(&path) => {
                Ok((tenant.clone(), path))
            }
            _ => Err(READ_ONLY),
        }
    }

    fn do_lookup(&self, parent: INodeNo, name: &OsStr) -> FsResult<(FileAttr, Duration)> {
        let node = self.child(&self.node(parent)?, name_str(name)?)?;
        let ino = self.inodes.ino(&node);
        let a = self.attr_of(ino, &node, None)?;
        Ok((self.file_attr(ino, &a), a.ttl))
    }

    /// A new handle, its open flags, and for a live database file the file
    /// (which answers the open itself: it may move first).
    fn do_open(
        &self,
        ino: INodeNo,
        flags: OpenFlags,
    ) -> FsResult<(FileHandle, FopenFlags, Option<Arc<db_file::Live>>)> {
        let node = self.node(ino)?;
        let write = wants_write(flags);
        let (h, fopen) = match &node {
            Node::Db { .. } if write => return Err(READ_ONLY),
            Node::Db {
                tenant,
                db,
                at: None,
            } => {
                let live = db_file::live(&self.ctx, tenant, db)?;
                live.map(&self.ctx)?;
                // The kernel keeps pages across opens; a move drops the
                // ones that changed (db_file.rs).
                let fh = self.add_handle(Handle::Db(DbHandle::Live(live.clone())));
                return Ok((fh, FopenFlags::FOPEN_KEEP_CACHE, Some(live)));
            }
            Node::Db {
                tenant,
                db,
                at: Some(at),
            } => {
                let map = db_file::past(&self.ctx, tenant, db, *at)?;
                let h = DbHandle::Past(map);
                // The kernel may keep the pages of what cannot change.
                let cache = if db_file::settled(*at) {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::FOPEN_DIRECT_IO
                };
                (Handle::Db(h), cache)
            }
            Node::Stats if write => return Err(READ_ONLY),
            Node::Stats => (
                Handle::Stats(stats::content(&self.ctx)),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Node::Object { tenant, path } => {
                if plain_file::stat(&self.ctx, tenant, path)? == Kind::Dir {
                    return Err(FsError::Sys(Errno::EISDIR));
                }
                let truncate = flags.0 & libc::O_TRUNC != 0;
                let h = ObjectHandle::open(tenant, path, truncate)?;
                (
                    Handle::Object { ino: ino.0, h },
                    FopenFlags::FOPEN_DIRECT_IO,
                )
            }
            _ => return Err(FsError::Sys(Errno::EISDIR)),
        };
        Ok((self.add_handle(h), fopen, None))
    }

    fn do_read(&self, fh: FileHandle, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        tracing::trace!(offset, size, "read");
        let h = self.handle(fh)?;
        // Take what is needed and let go of the handle before any I/O.
        let d = match &mut *h.lock() {
            Handle::Db(d) => d.clone(),
            Handle::Object { h, .. } => return h.read(&self.ctx, offset, size),
            Handle::Stats(s) => {
                let start = (offset as usize).min(s.len());
                let end = (start + size as usize).min(s.len());
                return Ok(s[start..end].to_vec());
            }
            Handle::Dir(_) => return Err(FsError::Sys(Errno::EISDIR)),
        };
        let map = d.map(&self.ctx)?;
        let c = &self.ctx.counters;
        c.db_reads.fetch_add(1, Ordering::Relaxed);
        c.db_read_bytes.fetch_add(size as u64, Ordering::Relaxed);
        let mut buf = vec![0u8; size as usize];
        let n = db_file::read(&self.ctx, &map, offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// The live file `ino` is, if it is one.
    fn live_of(&self, node: &Node) -> FsResult<Option<Arc<db_file::Live>>> {
        match node {
            Node::Db {
                tenant,
                db,
                at: None,
            } => db_file::live(&self.ctx, tenant, db).map(Some),
            _ => Ok(None),
        }
    }

    /// A process closed a descriptor of `ino`: POSIX drops all its locks
    /// on the file.
    fn drop_locks(&self, ino: INodeNo, owner: LockOwner) {
        let Ok(node) = self.node(ino) else { return };
        match self.live_of(&node) {
            Ok(Some(live)) => live.drop_owner(owner.0),
            _ => self.file_locks(ino, |l| l.drop_owner(owner.0)),
        }
    }

    /// Run `f` on the lock table of `ino` (not a live database: those keep
    /// their own); an emptied table is dropped.
    fn file_locks<R>(&self, ino: INodeNo, f: impl FnOnce(&mut Locks) -> R) -> R {
        let mut t = self.locks.lock();
        let l = t.entry(ino.0).or_default();
        let r = f(l);
        if l.is_empty() {
            t.remove(&ino.0);
        }
        r
    }

    fn do_flush(&self, fh: FileHandle) -> FsResult<()> {
        match &mut *self.handle(fh)?.lock() {
            Handle::Object { h, .. } => h.flush(&self.ctx),
            _ => Ok(()),
        }
    }

    fn do_setattr(&self, ino: INodeNo, size: Option<u64>, fh: Option<FileHandle>) -> FsResult<()> {
        match (self.node(ino)?, size) {
            (Node::Object { tenant, path }, Some(size)) => {
                if let Some(fh) = fh
                    && let Ok(h) = self.handle(fh)
                    && let Handle::Object { h, .. } = &mut *h.lock()
                {
                    return h.truncate(&self.ctx, size);
                }
                let mut h = ObjectHandle::open(&tenant, &path, size == 0)?;
                h.truncate(&self.ctx, size)?;
                h.flush(&self.ctx)
            }
            // Times and modes of ordinary objects are not kept: accept them.
            (Node::Object { .. }, None) => Ok(()),
            _ => Err(READ_ONLY),
        }
    }

    fn do_create(&self, parent: INodeNo, name: &OsStr) -> FsResult<(FileAttr, FileHandle)> {
        let (tenant, path) = Self::object_target(&self.node(parent)?, name_str(name)?)?;
        let h = ObjectHandle::open(&tenant, &path, true)?;
        let node = Node::Object {
            tenant,
            path: path.into(),
        };
        let ino = self.inodes.ino(&node);
        let fh = self.add_handle(Handle::Object { ino, h });
        let a = Attr::file(0, 0o644, Duration::ZERO);
        Ok((self.file_attr(ino, &a), fh))
    }

    fn do_mkdir(&self, parent: INodeNo, name: &OsStr) -> FsResult<(FileAttr, Duration)> {
        let (tenant, path) = Self::object_target(&self.node(parent)?, name_str(name)?)?;
        plain_file::mkdir(&self.ctx, &tenant, &path)?;
        let node = Node::Object {
            tenant,
            path: path.into(),
        };
        let ino = self.inodes.ino(&node);
        let a = Attr::dir(0o755, self.ctx.opts.refresh);
        Ok((self.file_attr(ino, &a), a.ttl))
    }

    /// unlink (`dir` false) or rmdir (`dir` true).
    fn do_remove(&self, parent: INodeNo, name: &OsStr, dir: bool) -> FsResult<()> {
        let parent = self.node(parent)?;
        let name = name_str(name)?;
        match Self::object_target(&parent, name) {
            Ok((t, path)) if dir => plain_file::rmdir(&self.ctx, &t, &path),
            Ok((t, path)) => plain_file::unlink(&self.ctx, &t, &path),
            // Read-only, but say ENOENT for what is not there.
            Err(e) => {
                self.child(&parent, name)?;
                Err(e)
            }
        }
    }

    fn do_rename(&self, p: INodeNo, name: &OsStr, np: INodeNo, nname: &OsStr) -> FsResult<()> {
        let (t1, from) = Self::object_target(&self.node(p)?, name_str(name)?)?;
        let (t2, to) = Self::object_target(&self.node(np)?, name_str(nname)?)?;
        if t1 != t2 {
            return Err(FsError::Sys(Errno::EXDEV));
        }
        plain_file::rename(&self.ctx, &t1, &from, &to)
    }

    /// The node a lock request is about; requests on database files are
    /// counted (`/.strata-stats`).
    fn lock_node(&self, ino: INodeNo) -> FsResult<Node> {
        let node = self.node(ino)?;
        if matches!(node, Node::Db { .. }) {
            self.ctx
                .counters
                .lock_requests
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(node)
    }

    fn do_opendir(&self, ino: INodeNo) -> FsResult<FileHandle> {
        let node = self.node(ino)?;
        let mut entries = vec![
            (ino.0, FileType::Directory, ".".to_string()),
            (ino.0, FileType::Directory, "..".to_string()),
        ];
        for (name, child, kind) in self.children(&node)? {
            entries.push((self.inodes.ino(&child), kind, name));
        }
        Ok(self.add_handle(Handle::Dir(entries)))
    }
}

impl Filesystem for StrataFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Larger kernel read-ahead on cached files: fewer, longer reads,
        // each one ranged GET of adjacent pages.
        let _ = config.set_max_readahead(1 << 20);
        // fcntl locks come here: a live file moves only while none is held.
        if let Err(missing) = config.add_capabilities(fuser::InitFlags::FUSE_POSIX_LOCKS) {
            tracing::warn!(
                "the kernel does not forward POSIX locks ({missing:?}): live files move to newer commits only when opened"
            );
        }
        // A new size must not drop all of a file's cached pages (the kernel
        // does, unless told it gets explicit invalidations): a live file
        // that grows drops only what changed (db_file.rs).
        if let Err(missing) = config.add_capabilities(fuser::InitFlags::FUSE_EXPLICIT_INVAL_DATA) {
            tracing::warn!(
                "the kernel cannot leave invalidations to the filesystem ({missing:?}): a live file that grows or shrinks is read again whole"
            );
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.do_lookup(parent, name) {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            // A negative entry (inode 0) the kernel may keep for the refresh
            // interval: SQLite asks for `<db>-journal` at every transaction.
            Err(e) if e.is_no_entry() => {
                let a = Attr::file(0, 0, self.ctx.opts.refresh);
                let mut attr = self.file_attr(0, &a);
                attr.ino = INodeNo(0);
                reply.entry(&a.ttl, &attr, Generation(0))
            }
            Err(e) => reply.error(e.errno(&format!("lookup {name:?}"))),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self
            .node(ino)
            .and_then(|node| self.attr_of(ino.0, &node, fh));
        match r {
            Ok(a) => reply.attr(&a.ttl, &self.file_attr(ino.0, &a)),
            Err(e) => reply.error(e.errno("getattr")),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self
            .do_setattr(ino, size, fh)
            .and_then(|()| self.node(ino))
            .and_then(|node| self.attr_of(ino.0, &node, fh));
        match r {
            Ok(a) => reply.attr(&a.ttl, &self.file_attr(ino.0, &a)),
            Err(e) => reply.error(e.errno("setattr")),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.do_open(ino, flags) {
            Ok((fh, f, Some(live))) => live.opened(&self.ctx, ino.0, fh, f, reply),
            Ok((fh, f, None)) => reply.opened(fh, f),
            Err(e) => reply.error(e.errno("open")),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e.errno(&format!("read at {offset}"))),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let r = self.handle(fh).and_then(|h| match &mut *h.lock() {
            Handle::Object { h, .. } => h.write(&self.ctx, offset, data),
            _ => Err(READ_ONLY),
        });
        match r {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e.errno("write")),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(): the kernel sends no unlock for the process's locks.
        self.drop_locks(ino, lock_owner);
        match self.do_flush(fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno("flush")),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(owner) = lock_owner {
            self.drop_locks(ino, owner);
        }
        let r = self.do_flush(fh);
        self.handles.lock().remove(&fh.0);
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno("release")),
        }
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        let node = match self.lock_node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e.errno("getlk")),
        };
        let conflict = match self.live_of(&node) {
            Ok(Some(live)) => live.conflict(lock_owner.0, start, end, typ),
            Ok(None) => self
                .locks
                .lock()
                .get(&ino.0)
                .and_then(|l| l.conflict(lock_owner.0, start, end, typ)),
            Err(e) => return reply.error(e.errno("getlk")),
        };
        match conflict {
            Some((s, e, t, pid)) => reply.locked(s, e, t, pid),
            None => reply.locked(start, end, libc::F_UNLCK, 0),
        }
    }

    fn setlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        _sleep: bool,
        reply: ReplyEmpty,
    ) {
        let node = match self.lock_node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e.errno("setlk")),
        };
        let owner = lock_owner.0;
        let read_only = matches!(node, Node::Db { .. } | Node::Stats);
        // Nothing writes a read-only file: a write lock is always busy
        // (SQLITE_BUSY). The kernel refuses one on an O_RDONLY descriptor
        // itself, so this is a backstop.
        if read_only && typ == libc::F_WRLCK {
            return reply.error(Errno::EAGAIN);
        }
        match self.live_of(&node) {
            Ok(Some(live)) => match typ {
                libc::F_RDLCK => live.read_lock(&self.ctx, ino.0, (owner, pid, start, end), reply),
                libc::F_UNLCK => {
                    live.unlock(owner, start, end);
                    reply.ok()
                }
                _ => reply.error(Errno::EINVAL),
            },
            Ok(None) => {
                // A conflict is EAGAIN even for F_SETLKW: nothing waits here.
                match self.file_locks(ino, |l| l.set(owner, pid, start, end, typ)) {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(e),
                }
            }
            Err(e) => reply.error(e.errno("setlk")),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.do_opendir(ino) {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e.errno("opendir")),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e.errno("readdir")),
        };
        if let Handle::Dir(entries) = &*h.lock() {
            for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
                if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                    break;
                }
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.lock().remove(&fh.0);
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.do_create(parent, name) {
            Ok((attr, fh)) => reply.created(
                &Duration::ZERO,
                &attr,
                Generation(0),
                fh,
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e.errno(&format!("create {name:?}"))),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        match self.do_mkdir(parent, name) {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e.errno(&format!("mkdir {name:?}"))),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.do_remove(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno(&format!("unlink {name:?}"))),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.do_remove(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno(&format!("rmdir {name:?}"))),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.do_rename(parent, name, newparent, newname) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno(&format!("rename {name:?}"))),
        }
    }
}
