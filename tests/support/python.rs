//! The Python side: a venv with slixmpp (pinned in tests/py/requirements.txt) under the
//! cargo target directory, created on first use and shared by every test process
//! (guarded by a file lock, so parallel tests and test binaries do not race).
//!
//! `POOLXMPP_PYTHON=/path/to/python` skips the venv and uses that interpreter, which
//! must already have slixmpp installed. `POOLXMPP_BASE_PYTHON` chooses the interpreter
//! that creates the venv (default `python3`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Directory with scenarios.py / xmpptest.py / requirements.txt.
pub fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py")
}

/// Where cargo puts build output (the binary lives in `<target>/debug/`).
pub fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_poolxmpp"));
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The interpreter to run scenarios with (creating the venv if needed).
pub fn python() -> Result<PathBuf> {
    PYTHON
        .get_or_init(|| ensure_python().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("Python environment for the scenarios is unavailable: {e}"))
}

fn ensure_python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("POOLXMPP_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let requirements =
        fs::read_to_string(py_dir().join("requirements.txt")).context("read tests/py/requirements.txt")?;
    let target = target_dir();
    fs::create_dir_all(&target)?;
    let venv = target.join("pyenv");
    let python = venv.join("bin/python");
    let marker = venv.join(".poolxmpp-requirements");

    let _lock = DirLock::acquire(&target.join("pyenv.lockdir"))?;
    let ready = python.is_file() && fs::read_to_string(&marker).ok().as_deref() == Some(requirements.as_str());
    if !ready {
        eprintln!("[harness] creating Python venv with slixmpp at {}", venv.display());
        let _ = fs::remove_dir_all(&venv);
        let base = std::env::var("POOLXMPP_BASE_PYTHON").unwrap_or_else(|_| "python3".to_string());
        run_setup(Command::new(&base).args(["-m", "venv"]).arg(&venv), "python3 -m venv")?;
        run_setup(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "-q",
                    "-r",
                ])
                .arg(py_dir().join("requirements.txt")),
            "pip install -r tests/py/requirements.txt",
        )?;
        fs::write(&marker, &requirements)?;
    }
    Ok(python)
}

/// A cross-process lock: a directory that exists while held (mkdir is atomic).
/// A lock older than 15 minutes is considered abandoned (its holder was killed).
pub struct DirLock(PathBuf);

impl DirLock {
    pub fn acquire(path: &Path) -> Result<DirLock> {
        let start = Instant::now();
        loop {
            match fs::create_dir(path) {
                Ok(()) => {
                    let _ = fs::write(path.join("pid"), std::process::id().to_string());
                    return Ok(DirLock(path.to_path_buf()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .unwrap_or_default();
                    if age > Duration::from_secs(15 * 60) {
                        let _ = fs::remove_dir_all(path);
                        continue;
                    }
                    if start.elapsed() > Duration::from_secs(20 * 60) {
                        bail!("timed out waiting for {}", path.display());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run_setup(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Run `scenarios.py` with `args`; Ok(output) on exit 0, Err(output) otherwise.
pub fn run_scenario(args: &[String], work_dir: &Path, timeout: Duration) -> Result<String> {
    let python = python()?;
    let out_path = work_dir.join(format!("scenario-{}.log", super::unique_suffix()));
    let out_file = fs::File::create(&out_path)?;
    let mut child = Command::new(&python)
        .arg(py_dir().join("scenarios.py"))
        .args(args)
        .current_dir(py_dir())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(out_file.try_clone()?)
        .stderr(out_file)
        .spawn()
        .with_context(|| format!("spawn {}", python.display()))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    for line in output.lines().filter(|l| l.starts_with("NOTE:")) {
        eprintln!("[scenario] {line}");
    }
    match status {
        Some(s) if s.success() => Ok(output),
        Some(s) => bail!("scenario {:?} failed ({s}); its output:\n{output}", args.first()),
        None => bail!(
            "scenario {:?} killed after {timeout:?} (hung); its output:\n{output}",
            args.first()
        ),
    }
}
