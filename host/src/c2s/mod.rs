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
//!
//! Every connection task shares the node's one [`Frontend`].

mod admission;
mod bound;
mod frontend;
mod negotiate;
mod resumption;
mod sm;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::Instrument;

pub use frontend::Frontend;

use crate::auth::ChannelBindings;
use crate::limits::AddressSlot;
use crate::stream::{ReadError, StreamError, StreamErrorCondition, StreamEvent, XmlStreamReader};
use admission::Deadline;

pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

/// Read buffer per connection: small, because most connections are idle most of the time
/// and quick-xml grows its own buffer for the rare big stanza.
const READ_BUFFER: usize = 2048;

/// Serve one accepted TCP connection until it ends. `slot` counts it against its address's
/// cap on unauthenticated connections until SASL succeeds.
pub async fn serve(front: Arc<Frontend>, tcp: TcpStream, peer: SocketAddr, direct_tls: bool, slot: AddressSlot) {
    let _ = tcp.set_nodelay(true);
    let deadline = Deadline::from_accept(&front);
    let span = tracing::info_span!("c2s", %peer, jid = tracing::field::Empty);
    // The connection's admission permit lives in a slot of this task (see `admission`).
    admission::scope(async move {
        let result = if direct_tls {
            match Box::pin(accept_tls(&front, tcp, deadline, Admission::New)).await {
                Some(tls) => secure(front, tls, peer, deadline, slot).await,
                None => Ok(()),
            }
        } else {
            plaintext(front, tcp, peer, deadline, slot).await
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended");
        }
    })
    .instrument(span)
    .await
}

/// Refuse a connection over its address's cap on unauthenticated connections, before any
/// negotiation (RFC 6120 §13.12). On the STARTTLS port the client reads why; on the direct
/// TLS port we spend no handshake on it and just close.
pub async fn refuse(front: Arc<Frontend>, mut tcp: TcpStream, peer: SocketAddr, direct_tls: bool) {
    tracing::info!(%peer, "connection refused: too many unauthenticated connections from this address");
    if direct_tls {
        return;
    }
    let (read, mut write) = tcp.split();
    close_with_error(&mut write, &front, false, &admission::too_many_from_address()).await;
    crate::stream::linger::drain(read).await;
}

/// Whether a TLS handshake starts a login (direct TLS) or continues one admitted at
/// `<starttls/>`.
#[derive(Clone, Copy)]
enum Admission {
    New,
    Admitted,
}

/// The TLS handshake. The client's ClientHello is read first, which costs us nothing; the
/// admission permit is needed only for the handshake's cryptography after it, so a
/// stranger who never finishes a ClientHello holds none. A saturated node closes a new
/// direct-TLS connection there (no XML can be sent before TLS).
async fn accept_tls(
    front: &Frontend,
    tcp: TcpStream,
    deadline: Deadline,
    admission: Admission,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let hello = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = match deadline.run_handshake(hello).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed before its ClientHello");
            return None;
        }
        Err(_) => {
            tracing::debug!("TLS ClientHello timed out");
            return None;
        }
    };
    let admitted = match admission {
        Admission::New => admission::admit(front).await,
        Admission::Admitted => admission::readmit(front, deadline).await,
    };
    if admitted.is_err() {
        return None;
    }
    match deadline
        .run_handshake(start.into_stream(front.tls.config.clone()))
        .await
    {
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

/// How the plaintext phase ended without a stream error.
enum Plaintext {
    /// `<proceed/>` sent: TLS comes next, admitted.
    Proceed,
    /// The client closed the stream (`</stream:stream>`).
    ClientClosed,
}

/// The plaintext phase: one header, STARTTLS, then hand the socket to [`secure`].
/// Nothing but `<starttls/>` is accepted here: authentication always needs TLS.
async fn plaintext(
    front: Arc<Frontend>,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Deadline,
    slot: AddressSlot,
) -> Result<(), ReadError> {
    let (read, mut write) = tokio::io::split(tcp);
    let mut reader = XmlStreamReader::new(
        BufReader::with_capacity(READ_BUFFER, read),
        front.ctx.config.stream_limits(false),
    );
    let mut header_sent = false;
    // Boxed, like every step that ends before the session is bound: the connection's task
    // then keeps, for its whole life, only what the bound session needs (see `bound`).
    let negotiation = Box::pin(async {
        let header = negotiate::expect_header(&mut reader, deadline).await?;
        let domain = negotiate::check_header(&front, &header)?;
        write_raw(&mut write, &stream_header(&domain, &new_stream_id())).await?;
        header_sent = true;
        let features = format!("<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls></stream:features>");
        write_raw(&mut write, &features).await?;
        loop {
            match negotiate::next_event(&mut reader, deadline).await? {
                StreamEvent::Whitespace => continue,
                StreamEvent::Stanza(e) if e.is("starttls", NS_TLS) => break,
                StreamEvent::End => return Ok(Plaintext::ClientClosed),
                _ => {
                    return Err(
                        StreamError::new(StreamErrorCondition::NotAuthorized, "STARTTLS is required first").into(),
                    )
                }
            }
        }
        // Bytes pipelined after <starttls/> would be plaintext injected into the TLS stream
        // (CVE-2011-1431). Whitespace is harmless (go-xmpp always sends a newline there) and
        // is dropped; anything else is refused while the plaintext stream can still say so.
        if !reader.buffered().iter().all(is_xml_space) {
            tracing::info!(%peer, "refused: data pipelined after <starttls/>");
            return Err(StreamError::new(
                StreamErrorCondition::PolicyViolation,
                "nothing may follow <starttls/> before the TLS handshake",
            )
            .into());
        }
        // The handshake is the first expensive step: a saturated node refuses here, before
        // any TLS work, with the retryable <resource-constraint/>.
        deadline
            .run(admission::admit(&front))
            .await
            .map_err(|_| admission::expired())??;
        write_raw(&mut write, &format!("<proceed xmlns='{NS_TLS}'/>")).await?;
        Ok(Plaintext::Proceed)
    });
    let outcome = until_shutdown(&front, negotiation).await;
    match outcome {
        Ok(Plaintext::Proceed) => {
            // What was buffered is whitespace (checked above); whitespace still in flight
            // is skipped too, so the TLS handshake starts at the ClientHello.
            let tcp = reader.into_inner().into_inner().unsplit(write);
            match deadline.run_handshake(skip_whitespace(&tcp)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    tracing::debug!(%peer, "no TLS ClientHello after <proceed/>");
                    return Ok(());
                }
            }
            match Box::pin(accept_tls(&front, tcp, deadline, Admission::Admitted)).await {
                Some(tls) => secure(front, tls, peer, deadline, slot).await,
                None => Ok(()),
            }
        }
        Ok(Plaintext::ClientClosed) => {
            // RFC 6120 §4.4: answer the client's closing tag with ours, then close.
            let _ = write.write_all(b"</stream:stream>").await;
            let _ = write.shutdown().await;
            admission::release(); // nothing left to spend on this login
            crate::stream::linger::drain(reader.into_inner()).await;
            Ok(())
        }
        Err(ReadError::Stream(err)) => {
            close_with_error(&mut write, &front, header_sent, &err).await;
            admission::release(); // nothing left to spend on this login
            crate::stream::linger::drain(reader.into_inner()).await;
            Err(ReadError::Stream(err))
        }
        Err(e) => Err(e),
    }
}

/// Run a negotiation step unless the node starts shutting down first, which ends the
/// stream with `<system-shutdown/>` as it does a bound session's.
async fn until_shutdown<T>(
    front: &Frontend,
    step: impl std::future::Future<Output = Result<T, ReadError>>,
) -> Result<T, ReadError> {
    tokio::select! {
        out = step => out,
        () = front.tasks.signalled() => Err(ReadError::Stream(StreamError::new(
            StreamErrorCondition::SystemShutdown,
            "the server is shutting down",
        ))),
    }
}

/// XML's whitespace (the `S` production): what may sit between `<starttls/>` and TLS.
fn is_xml_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Consume whitespace at the head of the socket without touching the byte after it.
async fn skip_whitespace(tcp: &TcpStream) -> std::io::Result<()> {
    let mut head = [0u8; 64];
    loop {
        let n = tcp.peek(&mut head).await?;
        let blank = head[..n].iter().take_while(|b| is_xml_space(b)).count();
        if blank == 0 {
            return Ok(());
        }
        // Peeked bytes are ready: this read takes exactly them and does not wait.
        let mut taken = 0;
        while taken < blank {
            tcp.readable().await?;
            match tcp.try_read(&mut head[..blank - taken]) {
                Ok(0) => return Ok(()),
                Ok(k) => taken += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

async fn write_raw<W: AsyncWrite + Unpin>(w: &mut W, s: &str) -> Result<(), ReadError> {
    w.write_all(s.as_bytes()).await?;
    w.flush().await?;
    Ok(())
}

/// Send a stream error (with our header first if none went out yet) and close.
async fn close_with_error<W: AsyncWrite + Unpin>(w: &mut W, front: &Frontend, header_sent: bool, err: &StreamError) {
    tracing::debug!(condition = %err.condition, text = %err.text, "stream error");
    let mut out = String::new();
    if !header_sent {
        out.push_str(&stream_header(&front.ctx.config.domains[0].name, &new_stream_id()));
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
fn channel_bindings(front: &Frontend, tls: &tokio_rustls::server::TlsStream<TcpStream>) -> ChannelBindings {
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
        tls_server_end_point: Some(front.tls.end_point(conn.server_name())),
    }
}

/// Everything after TLS is up. A plain function, so the TLS stream is not kept twice in
/// the task (once as this function's argument, once as the stream's).
fn secure(
    front: Arc<Frontend>,
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    deadline: Deadline,
    slot: AddressSlot,
) -> impl Future<Output = Result<(), ReadError>> {
    let bindings = channel_bindings(&front, &tls);
    // Split here, not in `run_stream`: an argument's slot stays reserved in the task for
    // the whole function, and a TLS stream is 1.2 KiB; its halves are two pointers.
    let (read, write) = tokio::io::split(tls);
    run_stream(front, read, write, peer, bindings, deadline, slot)
}

async fn run_stream<S>(
    front: Arc<Frontend>,
    read: tokio::io::ReadHalf<S>,
    write: tokio::io::WriteHalf<S>,
    peer: SocketAddr,
    bindings: ChannelBindings,
    deadline: Deadline,
    slot: AddressSlot,
) -> Result<(), ReadError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let queue = front.ctx.config.send_queue();
    let (tx, inbox) = crate::stream::writer::channel(queue);
    let (unsent_tx, mut unsent_rx) = tokio::sync::oneshot::channel();
    // The writer logs under this connection's span (the XML trace names the peer).
    let writer = front.tasks.spawn(
        "c2s writer",
        crate::stream::writer::run_writer(write, inbox, unsent_tx).instrument(tracing::Span::current()),
    );
    let mut reader = XmlStreamReader::new(
        BufReader::with_capacity(READ_BUFFER, read),
        front.ctx.config.stream_limits(false),
    );
    // Not yet bound, nothing to undo: shutdown ends the negotiation where it stands. (The
    // bind step is left to run to its end or its deadline: it enters the session table.)
    let authenticated = until_shutdown(
        &front,
        Box::pin(negotiate::authenticate_stream(
            &front,
            &mut reader,
            &tx,
            peer,
            &bindings,
            deadline,
        )),
    )
    .await;
    let (result, mut session) = match authenticated {
        Ok(user) => {
            // Authenticated: no longer counted against the address's unauthenticated cap.
            drop(slot);
            reader = reader.restart();
            reader.set_limits(front.ctx.config.stream_limits(true));
            match Box::pin(negotiate::bind_stream(&front, &mut reader, &tx, &user, peer, deadline)).await {
                Ok(bound) => {
                    // Logged in: the node's login resources go to the next one.
                    admission::release();
                    tracing::Span::current().record("jid", tracing::field::display(&bound.session.jid));
                    let mut finished = bound::run(&front, &mut reader, bound).await;
                    (std::mem::replace(&mut finished.result, Ok(())), Some(finished))
                }
                Err(e) => (Err(e), None),
            }
        }
        Err(e) => (Err(e), None),
    };
    // Whatever happened, this login spends nothing more of the node's.
    admission::release();
    // A lost connection under resumable stream management holds its session: the table's
    // entry points at a holding queue from now on, before anything else is undone.
    let holding = session
        .as_ref()
        .filter(|f| f.resumable().is_some())
        .and_then(|f| resumption::hold(&front, &f.session));
    if holding.is_none() {
        if let Some(finished) = &mut session {
            bound::end(&front, &mut finished.session).await;
            if let Some((id, _)) = finished.sm.as_ref().and_then(|sm| sm.resumable.as_ref()) {
                front.resumptions.forget(id);
            }
        }
    }
    let err = match &result {
        Err(ReadError::Stream(err)) => {
            tracing::debug!(condition = %err.condition, text = %err.text, "stream error");
            Some(err.clone())
        }
        _ => None,
    };
    if holding.is_some() {
        // Nothing more is written to a lost connection: what is queued is kept instead.
        tx.abort(err);
    } else {
        tx.close(err);
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
    let unsent = unsent.unwrap_or_default();
    match (session, holding) {
        (Some(finished), Some(holding)) => {
            let sm = finished.sm.expect("a resumable session has stream management");
            resumption::park(
                &front,
                resumption::Lost {
                    session: finished.session,
                    kill: finished.kill,
                    sm,
                    unsent,
                    holding,
                },
            )
            .await;
        }
        (finished, _) => {
            // What the client never got or never acknowledged: the session is gone from
            // the table by now, so routing it again finds another resource or storage.
            let mut lost = finished
                .and_then(|f| f.sm)
                .map(|sm| sm.log.take_unacked())
                .unwrap_or_default();
            lost.extend(unsent);
            undelivered(&front, lost).await;
        }
    }
    // Once our closing tag is out and our side shut down, let the client finish its side
    // before the socket closes (else the kernel may reset over our error), unless the
    // connection is already gone.
    if !matches!(result, Err(ReadError::Io(_)) | Err(ReadError::Closed))
        && tokio::time::timeout(queue.send_timeout, writer).await.is_ok()
    {
        crate::stream::linger::drain(reader.into_inner()).await;
    }
    result
}

/// Stanzas a session took and its client never got, once the session has left the table:
/// messages are routed again (to another resource or offline storage, RFC 6121 §8.5),
/// requests get `<service-unavailable/>` as if the session had never been there, and the
/// rest (presence, results, errors) is dropped, as it would be for an absent resource.
async fn undelivered(front: &Arc<Frontend>, stanzas: Vec<Arc<crate::xml::Element>>) {
    for stanza in stanzas {
        match stanza.name.as_str() {
            "message" => crate::delivery::redeliver(&front.ctx, Arc::unwrap_or_clone(stanza)).await,
            "iq" => crate::delivery::bounce(&front.ctx, &stanza, crate::stanza::Condition::ServiceUnavailable, None),
            _ => {}
        }
    }
}
