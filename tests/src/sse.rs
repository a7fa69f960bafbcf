//! A server-sent events client for tests: one `GET` kept open on a raw
//! socket, its chunked body decoded as it arrives, read one event at a
//! time with a deadline, so a missing event fails the test instead of
//! hanging it.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One event: its `id:`, `event:` and `data:` fields.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub data: String,
}

impl Event {
    /// The data as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// An open event stream.
pub struct Stream {
    s: TcpStream,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    /// Bytes read and not yet decoded (chunk framing).
    raw: Vec<u8>,
    /// Decoded body not yet parsed into events.
    body: Vec<u8>,
    eof: bool,
}

impl Stream {
    /// `GET path` with extra headers (`"Name: value"`); the status and
    /// headers are read, the body is left for [`Stream::next`].
    pub fn open(addr: &str, path: &str, headers: &[String]) -> Result<Stream> {
        let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream");
        for h in headers {
            head.push_str("\r\n");
            head.push_str(h);
        }
        head.push_str("\r\n\r\n");
        s.write_all(head.as_bytes())?;
        let mut st = Stream {
            s,
            status: 0,
            headers: vec![],
            chunked: false,
            raw: vec![],
            body: vec![],
            eof: false,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let end = loop {
            if let Some(end) = st.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            ensure!(st.fill(deadline)?, "closed before the response head");
        };
        let text = String::from_utf8_lossy(&st.raw[..end]).into_owned();
        st.raw.drain(..end + 4);
        let mut lines = text.lines();
        st.status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line in {text:?}"))?;
        st.headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        st.chunked = st
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if !st.chunked {
            st.body = std::mem::take(&mut st.raw);
        }
        Ok(st)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Read more bytes before `deadline`: `false` once the server closed.
    fn fill(&mut self, deadline: Instant) -> Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(!left.is_zero(), "timed out waiting for the server");
        self.s.set_read_timeout(Some(left))?;
        let mut buf = [0u8; 16 * 1024];
        match self.s.read(&mut buf) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("timed out waiting for the server")
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Move complete chunks from `raw` to `body`.
    fn decode(&mut self) -> Result<()> {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return Ok(());
        }
        while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let line = std::str::from_utf8(&self.raw[..eol])?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("chunk size {line:?}"))?;
            if size == 0 {
                self.eof = true;
                self.raw.clear();
                return Ok(());
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return Ok(());
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
        Ok(())
    }

    /// The next event (comments such as keep-alives skipped), `None` once
    /// the server ended the stream; an error if neither happens within
    /// `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.decode()?;
            while let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8_lossy(&self.body[..end]).into_owned();
                self.body.drain(..end + 2);
                if let Some(ev) = parse(&block) {
                    return Ok(Some(ev));
                }
            }
            if self.eof {
                return Ok(None);
            }
            if !self.fill(deadline).context("no event")? {
                self.eof = true;
            }
        }
    }

    /// Events until `n` have arrived, each within `timeout`; an error if the
    /// stream ends first.
    pub fn take(&mut self, n: usize, timeout: Duration) -> Result<Vec<Event>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.next(timeout)? {
                Some(e) => out.push(e),
                None => bail!("the stream ended after {out:?}"),
            }
        }
        Ok(out)
    }
}

/// One event block; `None` for a block with no field (a comment).
fn parse(block: &str) -> Option<Event> {
    let mut ev = Event {
        id: String::new(),
        name: String::new(),
        data: String::new(),
    };
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (k, v) = line.split_once(':').unwrap_or((line, ""));
        let v = v.strip_prefix(' ').unwrap_or(v);
        any = true;
        match k {
            "id" => ev.id = v.to_string(),
            "event" => ev.name = v.to_string(),
            "data" => {
                if !ev.data.is_empty() {
                    ev.data.push('\n');
                }
                ev.data.push_str(v);
            }
            _ => {}
        }
    }
    any.then_some(ev)
}
