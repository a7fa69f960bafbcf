//! The official PocketBase JS SDK scripts in `tests/sdk/`, run with Node
//! against one base URL (`node <script> <base>` with the test superuser in
//! the environment).

use crate::serve::{SU_EMAIL, SU_PASSWORD};
use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};

/// `tests/sdk`, checked to have its packages installed.
pub fn dir() -> Result<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk");
    for package in ["pocketbase", "eventsource"] {
        ensure!(
            sdk.join("node_modules").join(package).is_dir(),
            "the SDK package {package} is not installed: run `npm ci --prefix tests/sdk` (scripts/test does)"
        );
    }
    Ok(sdk)
}

/// Run `script` against `base` with `env` added; it must exit 0 and print
/// `expect`.
pub fn run(script: &str, base: &str, env: &[(&str, &str)], expect: &str) -> Result<()> {
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(dir()?)
        .arg(script)
        .arg(base)
        .env("STRATA_SU_EMAIL", SU_EMAIL)
        .env("STRATA_SU_PASSWORD", SU_PASSWORD);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .context("run node (install Node.js: scripts/test does)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains(expect),
        "{script} on {base}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
