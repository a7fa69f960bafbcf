//! What a bucket holds: its tenants, and the databases of a tenant, read
//! from delimiter LISTs of the key layout (`format::keys`): one request per
//! thousand tenants, never a walk over every segment.

use crate::bucket::ObjectStore;
use crate::error::{Result, ResultExt};
use crate::format::keys::{self, TENANTS_PREFIX};

/// Every tenant with at least one object, sorted.
pub fn tenants(store: &dyn ObjectStore) -> Result<Vec<String>> {
    let mut out = store.list_dirs(TENANTS_PREFIX).ctx("list tenants")?;
    out.retain(|t| keys::validate_tenant(t).is_ok());
    Ok(out)
}

/// The databases of a tenant (those with a manifest), sorted.
pub fn databases(store: &dyn ObjectStore, tenant: &str) -> Result<Vec<String>> {
    let prefix = keys::dbs_prefix(tenant)?;
    let mut out = Vec::new();
    for db in store
        .list_dirs(&prefix)
        .ctx(format!("list databases of {tenant}"))?
    {
        if keys::validate_db_name(&db).is_err() {
            continue;
        }
        // A LIST whose prefix is the manifest's key: one small request.
        let manifest = format!("{prefix}{db}/manifest.json");
        if store
            .list(&manifest)
            .ctx(format!("list databases of {tenant}"))?
            .iter()
            .any(|o| o.key == manifest)
        {
            out.push(db);
        }
    }
    Ok(out)
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
