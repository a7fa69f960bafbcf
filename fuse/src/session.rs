//! Mounting and unmounting: clears a stale mount left by a crashed process,
//! mounts (with `auto_unmount` through `fusermount3` when it is installed,
//! so even a `kill -9` unmounts), and unmounts on SIGINT, SIGTERM or SIGHUP.

use crate::Options;
use crate::ctx::Ctx;
use crate::fs::StrataFs;
use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_vfs::bucket::Store;
use strata_vfs::{Error, Result};

/// A live mount. Dropping it unmounts.
pub struct Mounted {
    session: BackgroundSession,
    mountpoint: PathBuf,
}

fn fusermount3() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("fusermount3"))
            .find(|f| f.is_file())
    })
}

/// Mount `store` at `mountpoint` and serve it on background threads.
/// SIGINT, SIGTERM and SIGHUP are blocked in the calling process from here
/// on; [`Mounted::wait`] takes them.
pub fn mount(store: Store, mountpoint: &Path, opts: Options) -> Result<Mounted> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::unavailable(
            "/dev/fuse is missing: load the fuse module (`modprobe fuse`), or give the container the device (`--device /dev/fuse --cap-add SYS_ADMIN`)",
        ));
    }
    clear_stale(mountpoint)?;
    if is_strata_mount(mountpoint) {
        return Err(Error::conflict(format!(
            "{} is already a strata mount: unmount it first (`fusermount3 -u {0}`)",
            mountpoint.display()
        )));
    }
    if !mountpoint.is_dir() {
        return Err(Error::invalid(format!(
            "{} is not a directory: create it first",
            mountpoint.display()
        )));
    }
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(format!("strata:{}", store.describe())),
        MountOption::Subtype("strata".into()),
        MountOption::NoAtime,
        MountOption::NoExec,
    ];
    if fusermount3().is_some() {
        // fusermount3 stays behind and unmounts when this process dies.
        cfg.mount_options.push(MountOption::AutoUnmount);
        cfg.acl = SessionACL::All;
    } else {
        tracing::warn!(
            "fusermount3 not found (Debian: apt-get install fuse3): a crash leaves a stale mount, cleared by the next `strata mount`"
        );
    }
    cfg.n_threads = Some(opts.threads.max(1));
    block_signals();
    let ctx = std::sync::Arc::new(Ctx::new(store, opts));
    let fs = StrataFs::new(ctx.clone());
    let io = |e| Error::io(format!("mount {}", mountpoint.display()), e);
    // Mounted and initialized, not yet serving: the notifier (live files
    // drop changed pages from the kernel's cache with it) is there before
    // the first request.
    let session = fuser::Session::new(fs, mountpoint, &cfg).map_err(io)?;
    let _ = ctx.notifier.set(session.notifier());
    let session = session.spawn().map_err(io)?;
    tracing::info!("mounted at {}", mountpoint.display());
    Ok(Mounted {
        session,
        mountpoint: std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_owned()),
    })
}

/// Whether a live strata mount sits at `mountpoint` (mounting again would
/// hide it).
fn is_strata_mount(mountpoint: &Path) -> bool {
    let Ok(path) = std::fs::canonicalize(mountpoint) else {
        return false;
    };
    let path = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(1) == Some(&path.as_str()) && f.get(2) == Some(&"fuse.strata")
        })
    })
}

/// If `mountpoint` is a mount whose process is gone (stat fails with
/// ENOTCONN), unmount it. Returns whether there was one.
pub fn clear_stale(mountpoint: &Path) -> Result<bool> {
    match std::fs::metadata(mountpoint) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        _ => return Ok(false),
    }
    tracing::warn!(
        "{}: clearing a stale mount (its process is gone)",
        mountpoint.display()
    );
    detach(mountpoint)?;
    Ok(true)
}

/// `umount -l`: as root directly, else through the setuid helper.
fn detach(mountpoint: &Path) -> Result<()> {
    let c = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("mount point contains a NUL byte"))?;
    // SAFETY: a valid C string; MNT_DETACH needs no other argument.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let ok = std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mountpoint)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(Error::unavailable(format!(
            "{0} could not be unmounted: run `fusermount3 -u -z {0}` or `umount -l {0}`",
            mountpoint.display()
        )))
    }
}

fn signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialized by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocked in every thread (they inherit the mask), so they can be taken
/// with `sigtimedwait` by the waiting thread instead of killing the process
/// mid-request.
fn block_signals() {
    let set = signals();
    // SAFETY: a valid set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

fn wait_signal(timeout: Duration) -> Option<i32> {
    let set = signals();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; no siginfo wanted.
    let s = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (s > 0).then_some(s)
}

impl Mounted {
    /// Serve until a signal (then unmount) or until the filesystem is
    /// unmounted from outside (`umount`, `fusermount3 -u`).
    pub fn wait(self) -> Result<()> {
        loop {
            if self.session.guard.is_finished() {
                tracing::info!("{} was unmounted", self.mountpoint.display());
                return Ok(());
            }
            if let Some(sig) = wait_signal(Duration::from_millis(200)) {
                tracing::info!("signal {sig}: unmounting {}", self.mountpoint.display());
                return self.unmount();
            }
        }
    }

    /// Unmount (lazily: files still open there keep working until closed)
    /// and wait up to 10 s for the request threads to end.
    pub fn unmount(self) -> Result<()> {
        detach(&self.mountpoint)?;
        let t = std::time::Instant::now();
        while !self.session.guard.is_finished() {
            if t.elapsed() > Duration::from_secs(10) {
                return Err(Error::unavailable(format!(
                    "unmount {}: the kernel did not end the session within 10s",
                    self.mountpoint.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match self.session.join() {
            // Our own detach ended the connection: a reply to a request that
            // was in flight then fails with ECONNABORTED, which ends the
            // session loop as ENODEV does. Nothing was lost: the
            // filesystem is read-only and its caller is gone.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
                tracing::debug!(error = %e, "the session ended with the unmount");
                Ok(())
            }
            r => r.map_err(|e| Error::io(format!("serve {}", self.mountpoint.display()), e)),
        }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}
