//! The client side of the admin socket, used by `poolxmpp plugin list|reload`.

use std::path::Path;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Send one command to the running daemon and return its JSON answer.
pub async fn request(data_dir: &Path, command: &str) -> anyhow::Result<serde_json::Value> {
    let path = super::watch::admin_socket_path(data_dir);
    let stream = UnixStream::connect(&path)
        .await
        .with_context(|| format!("no running daemon answers on {}", path.display()))?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{command}\n").as_bytes()).await?;
    let mut line = String::new();
    let timeout = std::time::Duration::from_secs(60);
    tokio::time::timeout(timeout, BufReader::new(read).read_line(&mut line))
        .await
        .context("the daemon did not answer")??;
    Ok(serde_json::from_str(&line)?)
}
