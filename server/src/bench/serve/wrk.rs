//! Load from `wrk` (Debian's `wrk`), the same for strata and PocketBase:
//! a Lua script per request mix, written from a template, and wrk's own
//! report parsed (requests/s, latency percentiles, non-2xx answers).
//!
//! A script gets its targets from a table of `{host, port, prefix}`: each
//! wrk thread takes one in turn (`setup`), so one wrk process can spread
//! its threads over many servers (100 PocketBase processes) or over many
//! tenants of one server (path prefixes), with the same load either way.

use anyhow::{Context, Result, bail, ensure};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Where one wrk thread sends its requests.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Path before `/api/...`: `/t/<tenant>` for strata, empty for PocketBase.
    pub prefix: String,
}

/// What wrk reported.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub requests: u64,
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub non_2xx: u64,
    pub socket_errors: u64,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} requests)",
            self.rate,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.requests
        )
    }
}

/// A request mix: the body of wrk's `request()` function, in Lua. It may
/// use `prefix` (the thread's endpoint prefix), `rand(a, b)`, and `id(i)`
/// (the seeded record id `r%014d`).
#[derive(Debug, Clone)]
pub struct Mix {
    pub name: &'static str,
    pub lua: String,
}

/// Check that wrk is installed, with the command that installs it.
pub fn check() -> Result<()> {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(e) => bail!("wrk is needed for the side-by-side runs ({e}): apt-get install wrk"),
    }
}

fn script(mix: &Mix, endpoints: &[Endpoint]) -> String {
    let targets: Vec<String> = endpoints
        .iter()
        .map(|e| {
            format!(
                "{{host = \"{}\", port = {}, prefix = \"{}\"}}",
                e.addr.ip(),
                e.addr.port(),
                e.prefix
            )
        })
        .collect();
    format!(
        r#"-- written by `strata bench --serve` for the `{name}` mix
local targets = {{ {targets} }}
local next_target = 1
function setup(thread)
  local t = targets[next_target]
  next_target = next_target % #targets + 1
  thread.addr = wrk.lookup(t.host, tostring(t.port))[1]
  thread:set("prefix", t.prefix)
  thread:set("seed", next_target * 7919)
end
function init(args)
  math.randomseed(os.time() + seed)
end
function rand(a, b) return math.random(a, b) end
function id(i) return string.format("r%014d", i) end
request = function()
{lua}
end
"#,
        name = mix.name,
        targets = targets.join(", "),
        lua = mix.lua
    )
}

/// Run `mix` against `endpoints` for `duration` with `threads` threads and
/// `connections` connections (wrk spreads them over its threads). Fails if
/// any answer was not 2xx/3xx or a socket failed.
pub fn run(
    dir: &Path,
    mix: &Mix,
    endpoints: &[Endpoint],
    threads: usize,
    connections: usize,
    duration: Duration,
) -> Result<Report> {
    ensure!(!endpoints.is_empty(), "no endpoint for wrk");
    let path = dir.join(format!("wrk-{}.lua", mix.name));
    std::fs::write(&path, script(mix, endpoints))
        .with_context(|| format!("write {}", path.display()))?;
    let first = &endpoints[0];
    let url = format!("http://{}/", first.addr);
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{}", connections.max(threads)))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("10s")
        .arg("--latency")
        .arg("-s")
        .arg(&path)
        .arg(&url)
        .output()
        .context("run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "wrk failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let r = parse(&text).with_context(|| format!("wrk's report: {text}"))?;
    ensure!(
        r.non_2xx == 0 && r.socket_errors == 0,
        "{}: {} answers were not 2xx and {} sockets failed (script {}):\n{text}",
        mix.name,
        r.non_2xx,
        r.socket_errors,
        path.display()
    );
    Ok(r)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))?;
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// wrk's text report.
pub fn parse(text: &str) -> Result<Report> {
    let mut r = Report::default();
    let mut seen = (false, false);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50 = parse_duration(v).context("p50")?,
            ["99%", v] => r.p99 = parse_duration(v).context("p99")?,
            [n, "requests", "in", ..] => {
                r.requests = n.parse()?;
                seen.0 = true;
            }
            ["Requests/sec:", v] => {
                r.rate = v.parse()?;
                seen.1 = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // `connect 0, read 0, write 0, timeout 0`
                r.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    ensure!(seen.0 && seen.1, "no request count or rate");
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrks_report() {
        let text = "Running 2s test @ http://127.0.0.1:8090/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.78ms    1.90ms  20.10ms   89.10%
    Req/Sec    11.16k     1.00k   12.00k    70.00%
  Latency Distribution
     50%    1.21ms
     75%    2.00ms
     90%    3.00ms
     99%  850.00us
  22323 requests in 2.00s, 10.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  11161.50
Transfer/sec:      5.00MB
";
        let r = parse(text).unwrap();
        assert_eq!(r.requests, 22323);
        assert!((r.rate - 11161.5).abs() < 1e-9);
        assert_eq!(r.p50, Duration::from_micros(1210));
        assert_eq!(r.p99, Duration::from_micros(850));
        assert_eq!((r.non_2xx, r.socket_errors), (5, 3));
        assert!(parse("nothing here").is_err());
    }
}
