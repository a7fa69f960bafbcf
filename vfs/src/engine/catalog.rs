//! What a bucket holds: its tenants, and the databases of a tenant, read
//! from LISTs of the key layout (`format::keys`).
//!
//! The bucket trait has no delimiter listing, so each call lists every key
//! under the prefix (`tenants/` for [`tenants`], `tenants/<t>/db/` for
//! [`databases`]); callers cache the answer.

use crate::bucket::ObjectStore;
use crate::error::{Result, ResultExt};
use crate::format::keys::{self, TENANTS_PREFIX};
use std::collections::BTreeSet;

/// Every tenant with at least one object, sorted.
pub fn tenants(store: &dyn ObjectStore) -> Result<Vec<String>> {
    let mut out = BTreeSet::new();
    for o in store.list(TENANTS_PREFIX).ctx("list tenants")? {
        if let Some((t, _)) = o
            .key
            .strip_prefix(TENANTS_PREFIX)
            .and_then(|r| r.split_once('/'))
            && keys::validate_tenant(t).is_ok()
        {
            out.insert(t.to_owned());
        }
    }
    Ok(out.into_iter().collect())
}

/// The databases of a tenant (those with a manifest), sorted.
pub fn databases(store: &dyn ObjectStore, tenant: &str) -> Result<Vec<String>> {
    let prefix = keys::dbs_prefix(tenant)?;
    let mut out = BTreeSet::new();
    for o in store
        .list(&prefix)
        .ctx(format!("list databases of {tenant}"))?
    {
        if let Some(db) = o
            .key
            .strip_prefix(prefix.as_str())
            .and_then(|r| r.strip_suffix("/manifest.json"))
            && keys::validate_db_name(db).is_ok()
        {
            out.insert(db.to_owned());
        }
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::memory::MemoryStore;
    use bytes::Bytes;

    #[test]
    fn tenants_and_databases_from_keys() {
        let s = MemoryStore::new();
        for k in [
            "tenants/acme/db/data.db/manifest.json",
            "tenants/acme/db/data.db/segments/x.seg",
            "tenants/acme/db/auxiliary.db/manifest.json",
            "tenants/acme/db/half.db/segments/x.seg",
            "tenants/acme/hooks/main.pb.js",
            "tenants/globex/metadata.json",
            "tenants/Bad/metadata.json",
            "tenants/stray",
            "other/tenants/x/y",
        ] {
            s.put(k, Bytes::from_static(b"x")).unwrap();
        }
        assert_eq!(tenants(&s).unwrap(), ["acme", "globex"]);
        assert_eq!(databases(&s, "acme").unwrap(), ["auxiliary.db", "data.db"]);
        assert!(databases(&s, "globex").unwrap().is_empty());
        assert!(databases(&s, "../x").is_err());
    }
}
