//! Every fuzz target on stable Rust, as CI runs them (`cargo test -p
//! strata-fuzz`): each file of its seed corpus (`corpus/<target>/`) and of
//! its saved crashes (`regressions/<target>/`), then seeded random
//! mutations of those for a bounded number of runs and time. A failure
//! prints the input and saves it to `target/fuzz-smoke/`, ready to move to
//! `regressions/`. Long runs are libFuzzer's (`scripts/fuzz`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mutations per target, at most...
const RUNS: usize = 20_000;
/// ...and for at most this long (a debug build on a shared 2-core machine).
const BUDGET: Duration = Duration::from_secs(4);
const MAX_LEN: usize = 8192;

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

fn files(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir(kind, target)) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != ".gitkeep"))
        .map(|p| {
            let b = std::fs::read(&p).expect("read corpus file");
            (p, b)
        })
        .collect();
    out.sort();
    out
}

fn body(target: &str) -> fn(&[u8]) {
    strata_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .map(|&(_, f)| f)
        .expect("a target")
}

/// Run one input; on a panic save it and fail with where it is.
fn run(target: &str, f: fn(&[u8]), data: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| f(data))).is_ok() {
        return;
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/fuzz-smoke")
        .join(target);
    let _ = std::fs::create_dir_all(&out);
    let path = out.join(format!("crash-{:016x}", fnv(data)));
    let _ = std::fs::write(&path, data);
    panic!(
        "{target}: {what} panicked; input saved to {} ({} bytes: {:?})",
        path.display(),
        data.len(),
        String::from_utf8_lossy(&data[..data.len().min(200)])
    );
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'\n', b'"', b'\'', b'.', b',', b'-'];

/// One random edit of `d` (libFuzzer's simplest mutations), `other` for
/// splicing.
fn mutate(rng: &mut StdRng, d: &mut Vec<u8>, other: &[u8]) {
    let at = |rng: &mut StdRng, d: &Vec<u8>| rng.random_range(0..=d.len());
    match rng.random_range(0..9) {
        0 if !d.is_empty() => {
            let i = rng.random_range(0..d.len());
            d[i] ^= 1 << rng.random_range(0..8);
        }
        1 if !d.is_empty() => {
            let i = rng.random_range(0..d.len());
            d[i] = rng.random();
        }
        2 if !d.is_empty() => {
            let i = rng.random_range(0..d.len());
            d[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        3 => {
            let i = at(rng, d);
            let n = rng.random_range(1..=8);
            for _ in 0..n {
                d.insert(i, rng.random());
            }
        }
        4 if !d.is_empty() => {
            let i = rng.random_range(0..d.len());
            let n = rng.random_range(1..=16).min(d.len() - i);
            d.drain(i..i + n);
        }
        5 => {
            let cut = at(rng, d);
            d.truncate(cut);
        }
        6 if !other.is_empty() => {
            let i = at(rng, d);
            let a = rng.random_range(0..other.len());
            let b = rng.random_range(a..=other.len().min(a + 64));
            d.splice(i..i, other[a..b].iter().copied());
        }
        7 if d.len() >= 2 => {
            // Copy a run inside the input (repeats a token or a table entry).
            let a = rng.random_range(0..d.len());
            let b = rng.random_range(a..=d.len().min(a + 32));
            let run = d[a..b].to_vec();
            let i = at(rng, d);
            d.splice(i..i, run);
        }
        _ => {
            let i = at(rng, d);
            let v: u32 = [0, 1, 0xff, 0xffff, u32::MAX, 512, 4096, 65536][rng.random_range(0..8)];
            d.splice(i..i, v.to_le_bytes());
        }
    }
    d.truncate(MAX_LEN);
}

fn smoke(target: &str) {
    let f = body(target);
    let corpus = files("corpus", target);
    assert!(!corpus.is_empty(), "{target}: no seed corpus");
    for (kind, list) in [
        ("corpus", &corpus),
        ("regressions", &files("regressions", target)),
    ] {
        for (p, b) in list {
            run(target, f, b, &format!("{kind} file {}", p.display()));
        }
    }
    let seed = fnv(target.as_bytes());
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut runs = 0;
    while runs < RUNS && start.elapsed() < BUDGET {
        let mut d = corpus[rng.random_range(0..corpus.len())].1.clone();
        let other = &corpus[rng.random_range(0..corpus.len())].1;
        for _ in 0..rng.random_range(1..=4) {
            mutate(&mut rng, &mut d, other);
        }
        run(target, f, &d, &format!("mutation {runs} (rng seed {seed})"));
        runs += 1;
    }
    eprintln!(
        "{target}: {} seeds, {runs} mutations in {:.1?}",
        corpus.len(),
        start.elapsed()
    );
}

macro_rules! targets {
    ($($name:ident),*) => {
        $(#[test] fn $name() { smoke(stringify!($name)); })*
        #[test]
        fn every_target_has_a_test() {
            let names = [$(stringify!($name)),*];
            for (t, _) in strata_fuzz::TARGETS {
                assert!(names.contains(t), "{t} has no smoke test");
            }
        }
    };
}

targets!(
    filter,
    query_params,
    multipart,
    jwt,
    segment,
    segment_roundtrip,
    manifest_keys,
    wal,
    wal_capture
);

/// Write the seed corpus anew from `strata_fuzz::seeds` (run by hand:
/// `cargo test -p strata-fuzz --test smoke -- --ignored write_seed_corpus`).
#[test]
#[ignore]
fn write_seed_corpus() {
    for (target, name, bytes) in strata_fuzz::seeds::all() {
        let d = dir("corpus", target);
        std::fs::create_dir_all(&d).expect("corpus dir");
        std::fs::write(d.join(name), bytes).expect("write seed");
    }
}
