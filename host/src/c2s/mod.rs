//! Client-to-server connections: from an accepted socket to a bound session.
//!
//! The stream state machine is linear (RFC 6120 §4–7):
//! plaintext header → STARTTLS ([`plaintext`]) → TLS → header → SASL ([`negotiate`]) →
//! restart → header → resource binding → the bound session loop ([`bound`]).
//! Direct TLS (XEP-0368) starts at the TLS step.
//!
//! Before TLS the task writes to the socket itself, because STARTTLS must take the socket
//! back whole. From TLS on, a writer task owns the write half and everything else only
//! enqueues ([`crate::stream::writer`]).

mod bound;
mod negotiate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::Instrument;

pub use bound::Bound;

use crate::auth::ChannelBindings;
use crate::server::Server;
use crate::stream::writer::QueueLimits;
use crate::stream::{ReadError, StreamError, StreamErrorCondition, StreamEvent, XmlStreamReader};

pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

/// Read buffer per connection: small, because most connections are idle most of the time
/// and quick-xml grows its own buffer for the rare big stanza.
const READ_BUFFER: usize = 2048;

/// A login slot (admission control), held from accept until the session is bound.
type LoginPermit = Option<tokio::sync::OwnedSemaphorePermit>;

/// Wait (bounded) for a login slot; `None` means the node is saturated with logins.
async fn admit(server: &Server) -> LoginPermit {
    let wait = Duration::from_millis(server.config.limits.login_queue_ms);
    match tokio::time::timeout(wait, server.logins.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Some(permit),
        _ => None,
    }
}

fn saturated() -> StreamError {
    StreamError::new(
        StreamErrorCondition::ResourceConstraint,
        "too many logins in progress; please retry in a few seconds",
    )
}

/// Serve one accepted TCP connection until it ends.
pub async fn serve(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let _ = tcp.set_nodelay(true);
    let span = tracing::info_span!("c2s", %peer);
    async move {
        let permit = admit(&server).await;
        if permit.is_none() {
            tracing::info!("login refused: too many in progress (resource-constraint)");
        }
        let result = if direct_tls {
            match (accept_tls(&server, tcp).await, permit) {
                (Some(tls), Some(permit)) => secure(server, tls, peer, Some(permit)).await,
                (Some(mut tls), None) => {
                    close_with_error(&mut tls, &server, false, &saturated()).await;
                    Ok(())
                }
                (None, _) => Ok(()),
            }
        } else {
            plaintext(server, tcp, peer, permit).await
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended");
        }
    }
    .instrument(span)
    .await
}

async fn accept_tls(server: &Server, tcp: TcpStream) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server.tls.config.clone());
    match tokio::time::timeout(Duration::from_secs(15), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// The opening `<stream:stream>` we send, always before anything else on a stream.
pub fn stream_header(domain: &str, id: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='{id}' from='{}' version='1.0' xml:lang='en'>",
        crate::xml::escape(domain)
    )
}

/// The plaintext phase: one header, STARTTLS, then hand the socket to [`secure`].
/// Nothing but `<starttls/>` is accepted here: authentication always needs TLS.
async fn plaintext(
    server: Arc<Server>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: LoginPermit,
) -> Result<(), ReadError> {
    let (read, mut write) = tokio::io::split(tcp);
    let mut reader = XmlStreamReader::new(
        BufReader::with_capacity(READ_BUFFER, read),
        server.config.stream_limits(false),
    );
    let timeout = Duration::from_secs(server.config.limits.auth_timeout_secs);
    let mut header_sent = false;
    let outcome = async {
        let header = negotiate::expect_header(&mut reader, timeout).await?;
        let domain = negotiate::check_header(&server, &header)?;
        write_raw(&mut write, &stream_header(&domain, &new_stream_id())).await?;
        header_sent = true;
        if permit.is_none() {
            return Err(saturated().into());
        }
        let features = format!("<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls></stream:features>");
        write_raw(&mut write, &features).await?;
        loop {
            match negotiate::next_event(&mut reader, timeout).await? {
                StreamEvent::Whitespace => continue,
                StreamEvent::Stanza(e) if e.is("starttls", NS_TLS) => break,
                StreamEvent::End => return Err(ReadError::Closed),
                _ => {
                    return Err(
                        StreamError::new(StreamErrorCondition::NotAuthorized, "STARTTLS is required first").into(),
                    )
                }
            }
        }
        write_raw(&mut write, &format!("<proceed xmlns='{NS_TLS}'/>")).await?;
        Ok(domain)
    }
    .await;
    match outcome {
        Ok(_domain) => {
            // Bytes the client pipelined after <starttls/> would be plaintext injected into
            // the TLS stream (CVE-2011-1431 style); a conforming client sends none.
            let buffered = reader.into_inner();
            if !buffered.buffer().is_empty() {
                return Err(ReadError::Closed);
            }
            let tcp = buffered.into_inner().unsplit(write);
            match accept_tls(&server, tcp).await {
                Some(tls) => secure(server, tls, peer, permit).await,
                None => Ok(()),
            }
        }
        Err(ReadError::Stream(err)) => {
            close_with_error(&mut write, &server, header_sent, &err).await;
            Err(ReadError::Stream(err))
        }
        Err(e) => Err(e),
    }
}

async fn write_raw<W: AsyncWrite + Unpin>(w: &mut W, s: &str) -> Result<(), ReadError> {
    w.write_all(s.as_bytes()).await?;
    w.flush().await?;
    Ok(())
}

/// Send a stream error (with our header first if none went out yet) and close.
async fn close_with_error<W: AsyncWrite + Unpin>(w: &mut W, server: &Server, header_sent: bool, err: &StreamError) {
    tracing::debug!(condition = %err.condition, text = %err.text, "stream error");
    let mut out = String::new();
    if !header_sent {
        out.push_str(&stream_header(&server.config.domains[0].name, &new_stream_id()));
    }
    out.push_str(&err.to_xml());
    out.push_str("</stream:stream>");
    let _ = w.write_all(out.as_bytes()).await;
    let _ = w.shutdown().await;
}

pub fn new_stream_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Channel-binding values of an established TLS connection.
fn channel_bindings(server: &Server, tls: &tokio_rustls::server::TlsStream<TcpStream>) -> ChannelBindings {
    let (_, conn) = tls.get_ref();
    // RFC 9266: tls-exporter is only sound on TLS 1.3 (or 1.2 with EMS); offer it for 1.3.
    let tls_exporter = (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
        .then(|| {
            conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
                .ok()
        })
        .flatten();
    ChannelBindings {
        tls_exporter,
        tls_server_end_point: Some(server.tls.end_point(conn.server_name())),
    }
}

/// Everything after TLS is up.
async fn secure(
    server: Arc<Server>,
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    permit: LoginPermit,
) -> Result<(), ReadError> {
    let bindings = channel_bindings(&server, &tls);
    run_stream(server, tls, peer, bindings, permit).await
}

async fn run_stream<S>(
    server: Arc<Server>,
    stream: S,
    peer: SocketAddr,
    bindings: ChannelBindings,
    permit: LoginPermit,
) -> Result<(), ReadError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let limits = &server.config.limits;
    let queue = QueueLimits {
        max_bytes: limits.send_queue_bytes,
        send_timeout: Duration::from_secs(limits.send_timeout_secs),
    };
    let (tx, inbox) = crate::stream::writer::channel(queue);
    let (unsent_tx, mut unsent_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(crate::stream::writer::run_writer(write, inbox, unsent_tx));
    let reader = XmlStreamReader::new(
        BufReader::with_capacity(READ_BUFFER, read),
        server.config.stream_limits(false),
    );
    let result = negotiate::negotiate(&server, reader, tx.clone(), peer, bindings).await;
    // Bound (or failed): the login slot is free for the next client.
    drop(permit);
    let result = match result {
        Ok((reader, session)) => bound::run(&server, reader, session).await,
        Err(e) => Err(e),
    };
    if let Err(ReadError::Stream(err)) = &result {
        tracing::debug!(condition = %err.condition, text = %err.text, "stream error");
        tx.close(Some(err.clone()));
    } else {
        tx.close(None);
    }
    // What is queued gets one send timeout to go out; then the queue is dropped. Either
    // way the writer hands back what it did not write, without waiting on the socket.
    let unsent = match tokio::time::timeout(queue.send_timeout, &mut unsent_rx).await {
        Ok(unsent) => unsent,
        Err(_) => {
            tx.abort(None);
            unsent_rx.await
        }
    };
    drop(tx);
    // Messages that reached this session's queue too late: the session is gone from the
    // table by now, so routing them again finds another resource or storage.
    for stanza in unsent.unwrap_or_default().into_iter().filter(|s| s.name == "message") {
        crate::router::redeliver(&server, Arc::unwrap_or_clone(stanza)).await;
    }
    result
}
