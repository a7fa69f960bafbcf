//! A small W3C WebDriver client: Debian's Chromium, headless, through a
//! chromedriver started on a free loopback port, spoken to with
//! [`crate::http`]. Only what the tests use: navigate, find by CSS, click,
//! type, read text, run a script, take a screenshot.

use crate::http;
use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key under which WebDriver names an element.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

/// One browser session; chromedriver and the browser are killed on drop.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
    log: tempfile::NamedTempFile,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver and a headless Chromium with a fresh profile and
    /// a `width`×`height` window.
    pub fn start(width: u32, height: u32) -> Result<Browser> {
        for p in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(p).exists() {
                bail!(
                    "{p} not found: install the headless browser and its driver with \
                     `apt-get install -y chromium chromium-driver` (scripts/test does)"
                );
            }
        }
        // Bind-and-release picks a free port; a collision fails the start.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = tempfile::NamedTempFile::new().context("chromedriver log file")?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group, so Drop also kills the browser it starts.
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {CHROMEDRIVER}"))?;
        let profile = tempfile::tempdir()?;
        let mut b = Browser {
            driver,
            addr: format!("127.0.0.1:{port}"),
            session: String::new(),
            log,
            _profile: profile,
        };
        b.wait_ready()?;
        // The machine has no network: without the background-networking
        // switches Chromium waits on requests that never answer.
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", b._profile.path().display()),
                ],
            },
        }}});
        let v = b.send("POST", "/session", Some(caps))?;
        b.session = v["sessionId"]
            .as_str()
            .with_context(|| format!("no sessionId in {v}"))?
            .to_string();
        Ok(b)
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = http::request(&self.addr, "GET", "/status", &[], None)
                && r.body["value"]["ready"] == true
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "chromedriver did not answer on {} within {START_TIMEOUT:?}: {}",
                    self.addr,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of chromedriver's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// One WebDriver command; its `value`, or its error as a failure.
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let body = body.map(|b| b.to_string());
        let r = http::request(&self.addr, method, path, &[], body.as_deref())
            .with_context(|| format!("webdriver {method} {path}"))?;
        let v = r.body["value"].clone();
        if r.status != 200 {
            bail!(
                "webdriver {method} {path}: {} {}: {}",
                r.status,
                v["error"].as_str().unwrap_or("?"),
                v["message"].as_str().unwrap_or(&r.text)
            );
        }
        Ok(v)
    }

    /// A command of this session (`path` after `/session/<id>`).
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        self.send(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(json!({"url": url})))?;
        Ok(())
    }

    pub fn find(&self, css: &str) -> Result<Element> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        element(&v).with_context(|| format!("find {css}"))
    }

    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v.as_array()
            .with_context(|| format!("find all {css}: {v}"))?
            .iter()
            .map(element)
            .collect()
    }

    pub fn click(&self, e: &Element) -> Result<()> {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})))?;
        Ok(())
    }

    /// Type into an input (after what it holds).
    pub fn type_text(&self, e: &Element, text: &str) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )?;
        Ok(())
    }

    /// The rendered text of an element (empty if it is hidden).
    pub fn text(&self, e: &Element) -> Result<String> {
        let v = self.cmd("GET", &format!("/element/{}/text", e.0), None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    pub fn displayed(&self, e: &Element) -> Result<bool> {
        let v = self.cmd("GET", &format!("/element/{}/displayed", e.0), None)?;
        Ok(v == true)
    }

    /// Run `script` (a function body; `arguments` holds `args`) in the page.
    pub fn script(&self, script: &str, args: Value) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Resize the window (the viewport is smaller by the browser's frame).
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )?;
        Ok(())
    }

    /// The visible part of the page as a PNG.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.cmd("GET", "/screenshot", None)?;
        let b64 = v.as_str().context("screenshot is not a string")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }

    /// Poll `f` until it gives `Some`, for up to `timeout`; an error counts
    /// as "not yet". The failure names `what`, the last error and the page.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Browser) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match f(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => String::new(),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                let page = self
                    .script("return document.body.innerText;", json!([]))
                    .unwrap_or_default();
                bail!(
                    "timed out after {timeout:?} waiting for {what} ({last}); the page says:\n{}",
                    page.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn element(v: &Value) -> Result<Element> {
    Ok(Element(
        v[ELEMENT_KEY]
            .as_str()
            .with_context(|| format!("not an element: {v}"))?
            .to_string(),
    ))
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.send("DELETE", &format!("/session/{}", self.session), None);
        }
        // SAFETY: signalling the process group we created for our child.
        unsafe {
            libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
