//! Hot reload and administration: a debounced watcher on the plugins directory, and a
//! local admin socket for `poolxmpp plugin list|reload`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use super::Plugins;
use crate::tasks::Tasks;

/// Wait this long after the last change before reloading: copying a file fires many events.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watch the plugins directory and sync on every settled change, as a task of `tasks`
/// that ends on its signal (a sync under way finishes first). A watcher that cannot start
/// is logged and reloads stay available on demand.
pub fn spawn_watcher(plugins: Arc<Plugins>, tasks: &Tasks) {
    let dir = plugins.dir.clone();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the plugins directory");
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only changes count: reading the files during a sync raises access events, which
        // must not trigger another sync.
        if event.is_ok_and(|e| is_change(&e.kind)) {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the plugins directory; use `poolxmpp plugin reload`");
            return;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the plugins directory");
        return;
    }
    let stop = tasks.signalled();
    tasks.spawn("plugin watcher", async move {
        let _watcher = watcher;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                event = rx.recv() => if event.is_none() { break },
                () = &mut stop => break,
            }
            // Debounce: keep absorbing events until the directory is quiet.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            plugins.sync_dir().await;
        }
    });
}

fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::{EventKind, ModifyKind};
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Where the admin socket lives for a given data directory.
pub fn admin_socket_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Serve line commands on the admin socket: `list` and `reload NAME`, one JSON line back.
/// The socket is created mode 0600: only the daemon's user may administer it.
/// Node statistics for the admin socket's `stats` command.
pub type StatsFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Account removal for the admin socket's `remove-account JID`, so `poolxmpp user del` run
/// beside a daemon has it close the account's sessions and tell its contacts.
pub type RemoveAccountFn = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>> + Send + Sync,
>;

///
/// The accept loop and every admin connection are tasks of `tasks`: on its signal they
/// stop reading commands (one being answered is finished first).
pub fn spawn_admin_socket(
    plugins: Arc<Plugins>,
    path: PathBuf,
    stats: StatsFn,
    remove_account: RemoveAccountFn,
    tasks: &Tasks,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let group = tasks.clone();
    tasks.spawn("admin socket", async move {
        let stop = group.signalled();
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut stop => break,
            };
            let conn = match accepted {
                Ok((conn, _)) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let plugins = plugins.clone();
            let stats = stats.clone();
            let remove_account = remove_account.clone();
            let stop = group.signalled();
            group.spawn("admin connection", async move {
                let (read, mut write) = conn.into_split();
                let mut lines = BufReader::new(read).lines();
                tokio::pin!(stop);
                loop {
                    let line = tokio::select! {
                        line = lines.next_line() => line,
                        () = &mut stop => break,
                    };
                    let Ok(Some(line)) = line else { break };
                    let reply = match line.trim().split_once(' ') {
                        None if line.trim() == "stats" => serde_json::json!({ "ok": true, "stats": stats() }),
                        Some(("remove-account", jid)) => match remove_account(jid.trim().to_string()).await {
                            Ok(()) => serde_json::json!({ "ok": true }),
                            Err(e) => serde_json::json!({ "ok": false, "error": e }),
                        },
                        _ => answer(&plugins, line.trim()).await,
                    };
                    if write.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

async fn answer(plugins: &Plugins, command: &str) -> serde_json::Value {
    let mut words = command.split_whitespace();
    match (words.next(), words.next()) {
        (Some("list"), None) => serde_json::json!({ "ok": true, "plugins": plugins.describe() }),
        (Some("reload"), Some(name)) => match plugins.reload(name).await {
            Ok(()) => serde_json::json!({ "ok": true }),
            Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
        },
        (Some("sync"), None) => {
            let errors: Vec<String> = plugins.sync_dir().await.iter().map(|e| e.to_string()).collect();
            serde_json::json!({ "ok": errors.is_empty(), "errors": errors })
        }
        _ => {
            serde_json::json!({ "ok": false, "error": "commands: list | reload NAME | sync | stats | remove-account JID" })
        }
    }
}
