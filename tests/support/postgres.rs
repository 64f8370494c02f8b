//! A throwaway PostgreSQL server per test: `initdb` into a temp dir, `pg_ctl start` on
//! 127.0.0.1 with a free port (and the unix socket inside the temp dir), one fresh
//! database created with `psql`, `pg_ctl stop -m immediate` and removal on drop.
//!
//! Binaries are looked up in `$POOLXMPP_PG_BIN`, then on `PATH`, then in
//! `/usr/lib/postgresql/<version>/bin` (highest version). If none is found the test
//! FAILS: CI installs PostgreSQL, so a missing server is a setup error, not a skip.
//!
//! PostgreSQL refuses to run as root; when the tests run as root the cluster is owned
//! by and run as the `postgres` system user (or `nobody` if there is none).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

use super::free_port;

pub struct PostgresInstance {
    dir: tempfile::TempDir,
    bin: PathBuf,
    psql: PathBuf,
    pub port: u16,
    pub database: String,
    run_as: Option<(u32, u32)>,
    running: bool,
}

impl PostgresInstance {
    pub fn start() -> Result<PostgresInstance> {
        let bin = find_bin_dir()?;
        let psql = find_psql(&bin)?;
        let run_as = unprivileged_user()?;
        // /tmp (not $TMPDIR) so an unprivileged postgres user can always reach it.
        let base = if run_as.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("poolxmpp-pg-")
            .tempdir_in(&base)
            .context("create PostgreSQL temp dir")?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).context("chown PostgreSQL temp dir")?;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        }
        let mut pg = PostgresInstance {
            dir,
            bin,
            psql,
            port: 0,
            database: "poolxmpp".to_string(),
            run_as,
            running: false,
        };
        pg.init_and_start().with_context(|| {
            format!(
                "starting PostgreSQL from {} failed; server log:\n{}",
                pg.bin.display(),
                pg.log_tail(40)
            )
        })?;
        Ok(pg)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        super::tail_file(&self.log_path(), lines)
    }

    fn pg_command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn init_and_start(&mut self) -> Result<()> {
        let data = self.data_dir();
        let out = self
            .pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .context("run initdb")?;
        check_output("initdb", &out)?;

        self.port = free_port()?;
        let conf = format!(
            "\n# poolxmpp test harness\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 200\nlog_min_messages = warning\n",
            self.port,
            self.dir.path().display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf_path).context("read postgresql.conf")?;
        text.push_str(&conf);
        fs::write(&conf_path, text).context("write postgresql.conf")?;

        let log = self.log_path();
        if let Some((uid, gid)) = self.run_as {
            fs::write(&log, "")?;
            std::os::unix::fs::chown(&log, Some(uid), Some(gid))?;
        }
        let out = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .context("run pg_ctl start")?;
        check_output("pg_ctl start", &out)?;
        self.running = true;

        let out = Command::new(&self.psql)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE {}", self.database))
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .output()
            .context("run psql")?;
        check_output("psql CREATE DATABASE", &out)?;
        Ok(())
    }

    /// The store URL for the server's config.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, self.database)
    }

    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let _ = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresInstance {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check_output(what: &str, out: &Output) -> Result<()> {
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

/// The directory holding initdb and pg_ctl.
pub fn find_bin_dir() -> Result<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("POOLXMPP_PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_tools(&dir) {
            return Ok(dir);
        }
        bail!("POOLXMPP_PG_BIN={} has no initdb/pg_ctl", dir.display());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let initdb = d.join("initdb");
            if initdb.is_file() {
                // Follow symlinks (Debian: /usr/local/bin/initdb -> /usr/lib/postgresql/N/bin).
                let real = fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(parent) = real.parent() {
                    if has_tools(parent) {
                        return Ok(parent.to_path_buf());
                    }
                }
                if has_tools(&d) {
                    return Ok(d);
                }
            }
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let bin = e.path().join("bin");
            if has_tools(&bin) {
                let v = e
                    .file_name()
                    .to_string_lossy()
                    .split('.')
                    .map(|p| p.parse().unwrap_or(0))
                    .collect();
                versions.push((v, bin));
            }
        }
    }
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH nor in \
             /usr/lib/postgresql/*/bin. Install them (Debian: apt-get install postgresql) or set \
             POOLXMPP_PG_BIN. The PostgreSQL variants of the tests cannot run without them."
        ),
    }
}

fn find_psql(bin: &Path) -> Result<PathBuf> {
    if bin.join("psql").is_file() {
        return Ok(bin.join("psql"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("psql").is_file() {
                return Ok(d.join("psql"));
            }
        }
    }
    bail!("psql not found next to {} nor on PATH", bin.display())
}

/// When running as root: (uid, gid) of `postgres` (or `nobody`) to run the cluster as.
fn unprivileged_user() -> Result<Option<(u32, u32)>> {
    let out = Command::new("id").arg("-u").output().context("run id -u")?;
    let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    if uid != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let lookup = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
    };
    for name in ["postgres", "nobody"] {
        if let Some((Some(u), Some(g))) = lookup(name) {
            return Ok(Some((u, g)));
        }
    }
    bail!("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")
}
