//! Plugin components for the integration tests, built once per `cargo test` run by the
//! real `poolxmpp plugin build` command (and the build scripts of the Python and JavaScript
//! examples, with componentize-py and jco), into a separate target directory so the nested
//! cargo never waits on the outer one's lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use super::python::{target_dir, DirLock};
use super::server_binary;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A directory holding `NAME.wasm` + `NAME.toml` for every bundled and example plugin.
pub fn built() -> Result<PathBuf> {
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("building the test plugins failed: {e}"))
}

fn build() -> Result<PathBuf> {
    let base = target_dir().join("test-plugins");
    fs::create_dir_all(&base)?;
    let _lock = DirLock::acquire(&base.join("build.lockdir"))?;
    let out = base.join("installed");
    let output = Command::new(server_binary())
        .args(["plugin", "build", "--source"])
        .arg(workspace_root())
        .arg("--out")
        .arg(&out)
        .arg("--examples")
        .env("CARGO_TARGET_DIR", base.join("cargo"))
        .output()
        .context("running poolxmpp plugin build")?;
    if !output.status.success() {
        bail!(
            "poolxmpp plugin build failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The examples in other languages have their own build scripts (componentize-py, jco),
    // whose tools go under `base` like the nested cargo's target.
    for name in ["python-echo", "js-echo"] {
        build_example(name, &base, &out)?;
    }
    Ok(out)
}

/// Run `examples/plugins/NAME/build.sh OUT` and install its manifest as `OUT/NAME.toml`.
fn build_example(name: &str, base: &Path, out: &Path) -> Result<()> {
    let dir = workspace_root().join("examples/plugins").join(name);
    let output = Command::new("sh")
        .arg(dir.join("build.sh"))
        .arg(out)
        .env("CARGO_TARGET_DIR", base)
        .output()
        .with_context(|| format!("running examples/plugins/{name}/build.sh"))?;
    if !output.status.success() {
        bail!(
            "{name} build failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    fs::copy(dir.join("plugin.toml"), out.join(format!("{name}.toml")))?;
    Ok(())
}

/// Copy plugins by name (`vcard`, `bad-loop`, ...) into `dir`, manifest first.
pub fn install(dir: &Path, names: &[&str]) -> Result<()> {
    let src = built()?;
    fs::create_dir_all(dir)?;
    for name in names {
        fs::copy(src.join(format!("{name}.toml")), dir.join(format!("{name}.toml")))
            .with_context(|| format!("installing {name}.toml"))?;
        fs::copy(src.join(format!("{name}.wasm")), dir.join(format!("{name}.wasm")))
            .with_context(|| format!("installing {name}.wasm"))?;
    }
    Ok(())
}

/// Replace a file the way an operator's deploy should: write beside it, then rename.
pub fn replace(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)?;
    Ok(())
}
