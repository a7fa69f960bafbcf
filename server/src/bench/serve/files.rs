//! `--serve-only files`: file uploads (multipart POSTs of new records) and
//! downloads (`GET /api/files/...`) through `strata serve` and the real
//! PocketBase, and the same bytes put to and read from the bucket directly,
//! all in one run: MB/s, and strata's ratios to both.

use super::http::{Req, load};
use super::pocketbase::PocketBase;
use super::side::{Side, create_tenant, superuser_token};
use super::strata::Server;
use super::{Opts, Table};
use anyhow::{Result, ensure};
use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const BOUNDARY: &str = "strataBenchBoundary";

/// A multipart body with one file part `f`.
fn upload_body(data: &[u8], i: u64) -> Bytes {
    let mut b = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"file{i}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    b.extend_from_slice(data);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b.into()
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Upload `files` on `side`, then download each once: (upload MB/s,
/// download MB/s).
async fn on_side(side: &Side, files: &[Bytes], conc: usize) -> Result<(f64, f64)> {
    let p = side.prefix.clone();
    let mut c = side.peer.conn().await?;
    let token = superuser_token(side, &mut c).await?;
    let largest = files.iter().map(Bytes::len).max().unwrap_or(0) as u64;
    c.call(
        Method::POST,
        &format!("{p}/api/collections"),
        Some(&token),
        Some(
            json!({"name": "media", "type": "base", "listRule": "", "viewRule": "",
            "createRule": "", "fields": [{"name": "f", "type": "file", "maxSize": largest + 1}]}),
        ),
    )
    .await?;
    let total: u64 = files.iter().map(|f| f.len() as u64).sum();
    let bodies: Vec<Bytes> = files
        .iter()
        .enumerate()
        .map(|(i, f)| upload_body(f, i as u64))
        .collect();
    let path = format!("{p}/api/collections/media/records");
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let up = load(side.peer, conc, files.len() as u64, None, move |i| {
        Req::post_raw(&path, &ct, bodies[i as usize].clone())
    })
    .await?;
    up.check(&format!("{}: upload", side.name))?;
    let list = c
        .call(
            Method::GET,
            &format!("{p}/api/collections/media/records?perPage=1000&fields=id,f"),
            None,
            None,
        )
        .await?;
    let urls: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{p}/api/files/media/{}/{}",
                r["id"].as_str().unwrap_or(""),
                r["f"].as_str().unwrap_or("")
            )
        })
        .collect();
    ensure!(
        urls.len() == files.len(),
        "{}: {} of {} files listed",
        side.name,
        urls.len(),
        files.len()
    );
    let n = urls.len() as u64;
    let down = load(side.peer, conc, n, None, move |i| {
        Req::get(urls[i as usize].clone())
    })
    .await?;
    down.check(&format!("{}: download", side.name))?;
    Ok((mb_per_s(total, up.elapsed), mb_per_s(total, down.elapsed)))
}

/// The same files put to and read from the bucket directly, `conc` at a
/// time: (PUT MB/s, GET MB/s).
fn direct(bucket: &str, files: &[Bytes], conc: usize) -> Result<(f64, f64)> {
    let url = if bucket.contains("://") {
        bucket.to_string()
    } else {
        std::fs::create_dir_all(bucket)?;
        format!("file://{}", std::fs::canonicalize(bucket)?.display())
    };
    let store = strata_vfs::bucket::open_bucket(&url)?;
    let total: u64 = files.iter().map(|f| f.len() as u64).sum();
    let key = |i: usize| format!("bench/direct/{i}.bin");
    let run = |put: bool| -> Result<Duration> {
        let t = Instant::now();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..conc.max(1))
                .map(|w| {
                    let store = store.clone();
                    s.spawn(move || -> Result<()> {
                        for i in (w..files.len()).step_by(conc.max(1)) {
                            if put {
                                store.put(&key(i), files[i].clone())?;
                            } else {
                                let got = store.get(&key(i))?.data;
                                ensure!(got.len() == files[i].len(), "short read");
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| anyhow::bail!("worker panicked"))
            })
        })?;
        Ok(t.elapsed())
    };
    let put = run(true)?;
    let get = run(false)?;
    Ok((mb_per_s(total, put), mb_per_s(total, get)))
}

pub async fn run(
    dir: &Path,
    bucket: &str,
    pb_bin: &Path,
    o: &Opts,
    table: &mut Table,
) -> Result<()> {
    let size = (o.serve_file_kib << 10) as usize;
    let files: Vec<Bytes> = (0..o.serve_files)
        .map(|_| {
            let mut b = vec![0u8; size];
            rand::Rng::fill(&mut rand::rng(), &mut b[..]);
            Bytes::from(b)
        })
        .collect();
    let conc = o.serve_file_concurrency;
    println!(
        "files: {} files of {} KiB, {conc} at a time: strata and PocketBase, then the bucket directly",
        o.serve_files, o.serve_file_kib
    );
    let s = Server::start(dir, "files", bucket, &[], &[])?;
    create_tenant(&s, "files").await?;
    let (st_up, st_down) = on_side(&Side::strata(&s, "files"), &files, conc).await?;
    let pb = PocketBase::start(pb_bin, &dir.join("pb-files"))?;
    let (pb_up, pb_down) = on_side(&Side::pocketbase(&pb), &files, conc).await?;
    drop(pb);
    s.stop()?;
    let (put, get) = direct(bucket, &files, conc)?;
    let what = |dir: &str| format!("{dir} {} KiB files ({conc} at a time)", o.serve_file_kib);
    table.row(
        &what("upload"),
        format!("strata {st_up:.0} MB/s"),
        format!(
            "PocketBase {pb_up:.0} MB/s ({:.2}x); bucket PUT {put:.0} MB/s ({:.2}x)",
            st_up / pb_up,
            st_up / put
        ),
    );
    table.row(
        &what("download"),
        format!("strata {st_down:.0} MB/s"),
        format!(
            "PocketBase {pb_down:.0} MB/s ({:.2}x); bucket GET {get:.0} MB/s ({:.2}x)",
            st_down / pb_down,
            st_down / get
        ),
    );
    Ok(())
}
