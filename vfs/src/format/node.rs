//! A node's heartbeat object, `_strata/nodes/<node>.json` (`docs/format.md`
//! §7): who the node is, where it can be reached, and when it last said it
//! was alive. A database lease bound to a node (`Lease::node`) is valid
//! exactly as long as this object is fresh and names the same incarnation,
//! so one heartbeat put keeps every lease of the node, however many.

use crate::error::{Error, Result};
use crate::types::Millis;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const NODE_FORMAT: u32 = 1;

/// Where the heartbeats live: one object per node.
pub const NODES_PREFIX: &str = "_strata/nodes/";

/// What a node is doing, as its heartbeat says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Serving, and taking new tenants.
    Serving,
    /// Handing its tenants over: takes no new ones.
    Draining,
    /// Stopped cleanly: holds nothing.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub format: u32,
    pub node: String,
    /// Random per process start: a lease names the incarnation it was taken
    /// by, so a node restarted under the same id does not revive the leases
    /// of the process that died.
    pub incarnation: String,
    /// How other nodes reach this one (`http://10.0.0.7:8090`); opaque here.
    pub advertise: String,
    pub state: NodeState,
    pub started: Millis,
    /// When this beat was sent (the holder's clock).
    pub beat: Millis,
    /// The holder's promise: it beats again before `beat + ttl_ms`, or
    /// stops acting on its leases.
    pub ttl_ms: u64,
    /// Beats since the start.
    pub seq: u64,
    /// Tenants loaded, for placement and the dashboard.
    #[serde(default)]
    pub tenants: u64,
    /// The machine and process, so that a restart on the same machine can
    /// tell that the process it replaces is gone.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: u32,
}

impl Heartbeat {
    /// True while the node may hold leases at `now`: it is not stopped and
    /// its last beat is younger than its ttl.
    pub fn alive_at(&self, now: Millis) -> bool {
        self.state != NodeState::Stopped && now.0 < self.beat.0.saturating_add(self.ttl_ms)
    }

    /// How long ago the beat was sent, by `now`.
    pub fn age(&self, now: Millis) -> Duration {
        Duration::from_millis(now.0.saturating_sub(self.beat.0))
    }

    pub fn to_bytes(&self) -> Bytes {
        // Serializing this plain struct cannot fail.
        Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Heartbeat> {
        let h: Heartbeat = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("bad heartbeat json: {e}")))?;
        if h.format != NODE_FORMAT {
            return Err(Error::corrupt(format!(
                "unsupported heartbeat format {}",
                h.format
            )));
        }
        Ok(h)
    }
}

/// The heartbeat key of `node`.
pub fn node_key(node: &str) -> Result<String> {
    validate_node_id(node)?;
    Ok(format!("{NODES_PREFIX}{node}.json"))
}

/// The node id of a heartbeat key, if it is one.
pub fn parse_node_key(key: &str) -> Option<&str> {
    let id = key.strip_prefix(NODES_PREFIX)?.strip_suffix(".json")?;
    validate_node_id(id).ok().map(|_| id)
}

/// Node ids: 1 to 63 characters of `a-z A-Z 0-9 . _ -`, starting with a
/// letter or digit (a host name fits).
pub fn validate_node_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "node id {id:?}: use 1 to 63 characters of a-z A-Z 0-9 . _ -, starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(at: u64) -> Heartbeat {
        Heartbeat {
            format: NODE_FORMAT,
            node: "n1".into(),
            incarnation: "abc".into(),
            advertise: "http://127.0.0.1:1".into(),
            state: NodeState::Serving,
            started: Millis(0),
            beat: Millis(at),
            ttl_ms: 4000,
            seq: 1,
            tenants: 0,
            host: "h".into(),
            pid: 1,
        }
    }

    #[test]
    fn a_heartbeat_is_alive_until_its_ttl_and_never_once_stopped() {
        let h = beat(10_000);
        assert!(h.alive_at(Millis(13_999)));
        assert!(!h.alive_at(Millis(14_000)));
        let stopped = Heartbeat {
            state: NodeState::Stopped,
            ..h
        };
        assert!(!stopped.alive_at(Millis(10_001)));
    }

    #[test]
    fn heartbeats_round_trip_and_reject_other_formats() {
        let h = beat(5);
        assert_eq!(Heartbeat::from_bytes(&h.to_bytes()).unwrap(), h);
        let mut other = h.clone();
        other.format = 2;
        assert!(Heartbeat::from_bytes(&other.to_bytes()).is_err());
        assert!(Heartbeat::from_bytes(b"{").is_err());
    }

    #[test]
    fn node_keys_are_validated_both_ways() {
        assert_eq!(node_key("node-1").unwrap(), "_strata/nodes/node-1.json");
        assert_eq!(parse_node_key("_strata/nodes/node-1.json"), Some("node-1"));
        for bad in ["", "-x", "a/b", "..", "a b", &"x".repeat(64)] {
            assert!(node_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_node_key("_strata/nodes/a/b.json"), None);
        assert_eq!(parse_node_key("_strata/nodes/x.txt"), None);
    }
}
