//! The bytes strata stores, as pure functions over bytes (no I/O).
//!
//! - [`segment`]: segment and snapshot objects (immutable, checksummed page
//!   images with transaction boundaries and a page index for ranged reads).
//! - [`manifest`]: the one mutable JSON object per database, with the epoch
//!   fencing rule.
//! - [`node`]: a node's heartbeat object (membership, node-bound leases).
//! - [`keys`]: the bucket key layout and name validation.
//! - [`delta`]: page deltas, shared by the spool and segments.
//! - [`wal`]: SQLite's WAL file format.
//!
//! `docs/format.md` is the byte-level spec.

pub mod delta;
pub mod keys;
pub mod manifest;
pub mod node;
pub mod segment;
pub mod wal;

pub use keys::{DbKeys, SegmentKey, SnapshotKey, validate_db_name, validate_tenant};
pub use manifest::{EpochStart, Lease, LeaseNode, Manifest, SegmentRef, SnapshotRef};
pub use segment::{
    Codec, EncodeOptions, HEADER_LEN, PageEntry, Segment, SegmentHeader, SegmentIndex, SegmentKind,
    SegmentMeta, TxnEntry, TxnPages,
};
