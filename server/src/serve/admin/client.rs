//! `strata tenant ...`: the admin API from the command line. A minimal
//! HTTP/1.1 client over `TcpStream` (plain http to the node; put TLS in
//! front of the server, not in it), so the binary carries no second HTTP
//! stack.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Subcommand)]
pub enum TenantCmd {
    /// Create a tenant: both databases, the first superuser, metadata.json.
    Create {
        id: String,
        /// The tenant's own domain (requests with this Host reach it).
        #[arg(long)]
        domain: Option<String>,
        /// The first superuser, EMAIL:PASSWORD.
        #[arg(long)]
        superuser: String,
    },
    /// List tenants and whether each is loaded on the server.
    List,
    /// One tenant: metadata, state, replication lag on the server.
    Show { id: String },
    /// Flush and close a loaded tenant (the next request loads it again).
    Evict { id: String },
    /// Restore a tenant's data.db to a txid or time, as new transactions on
    /// top of its history; the answer names the txid to restore for an undo.
    Restore {
        id: String,
        #[arg(long, conflicts_with = "time")]
        txid: Option<u64>,
        /// RFC 3339, e.g. 2026-11-25T10:00:00Z.
        #[arg(long)]
        time: Option<String>,
    },
    /// Copy a tenant's data.db at a txid or time (default: latest) into a new tenant.
    Fork {
        id: String,
        new_id: String,
        #[arg(long, conflicts_with = "time")]
        txid: Option<u64>,
        #[arg(long)]
        time: Option<String>,
    },
    /// Hand a tenant to another node of the cluster with no failed
    /// request: its requests wait while it moves.
    Move {
        id: String,
        /// The node to move it to (see `strata node list`).
        #[arg(long)]
        to: String,
    },
    /// Export both databases (latest state in the bucket) as a zip to
    /// backups/<id>/backup-<time>.zip in the bucket.
    Export { id: String },
    /// Soft-delete a tenant: gone from the API now, data kept for the grace period.
    Delete { id: String },
}

/// Run a tenant subcommand against `server` (e.g. `http://127.0.0.1:8090`).
pub fn run(server: &str, token: Option<&str>, cmd: TenantCmd) -> Result<()> {
    let (method, path, body) = match &cmd {
        TenantCmd::Create {
            id,
            domain,
            superuser,
        } => {
            let Some((email, password)) = superuser.split_once(':') else {
                bail!("--superuser must be EMAIL:PASSWORD");
            };
            let body = json!({"id": id, "domain": domain, "superuser": {"email": email, "password": password}});
            ("POST", "/_strata/api/tenants".to_string(), Some(body))
        }
        TenantCmd::List => ("GET", "/_strata/api/tenants".into(), None),
        TenantCmd::Show { id } => ("GET", format!("/_strata/api/tenants/{id}"), None),
        TenantCmd::Evict { id } => ("POST", format!("/_strata/api/tenants/{id}/evict"), None),
        TenantCmd::Restore { id, txid, time } => (
            "POST",
            format!("/_strata/api/tenants/{id}/restore"),
            Some(json!({"txid": txid, "time": time})),
        ),
        TenantCmd::Fork {
            id,
            new_id,
            txid,
            time,
        } => (
            "POST",
            format!("/_strata/api/tenants/{id}/fork"),
            Some(json!({"newId": new_id, "txid": txid, "time": time})),
        ),
        TenantCmd::Move { id, to } => (
            "POST",
            format!("/_strata/api/tenants/{id}/move"),
            Some(json!({"to": to})),
        ),
        TenantCmd::Export { id } => ("POST", format!("/_strata/api/tenants/{id}/export"), None),
        TenantCmd::Delete { id } => ("DELETE", format!("/_strata/api/tenants/{id}"), None),
    };
    let v = checked(request(server, method, &path, token, body.as_ref())?)?;
    if let TenantCmd::List = cmd {
        for t in v["items"].as_array().into_iter().flatten() {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                t["id"].as_str().unwrap_or(""),
                t["state"].as_str().unwrap_or(""),
                t["domain"].as_str().unwrap_or("-"),
                t["node"].as_str().unwrap_or("-"),
                if t["deleted"].is_null() {
                    ""
                } else {
                    "deleted"
                }
            );
        }
    } else {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum NodeCmd {
    /// The nodes on the server's bucket, as that server sees them: id,
    /// address, state, heartbeat age, tenants loaded.
    List,
    /// Drain the server's node: it takes no new tenants and hands every
    /// loaded one to another node (SIGTERM does the same before it stops).
    Drain,
}

/// Run a node subcommand against `server`.
pub fn run_node(server: &str, token: Option<&str>, cmd: NodeCmd) -> Result<()> {
    match cmd {
        NodeCmd::List => {
            let v = checked(request(server, "GET", "/_strata/api/nodes", token, None)?)?;
            for n in v["items"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{} ms\t{} tenants{}",
                    n["id"].as_str().unwrap_or(""),
                    n["advertise"].as_str().unwrap_or(""),
                    n["state"].as_str().unwrap_or(""),
                    n["heartbeatAgeMs"],
                    n["tenants"],
                    if n["self"] == true {
                        "\t(this node)"
                    } else {
                        ""
                    }
                );
            }
        }
        NodeCmd::Drain => {
            let v = checked(request(
                server,
                "POST",
                "/_strata/api/node/drain",
                token,
                None,
            )?)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

/// The answer's JSON if it is a success; else the server's message as an
/// error of the kind its status says (so the exit code says it too).
fn checked((status, v): (u16, Value)) -> Result<Value> {
    if !(200..300).contains(&status) {
        let msg = v["message"]
            .as_str()
            .unwrap_or("request failed")
            .to_string();
        // The server's status back to an error kind, so the exit code says it.
        let e = match status {
            404 => strata_vfs::Error::not_found(msg),
            409 => strata_vfs::Error::conflict(msg),
            503 => strata_vfs::Error::unavailable(msg),
            400..=499 => strata_vfs::Error::invalid(format!("{status}: {msg}")),
            _ => return Err(anyhow::anyhow!("server answered {status}: {msg}")),
        };
        return Err(e.into());
    }
    Ok(v)
}

/// One request with `Connection: close`; the JSON body of the answer.
pub fn request(
    server: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let host = server
        .strip_prefix("http://")
        .with_context(|| format!("--server must be http://HOST:PORT, not {server}"))?
        .trim_end_matches('/');
    let mut s = TcpStream::connect(host)
        .map_err(|e| strata_vfs::Error::unavailable(format!("connect to {server}: {e}")))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let v = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body)
            .with_context(|| format!("server answered {status} with non-JSON: {body}"))?
    };
    Ok((status, v))
}
