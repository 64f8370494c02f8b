//! A TCP proxy the tests can cut: stands between a node and PostgreSQL or its peers to
//! simulate a network partition without privileges.
//!
//! `blackhole()` stops forwarding in both directions and holds new connections without
//! forwarding them (the worst case: nothing fails fast, everything times out). `heal()`
//! drops every connection made so far (stale ones would otherwise deliver old bytes) and
//! forwards new ones again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    _runtime: Arc<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Listen on `ip` (a free port) and forward to `target`.
    pub fn start(ip: std::net::IpAddr, target: SocketAddr) -> Result<Proxy> {
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?,
        );
        let listener = runtime.block_on(TcpListener::bind(SocketAddr::new(ip, 0)))?;
        let addr = listener.local_addr()?;
        let (cut, cut_rx) = watch::channel(false);
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept_tasks = tasks.clone();
        let rt = runtime.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cut_rx = cut_rx.clone();
                let handle = rt.spawn(async move {
                    if *cut_rx.borrow() {
                        std::future::pending::<()>().await;
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, cut_rx.clone()), pump(sr, cw, cut_rx));
                });
                accept_tasks.lock().unwrap().push(handle.abort_handle());
            }
        });
        Ok(Proxy {
            addr,
            cut,
            tasks,
            _runtime: runtime,
        })
    }

    pub fn blackhole(&self) {
        let _ = self.cut.send(true);
    }

    pub fn heal(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        let _ = self.cut.send(false);
    }
}

/// Copy one direction until EOF, holding everything once the proxy is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *cut.borrow() {
            std::future::pending::<()>().await;
        }
        tokio::select! {
            _ = cut.changed() => continue,
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if *cut.borrow() {
                        std::future::pending::<()>().await;
                    }
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = to.shutdown().await;
}
