//! Accept loops: one task per configured address, one task per accepted connection, all
//! tracked in `Frontend.tasks` so shutdown waits for each connection to say goodbye.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::c2s::Frontend;

/// Bind every configured listener; failing to bind any is fatal at start-up.
pub async fn bind_all(front: &Arc<Frontend>) -> std::io::Result<Vec<(TcpListener, bool)>> {
    let mut out = Vec::new();
    let listen = &front.ctx.config.listen;
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

pub async fn accept_loop(front: Arc<Frontend>, listener: TcpListener, direct_tls: bool) {
    let per_ip = front.ctx.config.limits.connections_per_ip;
    let counts: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> = Default::default();
    let mut shutdown = front.shutdown.clone();
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
            _ = crate::tasks::until_shutdown(&mut shutdown) => return,
        };
        if !front.accepting() {
            // Fenced out of the pool: the client's reconnect logic takes it to a live node.
            tracing::debug!(%peer, "refusing connection: this node is fenced");
            continue;
        }
        // Not yet authenticated: counted against its address until SASL succeeds.
        let Some(slot) = front.unauthenticated.enter(peer.ip()) else {
            front
                .tasks
                .spawn("c2s refusal", crate::c2s::refuse(front.clone(), tcp, peer, direct_tls));
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
        let connection = front.clone();
        front.tasks.spawn("c2s connection", async move {
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
