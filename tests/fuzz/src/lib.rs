//! The fuzz targets of issue 13, as plain functions over bytes.
//!
//! Each `pub fn TARGET(data: &[u8])` feeds `data` to one reader of strata
//! and returns normally for every input the code handles as it should (an
//! error for a bad input included). It panics only on a finding: the code
//! under test panicked, or an invariant the target checks failed (a client
//! input classified as a 500, compiled SQL that SQLite refuses, a decoder
//! that returns something other than what was encoded, ...).
//!
//! The same functions run under libFuzzer (`libfuzzer/`, `scripts/fuzz`)
//! and, on stable Rust, in `tests/smoke.rs` over the seed corpus, the saved
//! regressions and seeded mutations. `docs/fuzzing.md` lists them.

mod fixture;
mod input;
pub mod seeds;
mod server;
mod vfs;

pub use fixture::{Tenant, request};
pub use input::Input;
pub use server::{filter, jwt, multipart, query_params};
pub use vfs::{manifest_keys, segment, segment_roundtrip, wal, wal_capture};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by name (the names of `corpus/`, `regressions/` and the
/// libFuzzer binaries).
pub const TARGETS: &[(&str, Target)] = &[
    ("filter", filter),
    ("query_params", query_params),
    ("multipart", multipart),
    ("jwt", jwt),
    ("segment", segment),
    ("segment_roundtrip", segment_roundtrip),
    ("manifest_keys", manifest_keys),
    ("wal", wal),
    ("wal_capture", wal_capture),
];
