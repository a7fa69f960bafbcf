//! A tenant's lifecycle: create, soft delete and purge, restore, fork,
//! export, the list of tenants, and this node's view of a tenant's
//! replication. Each works on the bucket; a loaded tenant is evicted or
//! flushed first where the bucket must hold all of it.

use super::domains::DOMAINS_PREFIX;
use super::tenant::{AUX_DB, DATA_DB, open_db};
use super::{Registry, blocking, check_tenant_id, claimable_domain};
use crate::serve::auth::password;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::schema;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use strata_vfs::bucket::Store;
use strata_vfs::engine::restore::{self, Target};
use strata_vfs::format::keys::DbKeys;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub id: String,
    #[serde(default)]
    pub domain: Option<String>,
    pub created: String,
    /// Set by a soft delete: the tenant is gone from the API at once.
    #[serde(default)]
    pub deleted: Option<String>,
    /// After this time a purge job may remove `tenants/<id>/`.
    #[serde(default, rename = "purgeAfter")]
    pub purge_after: Option<String>,
}

fn meta_key(id: &str) -> String {
    format!("tenants/{id}/metadata.json")
}

impl Registry {
    pub fn read_meta(&self, id: &str) -> ApiResult<(Metadata, strata_vfs::bucket::ETag)> {
        read_meta(&self.store, id)
    }

    /// Create a tenant: both databases, the first superuser, the domain
    /// claim and `metadata.json` (last, so a half-made tenant is invisible).
    /// Blocking.
    pub fn create(
        &self,
        id: &str,
        domain: Option<String>,
        email: &str,
        password: &str,
    ) -> ApiResult<Metadata> {
        check_tenant_id(id)?;
        let domain = match domain {
            Some(d) => Some(claimable_domain(&d)?),
            None => None,
        };
        ensure_absent(&self.store, &meta_key(id), || {
            format!("tenant {id} already exists")
        })?;
        if let Some(d) = &domain {
            ensure_absent(&self.store, &format!("{DOMAINS_PREFIX}{d}"), || {
                format!("domain {d} is taken")
            })?;
        }
        let hash = password::hash_blocking(password)?;
        let dir = self.cfg.data_dir.join(id);
        let mut data = open_db(&self.cfg, &dir, id, DATA_DB)?;
        schema::bootstrap_data(&mut data, email, &hash)?;
        let aux = open_db(&self.cfg, &dir, id, AUX_DB)?;
        aux.execute_batch(schema::AUX_SCHEMA)?;
        for c in [&data, &aux] {
            c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
        }
        drop((data, aux));
        if let Some(d) = &domain {
            self.store.put_if_absent(
                &format!("{DOMAINS_PREFIX}{d}"),
                id.as_bytes().to_vec().into(),
            )?;
        }
        let meta = Metadata {
            id: id.into(),
            domain,
            created: schema::now(),
            deleted: None,
            purge_after: None,
        };
        let bytes =
            serde_json::to_vec_pretty(&meta).map_err(|e| ApiError::internal(e.to_string()))?;
        self.store.put_if_absent(&meta_key(id), bytes.into())?;
        Ok(meta)
    }

    /// Soft delete: mark `metadata.json` deleted with a purge time, release
    /// the domain. The data stays in the bucket until the purge time.
    pub async fn delete(self: &Arc<Self>, id: &str) -> ApiResult<Metadata> {
        check_tenant_id(id)?;
        let (store, tid, grace) = (self.store.clone(), id.to_string(), self.cfg.delete_grace);
        let meta = blocking(move || {
            let (mut meta, etag) = read_meta(&store, &tid)?;
            let now = std::time::SystemTime::now();
            meta.deleted = Some(schema::format_time(now));
            meta.purge_after = Some(schema::format_time(now + grace));
            let bytes =
                serde_json::to_vec_pretty(&meta).map_err(|e| ApiError::internal(e.to_string()))?;
            store.put_if_match(&meta_key(&tid), bytes.into(), &etag)?;
            if let Some(d) = &meta.domain {
                store.delete(&format!("{DOMAINS_PREFIX}{d}"))?;
            }
            Ok(meta)
        })
        .await?;
        if let Some(d) = &meta.domain {
            self.domains.lock().remove(d);
        }
        self.evict(id).await?;
        Ok(meta)
    }

    /// Restore a tenant's `data.db` to `target`, non-destructively: the old
    /// state is written back as new transactions on top of the history, so
    /// the answer names the txid to restore to for an undo. The tenant is
    /// evicted first and cannot load until the restore is done.
    pub async fn restore(
        self: &Arc<Self>,
        id: &str,
        target: Target,
    ) -> ApiResult<serde_json::Value> {
        check_tenant_id(id)?;
        self.read_meta(id)?;
        self.evict(id).await?;
        let _no_loads = self.load_lock(id).await;
        let (cfg, store, tid) = (self.cfg.clone(), self.store.clone(), id.to_string());
        blocking(move || {
            let keys = DbKeys::new(&tid, DATA_DB)?;
            let before = restore::read_manifest(store.as_ref(), &keys)?.head;
            let dir = cfg.data_dir.join(&tid);
            let tmp = scratch(&dir)?;
            let result = (|| {
                let r = restore::restore(&store, &keys, target, &tmp, &Default::default())?;
                let src = Connection::open(&tmp)?;
                let mut dst = open_db(&cfg, &dir, &tid, DATA_DB)?;
                rusqlite::backup::Backup::new(&src, &mut dst)?.run_to_completion(
                    1024,
                    Duration::ZERO,
                    None,
                )?;
                let head: String = dst.query_row("PRAGMA strata_flush", [], |r| r.get(0))?;
                Ok(serde_json::json!({
                    "id": tid,
                    "restoredTo": {"txid": r.txid.0, "time": r.commit.rfc3339()},
                    "head": head.parse::<u64>().ok(),
                    "undo": {"txid": before.0},
                }))
            })();
            let _ = std::fs::remove_file(&tmp);
            result
        })
        .await
    }

    /// A new tenant `new` with `id`'s `data.db` at `target` (with a fresh
    /// JWT secret, so `id`'s tokens do not work there) and an empty
    /// `auxiliary.db`. Blocking.
    pub fn fork(&self, id: &str, new: &str, target: Target) -> ApiResult<Metadata> {
        check_tenant_id(id)?;
        check_tenant_id(new)?;
        self.read_meta(id)?;
        ensure_absent(&self.store, &meta_key(new), || {
            format!("tenant {new} already exists")
        })?;
        let dir = self.cfg.data_dir.join(new);
        let tmp = scratch(&dir)?;
        let result = (|| {
            let r = restore::restore(
                &self.store,
                &DbKeys::new(id, DATA_DB)?,
                target,
                &tmp,
                &Default::default(),
            )?;
            let c = Connection::open(&tmp)?;
            c.execute(
                "UPDATE _params SET value = json_set(value, '$.strata.jwtSecret', ?1) WHERE id = 'settings'",
                [schema::new_secret()],
            )?;
            drop(c);
            strata_vfs::engine::import::import(&self.store, &DbKeys::new(new, DATA_DB)?, &tmp)?;
            let aux = open_db(&self.cfg, &dir, new, AUX_DB)?;
            aux.execute_batch(schema::AUX_SCHEMA)?;
            aux.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?;
            Ok::<_, ApiError>(r)
        })();
        let _ = std::fs::remove_file(&tmp);
        let r = result?;
        let meta = Metadata {
            id: new.into(),
            domain: None,
            created: schema::now(),
            deleted: None,
            purge_after: None,
        };
        let bytes =
            serde_json::to_vec_pretty(&meta).map_err(|e| ApiError::internal(e.to_string()))?;
        self.store.put_if_absent(&meta_key(new), bytes.into())?;
        tracing::info!(tenant = %new, from = %id, txid = r.txid.0, "forked");
        Ok(meta)
    }

    /// A loaded tenant's last commits go to the bucket, which fork and
    /// export read (else they would miss up to a sync interval): call this
    /// before them.
    pub async fn flush_loaded(&self, id: &str) -> ApiResult<()> {
        let loaded = self.map.lock().get(id).cloned();
        if let Some(t) = loaded {
            t.flush_logs().await?;
            for db in std::iter::once(t.data.clone()).chain(t.aux_if_open()) {
                db.on_writer(|c| {
                    Ok(c.query_row("PRAGMA strata_flush", [], |r| r.get::<_, String>(0))?)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Export both databases at their latest state in the bucket as a zip
    /// to `backups/<id>/backup-<time>.zip` (the seed layout: outside the
    /// tenant's prefix, so a purge keeps it); returns the key and size. Blocking.
    pub fn export(&self, id: &str) -> ApiResult<(String, usize)> {
        self.read_meta(id)?;
        let dir = self.cfg.data_dir.join(id);
        let mut entries = Vec::new();
        for db in [DATA_DB, AUX_DB] {
            let tmp = scratch(&dir)?;
            let r = restore::restore(
                &self.store,
                &DbKeys::new(id, db)?,
                Target::Latest,
                &tmp,
                &Default::default(),
            )
            .map_err(ApiError::from)
            .and_then(|_| {
                std::fs::read(&tmp)
                    .map_err(|e| ApiError::unavailable(format!("read {}: {e}", tmp.display())))
            });
            let _ = std::fs::remove_file(&tmp);
            entries.push((db, r?));
        }
        let zip = super::backup::zip_stored(&entries)
            .ok_or_else(|| ApiError::bad_request("The tenant is too large for a zip32 export."))?;
        let stamp: String = schema::now()
            .chars()
            .filter(char::is_ascii_digit)
            .take(14)
            .collect();
        let key = format!("backups/{id}/backup-{stamp}.zip");
        let size = zip.len();
        self.store.put(&key, zip.into())?;
        Ok((key, size))
    }

    /// Purge what the delete grace period kept: for every deleted tenant
    /// whose `purgeAfter` has passed, every object under `tenants/<id>/`
    /// (`metadata.json` last, so an interrupted purge is found and finished
    /// by the next one) and this node's files. Returns the purged ids.
    /// Blocking.
    pub fn purge_due(&self) -> ApiResult<Vec<String>> {
        // Fixed-width UTC times compare as strings.
        let now = schema::format_time(std::time::SystemTime::now());
        let mut purged = Vec::new();
        for meta in self.list()? {
            let due = meta.deleted.is_some()
                && meta
                    .purge_after
                    .as_deref()
                    .is_some_and(|t| t <= now.as_str());
            if !due || self.map.lock().contains_key(&meta.id) {
                continue;
            }
            let prefix = format!("tenants/{}/", meta.id);
            let last = meta_key(&meta.id);
            for o in self.store.list(&prefix)? {
                if o.key != last {
                    self.store.delete(&o.key)?;
                }
            }
            // Local files before the metadata: once it is gone, nothing
            // would find them again.
            let local = self.cfg.data_dir.join(&meta.id);
            if let Err(e) = std::fs::remove_dir_all(&local)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(tenant = %meta.id, error = %e, "purging: local files remain");
            }
            self.store.delete(&last)?;
            tracing::info!(tenant = %meta.id, "deleted tenant purged after its grace period");
            purged.push(meta.id);
        }
        Ok(purged)
    }

    /// Every tenant's metadata (deleted ones included): one delimiter LIST
    /// per thousand tenants, then their `metadata.json` files fetched 16 at
    /// a time. Blocking.
    pub fn list(&self) -> ApiResult<Vec<Metadata>> {
        const FETCHERS: usize = 16;
        let ids = strata_vfs::engine::catalog::tenants(self.store.as_ref())?;
        let chunk = ids.len().div_ceil(FETCHERS).max(1);
        let parts: Vec<ApiResult<Vec<Metadata>>> = std::thread::scope(|s| {
            let workers: Vec<_> = ids
                .chunks(chunk)
                .map(|ids| {
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for id in ids {
                            match read_meta(&self.store, id) {
                                Ok((m, _)) => out.push(m),
                                // Databases without a tenant (imported by hand),
                                // or a name the server would not accept as an id.
                                Err(e) if e.status().is_client_error() => {}
                                Err(e) => return Err(e),
                            }
                        }
                        Ok(out)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(ApiError::internal("listing tenants failed")))
                })
                .collect()
        });
        let mut out = Vec::new();
        for p in parts {
            out.extend(p?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Replication state of a loaded tenant's databases as its replicas in
    /// this process know it (`PRAGMA strata_status`): no bucket request, so
    /// a list of every tenant can carry it. `None` if it is not loaded or
    /// is being evicted (its close holds the connections while it flushes).
    /// Blocking.
    pub fn live_status(&self, id: &str) -> Option<serde_json::Value> {
        let t = self.map.lock().get(id).cloned()?;
        if t.evicting.load(Ordering::Acquire) {
            return None;
        }
        let mut out = serde_json::Map::new();
        for db in std::iter::once(t.data.clone()).chain(t.aux_if_open()) {
            // A write holds the writer: say so rather than wait.
            let v = match db.with_idle_writer(replica_status) {
                Some(Ok(v)) => v,
                Some(Err(e)) => serde_json::json!({"error": e.to_string()}),
                None => serde_json::json!({"error": "busy"}),
            };
            out.insert(db.name().into(), v);
        }
        out.insert("connections".into(), t.open_connections().into());
        Some(out.into())
    }

    /// Bytes of the tenant's two databases and their WALs on this node's
    /// disk (file lengths: a lazily opened copy is sparse, so this is the
    /// databases' size, not what was downloaded). `None`: no local copy.
    /// Blocking.
    pub fn local_bytes(&self, id: &str) -> Option<u64> {
        let dir = self.cfg.data_dir.join(id);
        let len = |name: &str| std::fs::metadata(dir.join(name)).ok().map(|m| m.len());
        len(DATA_DB)?;
        Some(
            [DATA_DB, AUX_DB]
                .iter()
                .flat_map(|db| [len(db), len(&format!("{db}-wal"))])
                .map(|n| n.unwrap_or(0))
                .sum(),
        )
    }

    /// Replication state of a tenant's databases on this node. Blocking.
    pub fn lag(&self, id: &str) -> ApiResult<serde_json::Value> {
        let mut out = serde_json::Map::new();
        for db in [DATA_DB, AUX_DB] {
            let keys = DbKeys::new(id, db)?;
            let local = self.cfg.data_dir.join(id).join(db);
            let v = match strata_vfs::engine::status::local_status(
                &local,
                self.store.as_ref(),
                &keys,
            ) {
                Ok(s) => serde_json::json!({
                    "unreplicated": s.unreplicated(),
                    "lagMs": s.lag().as_millis() as u64,
                    "bucketHead": s.bucket_head.map(|t| t.0),
                }),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            };
            out.insert(db.into(), v);
        }
        Ok(out.into())
    }
}

/// `PRAGMA strata_status` of an open connection as JSON.
fn replica_status(c: &Connection) -> ApiResult<serde_json::Value> {
    let line: String = c.query_row("PRAGMA strata_status", [], |r| r.get(0))?;
    // `committed=1 replicated=1 lag_ms=0 ...`; the numbers come first.
    let num = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (committed, replicated) = (num("committed"), num("replicated"));
    Ok(serde_json::json!({
        "committed": committed,
        "replicated": replicated,
        "unreplicated": committed.saturating_sub(replicated),
        "lagMs": num("lag_ms"),
    }))
}

/// 409 if `key` exists.
fn ensure_absent(store: &Store, key: &str, msg: impl FnOnce() -> String) -> ApiResult<()> {
    match store.get(key) {
        Ok(_) => Err(ApiError::new(axum::http::StatusCode::CONFLICT, msg())),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn read_meta(
    store: &Store,
    id: &str,
) -> ApiResult<(Metadata, strata_vfs::bucket::ETag)> {
    check_tenant_id(id)?;
    match store.get(&meta_key(id)) {
        Ok(o) => {
            let m: Metadata = serde_json::from_slice(&o.data)
                .map_err(|e| ApiError::internal(format!("{}: {e}", meta_key(id))))?;
            Ok((m, o.etag))
        }
        Err(e) if e.is_not_found() => Err(ApiError::not_found()),
        Err(e) => Err(e.into()),
    }
}

/// A scratch file name under `dir` for a restore.
fn scratch(dir: &Path) -> ApiResult<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiError::unavailable(format!("create {}: {e}", dir.display())))?;
    Ok(dir.join(format!("restore-{}.db", schema::new_id())))
}
