//! The admin dashboard (`/_strata/`) in a real headless browser: Debian's
//! Chromium through chromedriver, against `strata serve` on a local bucket.
//! With `STRATA_SCREENSHOT=1` the test also saves the page as
//! `docs/img/dashboard.png` (the README's picture).

use anyhow::{Context, Result, ensure};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use strata_tests::Backend;
use strata_tests::serve::{
    ADMIN, Server, count_posts, posts_around_a_restore_point, posts_collection,
};
use strata_tests::webdriver::Browser;

const WAIT: Duration = Duration::from_secs(30);

/// Tenant id → the state its row shows.
fn states(b: &Browser) -> Result<BTreeMap<String, String>> {
    let rows = b.script(
        "return Array.from(document.querySelectorAll('#rows tr'), \
           r => [r.dataset.tenant, r.querySelector('td.state').textContent]);",
        json!([]),
    )?;
    Ok(rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().into(),
                r[1].as_str().unwrap_or_default().into(),
            )
        })
        .collect())
}

fn state_of(b: &Browser, id: &str) -> Result<String> {
    b.text(&b.find(&format!("#rows tr[data-tenant='{id}'] td.state"))?)
}

#[test]
fn dashboard_lists_evicts_and_restores_in_a_browser() -> Result<()> {
    // The browser first: without one the test fails before anything else.
    let browser = Browser::start(1280, 900)?;
    let bucket = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let s = Server::start(
        &bucket,
        &dir.path().join("node"),
        &["--node-id", "dash-node"],
    )?;

    // The page itself is public, self-contained, and runs only its own script.
    let r = s.req("GET", "/_strata", &[], None)?;
    ensure!(
        r.status == 308 && r.header("location") == Some("/_strata/"),
        "redirect: {r:?}"
    );
    let r = s.req("GET", "/_strata/", &[], None)?;
    ensure!(
        r.status == 200
            && r.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
        "page: {r:?}"
    );
    let csp = r.header("content-security-policy").unwrap_or_default();
    ensure!(
        csp.contains("script-src 'sha256-") && csp.contains("frame-ancestors 'none'"),
        "CSP: {csp}"
    );
    ensure!(
        !r.text.contains("http://") && !r.text.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    // acme: records before and after a restore point; globex: loaded;
    // initech: never loaded here; umbrella: deleted.
    s.create_tenant("acme", Some("acme.example"))?;
    s.create_tenant("globex", Some("globex.example"))?;
    s.create_tenant("initech", None)?;
    s.create_tenant("umbrella", None)?;
    let token = s.superuser_token("acme")?;
    posts_collection(&s, "acme", &token)?;
    let point = posts_around_a_restore_point(&s, "acme")?;
    let r = s.req("GET", "/t/globex/api/health", &[], None)?;
    ensure!(r.status == 200, "load globex: {r:?}");
    let r = s.admin("DELETE", "/_strata/api/tenants/umbrella", None)?;
    ensure!(r.status == 200, "delete umbrella: {r:?}");

    // The history endpoint the page uses: newest first, bounded.
    let h = s.admin("GET", "/_strata/api/tenants/acme/history", None)?;
    let txids: Vec<u64> = h.body["points"]
        .as_array()
        .context("points")?
        .iter()
        .filter_map(|p| p["txid"].as_u64())
        .collect();
    ensure!(
        h.status == 200 && txids.contains(&point) && txids.is_sorted_by(|a, b| a > b),
        "history: {h:?}"
    );
    let h = s.admin("GET", "/_strata/api/tenants/acme/history?limit=1", None)?;
    ensure!(
        h.body["points"].as_array().map(Vec::len) == Some(1) && h.body["more"] == true,
        "history, one point: {h:?}"
    );
    let r = s.admin("GET", "/_strata/api/tenants/acme/history?limit=0", None)?;
    ensure!(r.status == 400, "limit 0: {r:?}");
    let r = s.admin("GET", "/_strata/api/tenants/nosuch/history", None)?;
    ensure!(r.status == 404, "history of an unknown tenant: {r:?}");

    // Sign in: the table shows every tenant and its state.
    browser.goto(&format!("http://{}/_strata/", s.addr))?;
    browser.type_text(&browser.find("#token")?, ADMIN)?;
    browser.click(&browser.find("#connect")?)?;
    let seen = browser.wait_for("four tenant rows", WAIT, |b| {
        let st = states(b)?;
        Ok((st.len() == 4).then_some(st))
    })?;
    let want: BTreeMap<String, String> = [
        ("acme", "loaded"),
        ("globex", "loaded"),
        ("initech", "not loaded"),
        ("umbrella", "deleted"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    ensure!(seen == want, "states: {seen:?}");
    // The CSP let the page's own style sheet apply (the script ran: rows).
    let styled = browser.script(
        "return getComputedStyle(document.querySelector('header')).display;",
        json!([]),
    )?;
    ensure!(
        styled == "flex",
        "the page's style sheet was not applied: {styled}"
    );
    let acme_row = browser.text(&browser.find("#rows tr[data-tenant='acme']")?)?;
    ensure!(
        acme_row.contains("acme.example") && acme_row.contains("KiB"),
        "acme's row: {acme_row}"
    );

    // The nodes card: this node, serving, with its two loaded tenants; the
    // loaded tenants' rows name it.
    let node = browser.wait_for("the node row", WAIT, |b| {
        b.find_all("#node-rows tr")?
            .first()
            .map(|r| b.text(r))
            .transpose()
    })?;
    ensure!(
        node.contains("dash-node (this node)") && node.contains("serving") && node.contains('2'),
        "node row: {node}"
    );
    ensure!(
        browser.text(&browser.find("#rows tr[data-tenant='acme'] td.node")?)? == "dash-node",
        "acme's node"
    );

    // Evict globex: the page and the API agree it is no longer loaded.
    browser.click(&browser.find("#rows tr[data-tenant='globex'] button.evict")?)?;
    browser.wait_for("globex not loaded", WAIT, |b| {
        Ok((state_of(b, "globex")? == "not loaded").then_some(()))
    })?;
    let r = s.admin("GET", "/_strata/api/tenants/globex", None)?;
    ensure!(r.body["state"] == "evicted", "globex after evict: {r:?}");
    let notice = browser.text(&browser.find("#notice")?)?;
    ensure!(notice.contains("Evicted globex"), "notice: {notice}");

    // Restore acme to the point before the last two posts, confirmed in the page.
    browser.click(&browser.find("#rows tr[data-tenant='acme'] button.restore")?)?;
    let go = browser.wait_for("acme's restore point", WAIT, |b| {
        Ok(Some(
            b.find(&format!("#points button[data-txid='{point}']"))?,
        ))
    })?;
    browser.click(&go)?;
    let question = browser.text(&browser.find("#restore-question")?)?;
    ensure!(
        question.contains(&format!("txid {point}")),
        "confirmation: {question}"
    );
    browser.click(&browser.find("#restore-confirm")?)?;
    let undo: u64 = browser.wait_for("the undo txid", WAIT, |b| {
        Ok(b.text(&b.find("#restore-result .undo-txid")?)?.parse().ok())
    })?;
    ensure!(undo > point, "undo txid {undo} after the point {point}");
    let result = browser.text(&browser.find("#restore-result")?)?;
    ensure!(
        result.contains(&format!("to txid {point}")),
        "result: {result}"
    );
    ensure!(count_posts(&s, "acme")? == 3, "acme's posts after restore");

    // acme is loaded again by that read; the page shows it after a refresh.
    browser.wait_for("restore points listed again", WAIT, |b| {
        Ok((!b.find_all("#points tr")?.is_empty()).then_some(()))
    })?;
    browser.click(&browser.find("#refresh")?)?;
    browser.wait_for("acme loaded", WAIT, |b| {
        Ok((state_of(b, "acme")? == "loaded").then_some(()))
    })?;
    // The whole page in the picture: a window as tall as the page.
    let size = browser.script(
        "window.scrollTo(0, 0); \
         return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];",
        json!([]),
    )?;
    let (page, frame) = (
        size[0].as_u64().unwrap_or(900),
        size[1].as_u64().unwrap_or(0),
    );
    browser.set_window_size(1280, (page + frame) as u32)?;
    let png = browser.screenshot()?;
    ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
    if std::env::var_os("STRATA_SCREENSHOT").is_some_and(|v| v == "1") {
        let out =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img/dashboard.png");
        std::fs::create_dir_all(out.parent().context("docs/img")?)?;
        std::fs::write(&out, &png).with_context(|| format!("write {}", out.display()))?;
    }

    // A wrong token: the page says so and shows no tenants.
    browser.type_text(&browser.find("#token")?, "not-the-token")?;
    browser.click(&browser.find("#connect")?)?;
    let error = browser.wait_for("the error message", WAIT, |b| {
        let e = b.find("#error")?;
        b.displayed(&e)?.then(|| b.text(&e)).transpose()
    })?;
    ensure!(
        error.contains("admin token was refused") && error.contains("401"),
        "error: {error}"
    );
    ensure!(
        browser.find_all("#rows tr")?.is_empty(),
        "tenants still listed"
    );
    Ok(())
}
