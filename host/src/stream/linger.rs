//! The end of a graceful close (RFC 6120 §4.4). After our stream error and closing tag
//! went out and our write half is shut down (FIN), the client may still be sending — the
//! rest of an oversized stanza, say. Closing a socket with unread data makes the kernel
//! send a reset, and a reset can destroy our error on its way to the client. So we read
//! and discard for a bounded time and number of bytes, until the client closes its side.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest we wait for the client's side of the close.
pub const LINGER: Duration = Duration::from_secs(2);
/// The most we read (and discard) while waiting.
pub const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// Read and discard until EOF, an error, [`LINGER`] or [`LINGER_BYTES`].
pub async fn drain<R: AsyncRead + Unpin>(mut read: R) {
    // On the heap, and only now: an array here would sit in every connection's task state
    // for the connection's whole life.
    let mut buf = vec![0u8; 8192];
    let mut total = 0usize;
    let _ = tokio::time::timeout(LINGER, async {
        while total < LINGER_BYTES {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}
