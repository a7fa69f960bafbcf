//! Page deltas: the bytes a page changed since an earlier image of it.
//!
//! An append to a B-tree leaf changes ~100 bytes of a 4 KiB page, so both the
//! spool and segments store a page that was already stored earlier in the same
//! file or object as a delta against that earlier image:
//! `runs u32 | runs × (offset u32 | len u32 | bytes)`, little-endian, runs
//! ascending and inside the page.

/// Unchanged gaps shorter than this are carried inside a run (a run header
/// costs 8 bytes).
const MERGE_GAP: usize = 16;

/// Runs `(offset, len)` where `new` differs from `old` (same length), or
/// `None` once their encoding would exceed `max_len` bytes (a page that
/// changed a lot is stored whole, so there is no point in finishing).
fn changed_runs(old: &[u8], new: &[u8], max_len: usize) -> Option<Vec<(usize, usize)>> {
    // Equal stretches are skipped a block at a time (slice equality is a
    // vectorized memcmp), then a byte at a time inside the first block
    // that differs.
    const BLOCK: usize = 32;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let n = new.len();
    let mut len = 4;
    let mut i = 0;
    while i < n {
        while i + BLOCK <= n && old[i..i + BLOCK] == new[i..i + BLOCK] {
            i += BLOCK;
        }
        while i < n && old[i] == new[i] {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        while i < n && old[i] != new[i] {
            i += 1;
        }
        match runs.last_mut() {
            Some((s, l)) if start - (*s + *l) < MERGE_GAP => {
                len += i - (*s + *l);
                *l = i - *s;
            }
            _ => {
                len += 8 + (i - start);
                runs.push((start, i - start));
            }
        }
        if len > max_len {
            return None;
        }
    }
    (len <= max_len).then_some(runs)
}

/// Append the delta from `old` to `new` to `out` if it is at most `max_len`
/// bytes (and the pages have the same size); returns whether it did.
pub fn encode(old: &[u8], new: &[u8], max_len: usize, out: &mut Vec<u8>) -> bool {
    if old.len() != new.len() {
        return false;
    }
    let Some(runs) = changed_runs(old, new, max_len) else {
        return false;
    };
    out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    for (off, l) in runs {
        out.extend_from_slice(&(off as u32).to_le_bytes());
        out.extend_from_slice(&(l as u32).to_le_bytes());
        out.extend_from_slice(&new[off..off + l]);
    }
    true
}

/// Apply the delta at the front of `delta` to `page` (which holds the base
/// image); returns the delta's length. Never panics on bad input.
pub fn apply(page: &mut [u8], delta: &[u8]) -> Result<usize, String> {
    let word = |at: usize| -> Result<usize, String> {
        delta
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| "truncated delta".to_string())
    };
    let runs = word(0)?;
    let mut at = 4;
    let mut end_prev = 0;
    for _ in 0..runs {
        let (off, len) = (word(at)?, word(at + 4)?);
        at += 8;
        let end = off
            .checked_add(len)
            .filter(|&e| e <= page.len() && off >= end_prev && len > 0);
        let Some(end) = end else {
            return Err(format!(
                "delta run {off}+{len} is outside the page or out of order"
            ));
        };
        let data = delta.get(at..at + len).ok_or("truncated delta data")?;
        page[off..end].copy_from_slice(data);
        at += len;
        end_prev = end;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_limits() {
        let old: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let mut new = old.clone();
        new[10] ^= 1;
        new[11] ^= 1;
        new[2000..2100].fill(9);
        new[4095] ^= 0xff;
        let mut d = Vec::new();
        assert!(encode(&old, &new, 1024, &mut d));
        assert!(d.len() < 200, "{}", d.len());
        let mut page = old.clone();
        assert_eq!(apply(&mut page, &d).unwrap(), d.len());
        assert_eq!(page, new);
        // Too large a delta is refused; so are different sizes.
        assert!(!encode(&old, &new, 50, &mut Vec::new()));
        assert!(!encode(&old, &new[..100], 4096, &mut Vec::new()));
        // An identical page is an empty delta.
        let mut d = Vec::new();
        assert!(encode(&old, &old, 4096, &mut d));
        assert_eq!(d.len(), 4);
    }

    /// Many random edits: every delta applies back to the new page, and a
    /// delta is refused exactly when it would exceed the limit (its full
    /// length, found with no limit, decides).
    #[test]
    fn random_edits_roundtrip_and_the_limit_is_exact() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..2000 {
            let size = [512usize, 4096, 65536][round % 3];
            let old: Vec<u8> = (0..size).map(|_| next() as u8).collect();
            let mut new = old.clone();
            for _ in 0..(next() % 40) {
                let at = next() as usize % size;
                let len = (next() as usize % 300).min(size - at);
                for b in &mut new[at..at + len] {
                    *b = b.wrapping_add(1 + (next() % 255) as u8);
                }
            }
            let mut full = Vec::new();
            assert!(encode(&old, &new, usize::MAX, &mut full));
            let mut page = old.clone();
            assert_eq!(apply(&mut page, &full).unwrap(), full.len());
            assert_eq!(page, new, "round {round}");
            for limit in [full.len() - 1, full.len(), size / 2] {
                let mut d = Vec::new();
                assert_eq!(
                    encode(&old, &new, limit, &mut d),
                    full.len() <= limit,
                    "round {round} limit {limit} full {} d {}",
                    full.len(),
                    d.len()
                );
                assert!(d.is_empty() || d == full);
            }
        }
    }

    #[test]
    fn bad_deltas_are_errors_not_panics() {
        let mut page = vec![0u8; 512];
        for bad in [
            &[][..],
            &[1, 0, 0, 0][..],
            &[1, 0, 0, 0, 0, 2, 0, 0, 1, 0, 0, 0, 7][..],
        ] {
            assert!(apply(&mut page, bad).is_err());
        }
        let mut rng = 0x1234_5678_u64;
        for _ in 0..10_000 {
            let n = (rng % 40) as usize;
            let b: Vec<u8> = (0..n)
                .map(|_| {
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (rng >> 56) as u8 % 8
                })
                .collect();
            let _ = apply(&mut page, &b);
        }
    }
}
