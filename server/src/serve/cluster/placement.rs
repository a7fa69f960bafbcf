//! Where an unheld tenant goes: rendezvous (highest random weight) hashing
//! over the live nodes that take tenants. Every node computes the same
//! answer from the same view, so two nodes rarely race to load one tenant
//! (and when they do, the lease's conditional put picks one); a node that
//! joins or leaves moves only the tenants that hash to it.

use sha2::{Digest, Sha256};

/// The weight of `node` for `tenant`: the first 8 bytes of
/// SHA-256(node, 0, tenant), stable across processes and versions.
pub fn weight(node: &str, tenant: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0u8]);
    h.update(tenant.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The node of `nodes` with the highest weight for `tenant` (ties, which
/// need a SHA-256 collision in 64 bits, go to the smaller id).
pub fn pick<'a>(tenant: &str, nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes
        .into_iter()
        .max_by(|a, b| weight(a, tenant).cmp(&weight(b, tenant)).then(b.cmp(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_stable_and_independent_of_order() {
        let nodes = ["n1", "n2", "n3"];
        for t in ["acme", "t-1", "zeta"] {
            let a = pick(t, nodes);
            let b = pick(t, nodes.iter().rev().copied());
            assert_eq!(a, b, "{t}");
            assert!(a.is_some());
        }
        assert_eq!(pick("acme", []), None);
    }

    #[test]
    fn tenants_spread_evenly_and_a_leaving_node_moves_only_its_own() {
        let nodes = ["n1", "n2", "n3"];
        let tenants: Vec<String> = (0..3000).map(|i| format!("tenant-{i}")).collect();
        let mut counts = [0usize; 3];
        for t in &tenants {
            let p = pick(t, nodes).unwrap();
            counts[nodes.iter().position(|n| *n == p).unwrap()] += 1;
        }
        let max = *counts.iter().max().unwrap() as f64;
        assert!(max / 1000.0 <= 1.1, "spread {counts:?}");
        // n3 leaves: tenants of n1 and n2 stay where they were.
        for t in &tenants {
            let before = pick(t, nodes).unwrap();
            let after = pick(t, ["n1", "n2"]).unwrap();
            if before != "n3" {
                assert_eq!(before, after, "{t} moved though its node stayed");
            }
        }
    }
}
