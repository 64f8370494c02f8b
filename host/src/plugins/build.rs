//! `poolxmpp plugin build`: compile the Rust plugins of a source tree to components and
//! install them as `NAME.wasm` + `NAME.toml`, the layout the runtime loads.
//!
//! A plugin crate is any directory under `plugins/` (and, on request, `examples/plugins/`) with a
//! `Cargo.toml` and a `plugin.toml` manifest; a crate may ship extra manifests
//! (`*.plugin.toml`) to install the same component under several names and configs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use super::manifest::Manifest;

const TARGET: &str = "wasm32-wasip2";

/// A plugin crate and the manifests to install its component under.
struct PluginCrate {
    package: String,
    manifests: Vec<PathBuf>,
}

fn find_crates(source: &Path, examples: bool) -> anyhow::Result<Vec<PluginCrate>> {
    let mut out = Vec::new();
    let bases: &[&str] = if examples {
        &["plugins", "examples/plugins"]
    } else {
        &["plugins"]
    };
    for base in bases {
        let Ok(entries) = std::fs::read_dir(source.join(base)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for dir in dirs {
            let cargo = dir.join("Cargo.toml");
            if !cargo.exists() {
                continue;
            }
            let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name == "plugin.toml" || name.ends_with(".plugin.toml")
                })
                .collect();
            manifests.sort();
            if manifests.is_empty() {
                continue;
            }
            let text = std::fs::read_to_string(&cargo)?;
            let package = text
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_string))
                .with_context(|| format!("{} has no package name", cargo.display()))?;
            out.push(PluginCrate { package, manifests });
        }
    }
    Ok(out)
}

/// Build every plugin crate in release mode and install the results into `out`.
pub fn build_all(source: &Path, out: &Path, examples: bool) -> anyhow::Result<Vec<PathBuf>> {
    let crates = find_crates(source, examples)?;
    if crates.is_empty() {
        bail!(
            "no plugin crates (with a plugin.toml) under {}/plugins",
            source.display()
        );
    }
    // The target is one rustup command away; add it so a fresh machine needs no extra step.
    if let Ok(status) = Command::new("rustup").args(["target", "add", TARGET]).status() {
        if !status.success() {
            tracing::warn!("rustup could not add {TARGET}; the build may fail");
        }
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(source).args(["build", "--release", "--target", TARGET]);
    // The workspace's release profile keeps line tables for the server's backtraces; a
    // component would carry them as megabytes of custom sections the host never reads.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    for c in &crates {
        cmd.args(["-p", &c.package]);
    }
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| source.join("target"));
    std::fs::create_dir_all(out)?;
    let mut installed = Vec::new();
    for c in &crates {
        let wasm = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", c.package.replace('-', "_")));
        for manifest_path in &c.manifests {
            let manifest = Manifest::load(manifest_path)?;
            // Manifest first, then the component, each via a rename: the watcher never sees a
            // half-written file.
            install(manifest_path, &out.join(format!("{}.toml", manifest.name)))?;
            let dest = out.join(format!("{}.wasm", manifest.name));
            install(&wasm, &dest)?;
            installed.push(dest);
        }
    }
    Ok(installed)
}

fn install(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tmp = to.with_extension("partial");
    std::fs::copy(from, &tmp).with_context(|| format!("copying {}", from.display()))?;
    std::fs::rename(&tmp, to)?;
    Ok(())
}
