//! Inode numbers: every node the kernel has seen gets a number for the life
//! of the mount (the table only grows; a node is a few short strings).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use strata_vfs::{Millis, TxId};

/// A restore point named by a path: `@txid/<N>` or `@history/<time>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum At {
    TxId(TxId),
    Time(Millis),
}

/// Every kind of thing in the tree. The file that serves each is named.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    /// `/` (root.rs): one directory per tenant.
    Root,
    /// `/.strata-stats` (stats.rs): this mount's bucket requests and bytes.
    Stats,
    /// `/<tenant>` (tenant.rs).
    Tenant(Arc<str>),
    /// `/<tenant>/@history` (history.rs): restore points by commit time.
    HistoryDir(Arc<str>),
    /// `/<tenant>/@txid` (history.rs): restore points by txid.
    TxidDir(Arc<str>),
    /// `/<tenant>/@history/<time>` or `/<tenant>/@txid/<N>` (history.rs).
    Point(Arc<str>, At),
    /// A database file (db_file.rs): live when `at` is `None`.
    Db {
        tenant: Arc<str>,
        db: Arc<str>,
        at: Option<At>,
    },
    /// An ordinary object or folder under `tenants/<tenant>/`:
    /// `hooks/…`, `storage/…`, `metadata.json` (plain_file.rs).
    Object { tenant: Arc<str>, path: Arc<str> },
}

#[derive(Default)]
pub struct Inodes {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_node: HashMap<Node, u64>,
    nodes: Vec<Node>,
}

impl Inodes {
    pub fn new() -> Inodes {
        let i = Inodes::default();
        i.ino(&Node::Root);
        i
    }

    /// The node's number, assigned on first sight.
    pub fn ino(&self, node: &Node) -> u64 {
        let mut t = self.inner.lock();
        if let Some(&ino) = t.by_node.get(node) {
            return ino;
        }
        t.nodes.push(node.clone());
        let ino = t.nodes.len() as u64;
        t.by_node.insert(node.clone(), ino);
        ino
    }

    pub fn node(&self, ino: u64) -> Option<Node> {
        let t = self.inner.lock();
        ino.checked_sub(1)
            .and_then(|i| t.nodes.get(i as usize))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_root_is_one() {
        let i = Inodes::new();
        assert_eq!(i.ino(&Node::Root), 1);
        let t = Node::Tenant("acme".into());
        let n = i.ino(&t);
        assert_eq!(i.ino(&t), n);
        assert_eq!(i.node(n), Some(t));
        assert_eq!(i.node(0), None);
        assert_eq!(i.node(99), None);
    }
}
