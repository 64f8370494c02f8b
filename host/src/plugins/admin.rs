//! The client side of the admin socket, used by `poolxmpp plugin list|reload`.

use std::path::Path;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Like [`request`], but `None` when no daemon listens on the socket (none was started, or
/// it is gone and left the socket file behind), rather than an error.
pub async fn request_if_running(data_dir: &Path, command: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let path = super::watch::admin_socket_path(data_dir);
    match UnixStream::connect(&path).await {
        Ok(stream) => exchange(stream, command).await.map(Some),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot reach the daemon on {}", path.display()))),
    }
}

/// Send one command to the running daemon and return its JSON answer.
pub async fn request(data_dir: &Path, command: &str) -> anyhow::Result<serde_json::Value> {
    let path = super::watch::admin_socket_path(data_dir);
    let stream = UnixStream::connect(&path)
        .await
        .with_context(|| format!("no running daemon answers on {}", path.display()))?;
    exchange(stream, command).await
}

async fn exchange(stream: UnixStream, command: &str) -> anyhow::Result<serde_json::Value> {
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{command}\n").as_bytes()).await?;
    let mut line = String::new();
    let timeout = std::time::Duration::from_secs(60);
    tokio::time::timeout(timeout, BufReader::new(read).read_line(&mut line))
        .await
        .context("the daemon did not answer")??;
    Ok(serde_json::from_str(&line)?)
}
