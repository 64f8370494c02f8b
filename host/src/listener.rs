//! Accept loops: one task per configured address, one task per accepted connection, all
//! tracked in `Server.tasks` so shutdown waits for each connection to say goodbye.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::server::Server;

/// Bind every configured listener; failing to bind any is fatal at start-up.
pub async fn bind_all(server: &Arc<Server>) -> std::io::Result<Vec<(TcpListener, bool)>> {
    let mut out = Vec::new();
    let listen = &server.ctx.config.listen;
    for (addr, direct) in listen
        .starttls
        .iter()
        .map(|a| (a, false))
        .chain(listen.direct_tls.iter().map(|a| (a, true)))
    {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        tracing::info!(%addr, tls = if direct { "direct" } else { "starttls" }, "listening for clients");
        out.push((listener, direct));
    }
    Ok(out)
}

pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    let per_ip = server.ctx.config.limits.connections_per_ip;
    let counts: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> = Default::default();
    let mut shutdown = server.shutdown.clone();
    loop {
        let (tcp, peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::server::until_shutdown(&mut shutdown) => return,
        };
        if !server.accepting() {
            // Fenced out of the pool: the client's reconnect logic takes it to a live node.
            tracing::debug!(%peer, "refusing connection: this node is fenced");
            continue;
        }
        // Not yet authenticated: counted against its address until SASL succeeds.
        let Some(slot) = server.unauthenticated.enter(peer.ip()) else {
            server
                .tasks
                .spawn("c2s refusal", crate::c2s::refuse(server.clone(), tcp, peer, direct_tls));
            continue;
        };
        if per_ip > 0 {
            let mut c = counts.lock().expect("counts lock");
            let n = c.entry(peer.ip()).or_default();
            if *n >= per_ip {
                tracing::info!(%peer, "refusing connection: too many from this address");
                continue;
            }
            *n += 1;
        }
        let counts = counts.clone();
        let connection = server.clone();
        server.tasks.spawn("c2s connection", async move {
            crate::c2s::serve(connection, tcp, peer, direct_tls, slot).await;
            if per_ip > 0 {
                let mut c = counts.lock().expect("counts lock");
                if let Some(n) = c.get_mut(&peer.ip()) {
                    *n -= 1;
                    if *n == 0 {
                        c.remove(&peer.ip());
                    }
                }
            }
        });
    }
}
