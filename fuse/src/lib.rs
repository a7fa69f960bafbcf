//! strata mount: tenant stores as a filesystem (FUSE), with time travel.
//!
//! Not built yet: this crate is the home of issue 4 ("strata mount"). It will
//! hold one file per node type, each a thin layer over `strata_vfs`'s engine
//! API (never its SQLite callbacks), and the one errno mapping.
