//! File fields run as one scenario against the real PocketBase and strata,
//! step by step: multipart uploads and PocketBase's stored names, the
//! upload errors (size, type, count, unknown names), downloads with their
//! headers, ranges and thumbs, `+`/`-` modifiers, protected files and file
//! tokens, and files going with their record. On strata, the bucket is
//! checked too: files under `tenants/acme/storage/`, nothing left by a
//! rejected upload, nothing left after a delete.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::io::Cursor;
use strata_tests::http::{Response, error_codes};
use strata_tests::side::{Side, Steps, same_steps};

const BOUNDARY: &str = "strataFileTestBoundary";

/// One multipart part: a text field, or a file.
enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, &'a [u8]),
}

fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend(format!("--{BOUNDARY}\r\n").as_bytes());
        match p {
            Part::Text(name, value) => {
                out.extend(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            Part::File(name, file, data) => {
                out.extend(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                out.extend(*data);
                out.extend(b"\r\n");
            }
        }
    }
    out.extend(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// A 300x200 PNG.
fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut buf = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut buf, image::ImageFormat::Png)
        .unwrap();
    buf.into_inner()
}

/// An image's width and height, or `None` if the bytes are none.
fn dims(bytes: &[u8]) -> Option<(u32, u32)> {
    let img = image::load_from_memory(bytes).ok()?;
    Some((img.width(), img.height()))
}

/// A stored name with its random parts (`_` or a stem's end, then 10
/// characters of `[a-z0-9]`, before the extension or the end) as `R`.
fn shape(name: &str) -> String {
    let (stem, ext) = match name.find('.') {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    let Some(cut) = stem.len().checked_sub(10) else {
        return name.to_string();
    };
    let (base, random) = stem.split_at(cut);
    let random_ok = random
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    match base.strip_suffix('_') {
        // A stem shorter than 3 got a random part of its own.
        Some(base) if random_ok && (10..=12).contains(&base.len()) => {
            format!("{}R_R{ext}", &base[..base.len() - 10])
        }
        Some(base) if random_ok => format!("{base}_R{ext}"),
        _ => name.to_string(),
    }
}

/// A record's file fields with their names' shapes.
fn file_shapes(rec: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for f in ["one", "many", "small", "png", "secret"] {
        let v = match &rec[f] {
            Value::String(s) if s.is_empty() => json!(""),
            Value::String(s) => json!(shape(s)),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|n| json!(shape(n.as_str().unwrap_or(""))))
                    .collect(),
            ),
            other => other.clone(),
        };
        out.insert(f.into(), v);
    }
    Value::Object(out)
}

fn write_seen(r: &Response) -> Value {
    if r.status >= 400 {
        json!({"status": r.status, "message": r.body["message"], "codes": error_codes(&r.body),
               "data": r.body["data"]})
    } else {
        json!({"status": r.status, "files": file_shapes(&r.body)})
    }
}

/// What is compared of a download: status, the headers PocketBase sets (the
/// file name's random part normalized), the body's length, and an image's
/// size.
fn file_seen(r: &Response) -> Value {
    let h = |n: &str| r.header(n).map(str::to_string);
    let disposition = h("content-disposition").map(|d| {
        let (kind, name) = d.split_once("; filename=").unwrap_or((&d, ""));
        format!("{kind}; {}", shape(name.trim_matches('"')))
    });
    json!({
        "status": r.status,
        "type": h("content-type"),
        "disposition": disposition,
        "cache": h("cache-control"),
        "csp": h("content-security-policy"),
        "ranges": h("accept-ranges"),
        "range": h("content-range"),
        "len": r.bytes.len(),
        "dims": dims(&r.bytes),
    })
}

fn name_of(rec: &Value, field: &str, i: usize) -> String {
    match &rec[field] {
        Value::Array(a) => a.get(i).and_then(Value::as_str).unwrap_or("").into(),
        v => v.as_str().unwrap_or("").into(),
    }
}

struct Run {
    steps: Vec<(String, Value)>,
    /// Strata only: the keys left in the record's storage folder at the end.
    left: Option<Vec<String>>,
}

fn scenario(side: &Side) -> Result<Run> {
    let su = side.superuser()?;
    let mut steps: Vec<(String, Value)> = Vec::new();
    let file = |name: &str, o: Value| {
        let mut f = json!({"name": name, "type": "file"});
        f.as_object_mut()
            .unwrap()
            .extend(o.as_object().unwrap().clone());
        f
    };
    let r = side.api(
        "POST",
        "/api/collections",
        Some(&su),
        Some(
            json!({"name": "docs", "type": "base", "listRule": "", "viewRule": "",
            "createRule": "", "updateRule": "", "deleteRule": "",
            "fields": [
                {"name": "title", "type": "text"},
                file("one", json!({"maxSelect": 1, "thumbs": ["50x0", "100x50t", "100x50f"]})),
                file("many", json!({"maxSelect": 3})),
                file("small", json!({"maxSize": 100})),
                file("png", json!({"mimeTypes": ["image/png"]})),
                file("secret", json!({"protected": true})),
            ]}),
        ),
    )?;
    ensure!(
        r.status == 200,
        "{}: create collection: {}",
        side.name(),
        r.text
    );
    let coll_id = r.body["id"].as_str().unwrap_or("").to_string();
    let bad = side.api(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "bad", "type": "base",
            "fields": [file("f", json!({"thumbs": ["100x100", "abc", "0x0"]}))]})),
    )?;
    steps.push((
        "bad thumbs".into(),
        json!({"status": bad.status, "codes": error_codes(&bad.body)}),
    ));

    let ctype = format!("Content-Type: multipart/form-data; boundary={BOUNDARY}");
    let send = |method: &str, path: &str, parts: &[Part]| {
        side.raw(
            method,
            path,
            std::slice::from_ref(&ctype),
            &multipart(parts),
        )
    };
    let records = "/api/collections/docs/records";
    let image = png();
    let text = b"hello, files! 0123456789".as_slice();

    // Rejected uploads: nothing is stored.
    let big = vec![b'x'; 101];
    for (label, parts) in [
        ("too big", vec![Part::File("small", "big.txt", &big)]),
        ("wrong type", vec![Part::File("png", "fake.png", text)]),
        (
            "too many",
            vec![
                Part::File("many", "a.txt", text),
                Part::File("many", "b.txt", text),
                Part::File("many", "c.txt", text),
                Part::File("many", "d.txt", text),
            ],
        ),
    ] {
        let r = send("POST", records, &parts)?;
        let mut seen = write_seen(&r);
        // The wrong-type message names the stored (random) name.
        if let Some(m) = seen["data"]["png"]["message"].as_str() {
            seen["data"]["png"]["message"] = json!(m.split_once(" mime").map_or(m, |x| x.1));
        }
        steps.push((label.into(), seen));
    }
    let r = side.api("POST", records, None, Some(json!({"one": "foo.txt"})))?;
    steps.push(("a name instead of a file".into(), write_seen(&r)));
    if let Some(keys) = side.bucket_keys("tenants/acme/storage/")? {
        ensure!(keys.is_empty(), "rejected uploads left {keys:?}");
    }

    // A record with files.
    let r = send(
        "POST",
        records,
        &[
            Part::Text("title", "first"),
            Part::File("one", "My Photo.png", &image),
            Part::File("many", "a.txt", text),
            Part::File("many", "notes.tar.gz", text),
            Part::File("secret", "s.txt", text),
        ],
    )?;
    steps.push(("create with files".into(), write_seen(&r)));
    let rec = r.body.clone();
    let id = rec["id"].as_str().context("record id")?.to_string();
    let one = name_of(&rec, "one", 0);
    let a = name_of(&rec, "many", 0);
    let url = |name: &str, q: &str| format!("/api/files/docs/{id}/{name}{q}");
    if let Some(keys) = side.bucket_keys(&format!("tenants/acme/storage/{coll_id}/{id}/"))? {
        ensure!(keys.len() == 4, "the bucket holds {keys:?}");
    }

    // Downloads.
    let get = |path: &str, headers: &[String]| side.raw("GET", path, headers, b"");
    let r = get(&url(&one, ""), &[])?;
    ensure!(
        r.bytes == image,
        "{}: the image came back changed",
        side.name()
    );
    steps.push(("get image".into(), file_seen(&r)));
    let r = get(&url(&a, ""), &[])?;
    ensure!(
        r.bytes == text,
        "{}: the text came back changed",
        side.name()
    );
    steps.push(("get text".into(), file_seen(&r)));
    steps.push((
        "download".into(),
        file_seen(&get(&url(&one, "?download=1"), &[])?),
    ));
    for range in ["bytes=0-4", "bytes=-5", "bytes=7-", "bytes=500-600"] {
        let r = get(&url(&a, ""), &[format!("Range: {range}")])?;
        let mut seen = file_seen(&r);
        seen["body"] = json!(if r.status == 206 {
            r.text.clone()
        } else {
            String::new()
        });
        steps.push((format!("range {range}"), seen));
    }
    for thumb in ["100x100", "50x0", "100x50t", "100x50f", "200x200", "abc"] {
        let r = get(&url(&one, &format!("?thumb={thumb}")), &[])?;
        steps.push((
            format!("thumb {thumb}"),
            json!({"status": r.status, "dims": dims(&r.bytes),
                   "disposition": r.header("content-disposition").map(|d| shape(d.split_once("filename=").map_or("", |x| x.1).trim_matches('"')))}),
        ));
    }
    let r = get(&url(&a, "?thumb=100x100"), &[])?;
    steps.push((
        "thumb of text".into(),
        json!({"status": r.status, "len": r.bytes.len()}),
    ));
    for (label, path) in [
        ("unknown file", url("nope_abcdefghij.txt", "")),
        (
            "unknown record",
            format!("/api/files/docs/aaaaaaaaaaaaaaa/{a}"),
        ),
        ("unknown collection", format!("/api/files/nope/{id}/{a}")),
    ] {
        let r = get(&path, &[])?;
        steps.push((
            label.into(),
            json!({"status": r.status, "message": r.body["message"]}),
        ));
    }

    // Protected: the view rule decides, for the holder of a file token.
    let secret = name_of(&rec, "secret", 0);
    let r = get(&url(&secret, ""), &[])?;
    steps.push(("protected, public view rule".into(), json!(r.status)));
    let r = side.api(
        "PATCH",
        "/api/collections/docs",
        Some(&su),
        Some(json!({"viewRule": "@request.auth.id != ''"})),
    )?;
    ensure!(
        r.status == 200,
        "{}: set view rule: {}",
        side.name(),
        r.text
    );
    let r = get(&url(&secret, ""), &[format!("Authorization: {su}")])?;
    steps.push(("protected without token".into(), json!(r.status)));
    let r = get(&url(&a, ""), &[])?;
    steps.push(("unprotected, closed view rule".into(), json!(r.status)));
    let r = side.api("POST", "/api/files/token", None, None)?;
    steps.push((
        "token as guest".into(),
        json!([r.status, r.body["message"]]),
    ));
    let r = side.api("POST", "/api/files/token", Some(&su), None)?;
    let token = r.body["token"].as_str().unwrap_or("").to_string();
    steps.push(("token".into(), json!([r.status, token.split('.').count()])));
    let r = get(&url(&secret, &format!("?token={token}")), &[])?;
    ensure!(r.bytes == text, "{}: protected file changed", side.name());
    steps.push(("protected with token".into(), json!(r.status)));
    let r = get(&url(&secret, &format!("?token={su}")), &[])?;
    steps.push(("protected with an auth token".into(), json!(r.status)));

    // Updates: modifiers, replacing, removing.
    let path = format!("{records}/{id}");
    let r = send("PATCH", &path, &[Part::File("many+", "c.txt", text)])?;
    steps.push(("append".into(), write_seen(&r)));
    let before = side.bucket_keys(&format!("tenants/acme/storage/{coll_id}/{id}/"))?;
    let r = send("PATCH", &path, &[Part::File("+many", "z.txt", text)])?;
    steps.push(("prepend (too many)".into(), write_seen(&r)));
    // The upload was put before the write failed; it goes again (in the
    // background).
    if let Some(before) = before {
        let mut now = vec![];
        for _ in 0..50 {
            now = side
                .bucket_keys(&format!("tenants/acme/storage/{coll_id}/{id}/"))?
                .unwrap_or_default();
            if now == before {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ensure!(
            now == before,
            "a failed update left {now:?} (before: {before:?})"
        );
    }
    let r = side.api(
        "PATCH",
        &path,
        None,
        Some(json!({"many-": [a, "nope.txt"]})),
    )?;
    steps.push(("remove".into(), write_seen(&r)));
    let r = side.api("PATCH", &path, None, Some(json!({"many": ["zzz.txt"]})))?;
    steps.push(("unknown name".into(), write_seen(&r)));
    let r = send("PATCH", &path, &[Part::File("small", "big.txt", &big)])?;
    steps.push(("too big, on an update".into(), write_seen(&r)));
    let r = send("PATCH", &path, &[Part::File("one", "second.png", &image)])?;
    steps.push(("replace".into(), write_seen(&r)));
    let r = get(&url(&one, ""), &[])?;
    steps.push(("replaced file".into(), json!(r.status)));
    let r = get(&url(&a, ""), &[])?;
    steps.push(("removed file".into(), json!(r.status)));

    let r = side.api("DELETE", &path, None, None)?;
    steps.push(("delete".into(), json!(r.status)));
    let r = get(&url(&secret, &format!("?token={token}")), &[])?;
    steps.push(("file of a deleted record".into(), json!(r.status)));
    // Deletion runs after the commit, in the background.
    let left = match side.bucket_keys(&format!("tenants/acme/storage/{coll_id}/{id}/"))? {
        None => None,
        Some(_) => {
            let mut left = vec![];
            for _ in 0..50 {
                left = side
                    .bucket_keys(&format!("tenants/acme/storage/{coll_id}/{id}/"))?
                    .unwrap_or_default();
                if left.is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Some(left)
        }
    };
    Ok(Run { steps, left })
}

#[test]
fn file_fields_behave_as_in_pocketbase() -> Result<()> {
    let pb = scenario(&Side::pocketbase()?)?;
    let st = scenario(&Side::strata(&[])?)?;
    let (pb_steps, st_steps): (&Steps, &Steps) = (&pb.steps, &st.steps);
    same_steps(pb_steps, st_steps)?;
    let left = st.left.context("strata has a bucket")?;
    ensure!(left.is_empty(), "files left after the delete: {left:?}");
    Ok(())
}

/// A strata node on `b` with tenant `acme` and its superuser's token.
fn node(
    b: &strata_tests::Backend,
) -> Result<(strata_tests::serve::Server, tempfile::TempDir, String)> {
    let dir = tempfile::tempdir()?;
    let s = strata_tests::serve::Server::start(b, &dir.path().join("node"), &[])?;
    s.create_tenant("acme", None)?;
    let su = s.superuser_token("acme")?;
    Ok((s, dir, su))
}

/// A public collection `name` of `acme` with the one file field `f`
/// (`options` added to it).
fn file_collection(
    s: &strata_tests::serve::Server,
    su: &str,
    name: &str,
    options: Value,
) -> Result<()> {
    let mut f = json!({"name": "f", "type": "file"});
    f.as_object_mut()
        .unwrap()
        .extend(options.as_object().cloned().unwrap_or_default());
    let r = s.api(
        "acme",
        "POST",
        "/api/collections",
        Some(su),
        Some(
            json!({"name": name, "type": "base", "listRule": "", "viewRule": "",
            "createRule": "", "fields": [f]}),
        ),
    )?;
    ensure!(r.status == 200, "create collection {name}: {r:?}");
    Ok(())
}

/// A new record of `acme`'s `coll` with `data` in `f`, as a guest.
fn upload(
    s: &strata_tests::serve::Server,
    coll: &str,
    file: &str,
    data: &[u8],
) -> Result<Response> {
    let body = multipart(&[Part::File("f", file, data)]);
    let head = format!(
        "POST /t/acme/api/collections/{coll}/records HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}"
    );
    strata_tests::http::raw(&s.addr, &head, body.len(), &body)
}

/// The download path of the file of record `r` (an upload's answer).
fn file_path(coll: &str, r: &Response) -> String {
    format!(
        "/t/acme/api/files/{coll}/{}/{}",
        r.body["id"].as_str().unwrap_or(""),
        r.body["f"].as_str().unwrap_or("")
    )
}

/// Bucket outage (the loopback S3 server stopped): a file served before is
/// served again from the node's cache; an upload is a 503 with a clear
/// message and creates no record.
#[test]
fn cached_files_are_served_through_a_bucket_outage_and_uploads_get_503() -> Result<()> {
    use strata_tests::Backend;
    let mut b = Backend::s3()?;
    let (s, _dir, su) = node(&b)?;
    file_collection(&s, &su, "docs", json!({}))?;
    let r = upload(&s, "docs", "a.txt", b"some bytes")?;
    ensure!(r.status == 200, "upload: {r:?}");
    let path = file_path("docs", &r);
    let get = || strata_tests::http::raw(&s.addr, &format!("GET {path} HTTP/1.1"), 0, b"");
    ensure!(get()?.bytes == b"some bytes", "first read");
    if let Backend::S3(server, _) = &mut b {
        server.stop();
    }
    let r = get()?;
    ensure!(
        r.status == 200 && r.bytes == b"some bytes",
        "cached read during the outage: {r:?}"
    );
    let r = upload(&s, "docs", "b.txt", b"some bytes")?;
    ensure!(
        r.status == 503 && r.header("retry-after").is_some(),
        "upload during the outage: {r:?}"
    );
    ensure!(
        r.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("unavailable")),
        "a clear message: {r:?}"
    );
    let r = s.api("acme", "GET", "/api/collections/docs/records", None, None)?;
    ensure!(
        r.body["totalItems"] == 1,
        "the failed upload made a record: {r:?}"
    );
    Ok(())
}

/// The official JS SDK, unmodified (`tests/sdk/files.mjs`): FormData
/// uploads, `pb.files.getURL` with thumbs and downloads, `getToken` for
/// protected files, `+`/`-` modifiers, a mistyped upload, deletion; on the
/// real PocketBase and on strata.
#[test]
fn the_js_sdk_uploads_and_reads_files() -> Result<()> {
    use strata_tests::Backend;
    use strata_tests::pocketbase::PocketBase;
    use strata_tests::sdk;
    use strata_tests::serve::Server;
    let expect = "files: 8 checks passed";
    let pb = PocketBase::start()?;
    sdk::run("files.mjs", &format!("http://{}", pb.addr), &[], expect).context("on pocketbase")?;
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let s = Server::start(&b, &dir.path().join("node"), &[])?;
    s.create_tenant("sdk", None)?;
    sdk::run(
        "files.mjs",
        &format!("http://{}/t/sdk", s.addr),
        &[],
        expect,
    )
    .with_context(|| format!("on strata:\n{}", s.log_text()))
}

/// A file token is good for its own tenant only, and a file name in a URL
/// can never reach outside the record's folder.
#[test]
fn a_file_token_of_another_tenant_or_a_path_trick_reads_nothing() -> Result<()> {
    use strata_tests::Backend;
    use strata_tests::serve::Server;
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let s = Server::start(&b, &dir.path().join("node"), &[])?;
    let mut files = vec![];
    for t in ["one", "two"] {
        s.create_tenant(t, None)?;
        let su = s.superuser_token(t)?;
        let r = s.api(
            t,
            "POST",
            "/api/collections",
            Some(&su),
            Some(json!({"name": "docs", "type": "base", "listRule": "",
                "viewRule": "@request.auth.id != ''", "createRule": "",
                "fields": [{"name": "f", "type": "file", "protected": true}]})),
        )?;
        ensure!(r.status == 200, "{t}: collection: {r:?}");
        let body = multipart(&[Part::File("f", "../../../../etc/passwd", b"mine")]);
        let head = format!(
            "POST /t/{t}/api/collections/docs/records HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}"
        );
        let r = strata_tests::http::raw(&s.addr, &head, body.len(), &body)?;
        ensure!(r.status == 200, "{t}: upload: {r:?}");
        let name = r.body["f"].as_str().unwrap_or("").to_string();
        ensure!(
            name.starts_with("passwd_") && !name.contains('/'),
            "stored as {name:?}"
        );
        let token = s.api(t, "POST", "/api/files/token", Some(&su), None)?.body["token"]
            .as_str()
            .unwrap_or("")
            .to_string();
        files.push((
            t,
            r.body["id"].as_str().unwrap_or("").to_string(),
            name,
            token,
        ));
    }
    let get = |t: &str, path: &str| {
        strata_tests::http::raw(&s.addr, &format!("GET /t/{t}{path} HTTP/1.1"), 0, b"")
    };
    let (t1, id1, name1, token1) = &files[0];
    let (_, _, _, token2) = &files[1];
    let ok = get(t1, &format!("/api/files/docs/{id1}/{name1}?token={token1}"))?;
    ensure!(ok.status == 200 && ok.bytes == b"mine", "own token: {ok:?}");
    let r = get(t1, &format!("/api/files/docs/{id1}/{name1}?token={token2}"))?;
    ensure!(r.status == 404, "another tenant's token: {r:?}");
    for path in [
        format!("/api/files/docs/{id1}/..%2F..%2Fmetadata.json?token={token1}"),
        format!("/api/files/docs/{id1}/%2E%2E?token={token1}"),
        format!("/api/files/docs/..%2F{id1}/{name1}?token={token1}"),
    ] {
        let r = get(t1, &path)?;
        ensure!(r.status == 404, "{path}: {r:?}");
    }
    Ok(())
}

/// A file too large for the node's cache (over 8 MiB) is streamed from the
/// bucket in ranged reads: the whole file, a range in its middle and one
/// across a chunk's end come back exact.
#[test]
fn a_large_file_is_streamed_whole_and_in_ranges() -> Result<()> {
    // The backend owns the bucket's directory: it must outlive the node.
    let b = strata_tests::Backend::local()?;
    let (s, _dir, su) = node(&b)?;
    file_collection(&s, &su, "big", json!({"maxSize": 20_000_000}))?;
    let data: Vec<u8> = (0..10_000_000u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let r = upload(&s, "big", "movie.bin", &data)?;
    ensure!(r.status == 200, "upload: {}", r.text);
    let path = file_path("big", &r);
    let get = |range: Option<&str>| {
        let mut head = format!("GET {path} HTTP/1.1");
        if let Some(r) = range {
            head.push_str(&format!("\r\nRange: {r}"));
        }
        strata_tests::http::raw(&s.addr, &head, 0, b"")
    };
    let r = get(None)?;
    ensure!(
        r.status == 200 && r.bytes == data,
        "whole: {} bytes",
        r.bytes.len()
    );
    ensure!(
        r.header("content-length") == Some("10000000"),
        "{:?}",
        r.headers
    );
    for (range, from, to) in [
        ("bytes=5000000-5000099", 5_000_000, 5_000_099),
        ("bytes=1048000-1049999", 1_048_000, 1_049_999),
        ("bytes=-10", 9_999_990, 9_999_999),
    ] {
        let r = get(Some(range))?;
        ensure!(
            r.status == 206 && r.bytes == data[from..=to],
            "{range}: {} {} bytes",
            r.status,
            r.bytes.len()
        );
    }
    Ok(())
}
