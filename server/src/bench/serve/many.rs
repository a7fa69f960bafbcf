//! Many active tenants: one strata process holding `--serve-pb-tenants`
//! tenants against as many PocketBase processes, one per tenant (as a
//! container-per-tenant host runs them). The same wrk run spreads one
//! connection per tenant (one thread each) over either, and the memory of
//! every process is added up.

use super::pocketbase::PocketBase;
use super::side::{self, Side, compare, create_tenant, memory, seed};
use super::strata::Server;
use super::wrk::Endpoint;
use super::{Opts, Table, bar};
use anyhow::Result;
use std::path::Path;

pub async fn run(
    dir: &Path,
    bucket: &str,
    pb_bin: &Path,
    o: &Opts,
    table: &mut Table,
) -> Result<()> {
    let n = o.serve_pb_tenants.max(1);
    let records = o.serve_pb_records;
    let s = Server::start(dir, "many", bucket, &[], &[])?;
    let progress = bar(n as u64, "strata: tenants");
    let mut strata = Vec::new();
    for i in 0..n {
        let id = format!("m{i:04}");
        create_tenant(&s, &id).await?;
        let side = Side::strata(&s, &id);
        seed(&side, records, 4, false).await?;
        strata.push(side);
        progress.inc(1);
    }
    progress.finish_and_clear();
    let progress = bar(n as u64, "PocketBase: processes");
    let mut pbs = Vec::new();
    let mut pocketbase = Vec::new();
    for i in 0..n {
        let pb = PocketBase::start(pb_bin, &dir.join(format!("pb-many-{i:04}")))?;
        let side = Side::pocketbase(&pb);
        seed(&side, records, 4, false).await?;
        pocketbase.push(side);
        pbs.push(pb);
        progress.inc(1);
    }
    progress.finish_and_clear();
    println!(
        "{n} tenants of {records} records each: in one strata process, and in {n} PocketBase processes"
    );
    let ends = |v: &[Side]| -> Vec<Endpoint> {
        v.iter()
            .map(|x| Endpoint {
                addr: x.peer.addr,
                prefix: x.prefix.clone(),
            })
            .collect()
    };
    let (se, pe) = (ends(&strata), ends(&pocketbase));
    let spids = [s.pid()];
    let ppids: Vec<u32> = pbs.iter().map(PocketBase::pid).collect();
    let mixes = side::mixes(records);
    for name in ["getOne", "list", "create"] {
        let Some(mix) = mixes.iter().find(|m| m.name == name) else {
            continue;
        };
        let (a, b) = compare(dir, o, mix, (&se, &spids), (&pe, &ppids), n)?;
        side::row(
            table,
            &format!("{name}, {n} tenants ({n} connections)"),
            &a,
            &b,
        );
    }
    let sm = memory(s.pid());
    let pm = ppids
        .iter()
        .map(|&p| memory(p))
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    println!(
        "memory with {n} tenants: strata peak {} MiB, now {} MiB; {n} PocketBase processes: peaks {} MiB, now {} MiB in all",
        sm.0, sm.1, pm.0, pm.1
    );
    table.row(
        &format!("memory, {n} active tenants"),
        format!(
            "strata peak {} MiB, now {} MiB · {n} PocketBase processes: peaks {} MiB, now {} MiB in all",
            sm.0, sm.1, pm.0, pm.1
        ),
        format!("{:.3}x PocketBase's total RSS", sm.1 as f64 / pm.1.max(1) as f64),
    );
    drop(pbs);
    s.stop()
}
