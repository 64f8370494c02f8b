//! A raw XMPP client over tokio sockets: it sends exactly the bytes a test chooses and
//! parses what comes back with [`super::xml::StreamParser`]. Used for malformed input,
//! for SCRAM-*-PLUS (which slixmpp cannot do on TLS 1.3) and as the well-behaved
//! "witness" client that must keep working while another connection misbehaves.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::xml::{self, Element, Event, StreamParser, NS_BIND, NS_PING, NS_SASL, NS_STREAM, NS_STREAMS_ERR, NS_TLS};

/// Default bound for any single read in the raw tests.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

static ID_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub fn next_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        ID_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The stream header a well-behaved client sends.
pub fn stream_header(to: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{to}' version='1.0' xml:lang='en' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

impl Io {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
            Io::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Io::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Io::Gone => Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "connection gone")),
        }
    }
}

/// How a connection ended while we were waiting for something.
#[derive(Debug, Clone, PartialEq)]
pub enum Closed {
    /// Orderly TCP close (or TLS close_notify).
    Eof,
    /// Reset / TLS truncation / other I/O error (the text).
    Error(String),
}

/// What the server did when it rejected a stream.
#[derive(Debug)]
pub struct StreamErrorReport {
    /// The `<stream:error/>` element, if one arrived.
    pub error: Option<Element>,
    /// Whether `</stream:stream>` arrived.
    pub closing_tag: bool,
    /// How the TCP connection ended, if it did within the timeout.
    pub closed: Option<Closed>,
    /// Everything the server sent on this stream (lossy, for failure messages).
    pub transcript: String,
    /// Time from the start of the wait until the error element arrived.
    pub elapsed: Duration,
}

impl StreamErrorReport {
    /// The defined condition (child element in the xmpp-streams namespace).
    pub fn condition(&self) -> Option<String> {
        let e = self.error.as_ref()?;
        e.elements()
            .find(|c| c.ns == NS_STREAMS_ERR && c.local != "text")
            .map(|c| c.local.clone())
    }

    /// Assert the stream was ended with one of `accepted` conditions, the closing
    /// tag, and a closed TCP connection (RFC 6120 §4.9.1.1, §4.4).
    pub fn assert_condition(&self, accepted: &[&str], what: &str) -> Result<()> {
        let cond = self.condition();
        match &cond {
            Some(c) if accepted.contains(&c.as_str()) => {}
            Some(c) => bail!(
                "{what}: expected stream error {accepted:?}, got <{c}/>\n  transcript: {}",
                self.transcript
            ),
            None => bail!(
                "{what}: expected a <stream:error> with {accepted:?} in {NS_STREAMS_ERR}, got none \
                 (closed: {:?})\n  transcript: {}",
                self.closed,
                self.transcript
            ),
        }
        if !self.closing_tag {
            bail!(
                "{what}: RFC 6120 4.9.1.1: after <{}/> the server must close the stream with </stream:stream>\n  transcript: {}",
                cond.unwrap_or_default(),
                self.transcript
            );
        }
        if self.closed.is_none() {
            bail!(
                "{what}: RFC 6120 4.4: TCP connection still open after the stream error and both closing tags\n  transcript: {}",
                self.transcript
            );
        }
        Ok(())
    }
}

/// Outcome of a SASL exchange.
#[derive(Debug)]
pub enum SaslOutcome {
    Success,
    /// `<failure/>` with this condition.
    Failure(String, Element),
}

impl SaslOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, SaslOutcome::Success)
    }
}

/// A channel binding choice for SCRAM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cb {
    /// gs2 flag `n`: client does not support channel binding.
    None,
    /// gs2 flag `y`: client supports it but thinks the server does not.
    ClientSupportsOnly,
    /// `p=tls-exporter` (RFC 9266).
    TlsExporter,
    /// `p=tls-server-end-point` (RFC 5929).
    TlsServerEndPoint,
    /// `p=tls-exporter` with deliberately wrong binding data.
    WrongData,
}

pub struct RawConn {
    io: Io,
    parser: StreamParser,
    transcript: Vec<u8>,
    pub peer: SocketAddr,
    /// Stanzas read while waiting for something else.
    pub backlog: Vec<Element>,
    pub features: Option<Element>,
    pub jid: Option<String>,
    closed: Option<Closed>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> Result<RawConn> {
        let tcp = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connect to {addr} timed out"))?
            .with_context(|| format!("connect to {addr}"))?;
        Self::over(tcp, addr)
    }

    /// Like [`RawConn::connect`], from the local address `from` (another 127.0.0.x acts as
    /// another client address).
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> Result<RawConn> {
        let tcp = tcp_from(addr, from).await?;
        Self::over(tcp, addr)
    }

    /// Like [`RawConn::connect_tls`], from the local address `from`.
    pub async fn connect_tls_from(
        addr: SocketAddr,
        domain: &str,
        from: std::net::IpAddr,
    ) -> Result<(RawConn, Element)> {
        let c = Self::connect_from(addr, from).await?;
        c.into_tls(domain).await
    }

    /// Like [`RawConn::connect`], with the socket's receive buffer (SO_RCVBUF) set to
    /// `bytes` before connecting, so the TCP window stays small: a client that then stops
    /// reading backs data up into the server quickly.
    pub async fn connect_small_window(addr: SocketAddr, bytes: u32) -> Result<RawConn> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_recv_buffer_size(bytes)?;
        let tcp = tokio::time::timeout(READ_TIMEOUT, socket.connect(addr))
            .await
            .with_context(|| format!("connect to {addr} timed out"))?
            .with_context(|| format!("connect to {addr}"))?;
        Self::over(tcp, addr)
    }

    fn over(tcp: TcpStream, addr: SocketAddr) -> Result<RawConn> {
        tcp.set_nodelay(true)?;
        Ok(RawConn {
            io: Io::Plain(tcp),
            parser: StreamParser::new(),
            transcript: Vec::new(),
            peer: addr,
            backlog: Vec::new(),
            features: None,
            jid: None,
            closed: None,
        })
    }

    /// XEP-0368: TLS from the first byte, ALPN `xmpp-client`, SNI = domain.
    pub async fn connect_direct_tls(addr: SocketAddr, domain: &str) -> Result<RawConn> {
        let mut c = Self::connect(addr).await?;
        let Io::Plain(tcp) = std::mem::replace(&mut c.io, Io::Gone) else {
            unreachable!()
        };
        let tls = tls_handshake(tcp, domain, true).await?;
        c.io = Io::Tls(Box::new(tls));
        Ok(c)
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    pub fn transcript(&self) -> String {
        let t = String::from_utf8_lossy(&self.transcript);
        if t.len() > 4000 {
            let cut = t.len() - 4000;
            let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(t.len());
            format!("...{}", &t[cut..])
        } else {
            t.into_owned()
        }
    }

    pub async fn send(&mut self, data: impl AsRef<[u8]>) -> Result<()> {
        self.io
            .write_all(data.as_ref())
            .await
            .with_context(|| format!("write to {}", self.peer))
    }

    /// Read more bytes into the parser. Returns false when the connection is closed.
    async fn fill(&mut self, deadline: Instant) -> Result<bool> {
        if self.closed.is_some() {
            return Ok(false);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut buf = vec![0u8; 16 * 1024];
        match tokio::time::timeout(remaining, self.io.read(&mut buf)).await {
            Err(_) => Err(anyhow!("timed out")),
            Ok(Ok(0)) => {
                self.closed = Some(Closed::Eof);
                Ok(false)
            }
            Ok(Ok(n)) => {
                self.transcript.extend_from_slice(&buf[..n]);
                self.parser.feed(&buf[..n]);
                Ok(true)
            }
            Ok(Err(e)) => {
                self.closed = Some(Closed::Error(e.to_string()));
                Ok(false)
            }
        }
    }

    /// The next stream event; `Ok(None)` if the connection closed first.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.parser.next() {
                Ok(Some(ev)) => return Ok(Some(ev)),
                Ok(None) => {}
                Err(e) => bail!("server sent malformed XML: {e}\n  transcript: {}", self.transcript()),
            }
            match self.fill(deadline).await {
                Ok(true) => continue,
                Ok(false) => return Ok(None),
                Err(_) => bail!(
                    "no data from the server within {timeout:?}\n  transcript: {}",
                    self.transcript()
                ),
            }
        }
    }

    /// The next first-level element; failing on stream end / close.
    pub async fn next_element(&mut self, timeout: Duration, what: &str) -> Result<Element> {
        if !self.backlog.is_empty() {
            return Ok(self.backlog.remove(0));
        }
        match self
            .next_event(timeout)
            .await
            .with_context(|| format!("waiting for {what}"))?
        {
            Some(Event::Element(e)) => Ok(e),
            Some(Event::Header(h)) => bail!("waiting for {what}: unexpected second stream header {h}"),
            Some(Event::StreamEnd) => bail!(
                "waiting for {what}: server closed the stream\n  transcript: {}",
                self.transcript()
            ),
            None => bail!(
                "waiting for {what}: connection closed ({:?})\n  transcript: {}",
                self.closed,
                self.transcript()
            ),
        }
    }

    /// Wait for an element matching `pred`, keeping others in the backlog.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Element) -> bool,
    ) -> Result<Element> {
        if let Some(i) = self.backlog.iter().position(&mut pred) {
            return Ok(self.backlog.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                bail!(
                    "timed out waiting for {what}; other stanzas: {:?}\n  transcript: {}",
                    self.backlog.iter().map(|e| e.raw.clone()).collect::<Vec<_>>(),
                    self.transcript()
                );
            }
            let ev = self
                .next_event(remaining)
                .await
                .with_context(|| format!("waiting for {what}"))?;
            match ev {
                Some(Event::Element(e)) if e.is("error", NS_STREAM) => bail!(
                    "waiting for {what}: got a stream error: {e}\n  transcript: {}",
                    self.transcript()
                ),
                Some(Event::Element(e)) => {
                    if pred(&e) {
                        return Ok(e);
                    }
                    self.backlog.push(e);
                }
                Some(other) => bail!("waiting for {what}: unexpected {other:?}"),
                None => bail!(
                    "waiting for {what}: connection closed ({:?})\n  transcript: {}",
                    self.closed,
                    self.transcript()
                ),
            }
        }
    }

    /// Send our header, read the server's; returns the server's header.
    pub async fn open_stream(&mut self, to: &str) -> Result<Element> {
        self.parser.reset();
        self.send(stream_header(to)).await?;
        self.read_header().await
    }

    /// As [`RawConn::open_stream`] with a stream header of the test's own.
    pub async fn open_stream_with(&mut self, header: &str) -> Result<Element> {
        self.parser.reset();
        self.send(header).await?;
        self.read_header().await
    }

    pub async fn read_header(&mut self) -> Result<Element> {
        match self
            .next_event(READ_TIMEOUT)
            .await
            .context("waiting for the stream header")?
        {
            Some(Event::Header(h)) => {
                if !h.is("stream", NS_STREAM) {
                    bail!("server stream header has the wrong name/namespace: {h}");
                }
                Ok(h)
            }
            other => bail!(
                "expected the server's stream header, got {other:?}\n  transcript: {}",
                self.transcript()
            ),
        }
    }

    pub async fn read_features(&mut self) -> Result<Element> {
        let f = self.next_element(READ_TIMEOUT, "stream features").await?;
        if !f.is("features", NS_STREAM) {
            bail!("expected <stream:features/>, got {f}");
        }
        self.features = Some(f.clone());
        Ok(f)
    }

    /// `<starttls/>` → `<proceed/>` → TLS handshake (no certificate verification).
    pub async fn starttls(&mut self, domain: &str) -> Result<()> {
        self.starttls_then(domain, "").await
    }

    /// [`RawConn::starttls`], with `trailing` sent in the same write right after
    /// `<starttls/>` (go-xmpp sends a newline there).
    pub async fn starttls_then(&mut self, domain: &str, trailing: &str) -> Result<()> {
        self.send(format!("<starttls xmlns='{NS_TLS}'/>{trailing}")).await?;
        let proceed = self.next_element(READ_TIMEOUT, "<proceed/>").await?;
        if !proceed.is("proceed", NS_TLS) {
            bail!("expected <proceed/>, got {proceed}");
        }
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            bail!("STARTTLS on a connection that is already TLS");
        };
        let tls = tls_handshake(tcp, domain, false).await?;
        self.io = Io::Tls(Box::new(tls));
        self.parser.reset();
        Ok(())
    }

    /// TCP connect, stream open, STARTTLS, new stream; returns post-TLS features.
    pub async fn connect_tls(addr: SocketAddr, domain: &str) -> Result<(RawConn, Element)> {
        RawConn::connect(addr).await?.into_tls(domain).await
    }

    /// Stream open, STARTTLS, new stream on a connected socket; returns post-TLS features.
    pub async fn into_tls(mut self, domain: &str) -> Result<(RawConn, Element)> {
        self.open_stream(domain).await?;
        let f = self.read_features().await?;
        if f.child("starttls", NS_TLS).is_none() {
            bail!("RFC 6120 5.3.1: STARTTLS not offered: {f}");
        }
        self.starttls(domain).await?;
        self.open_stream(domain).await?;
        let f = self.read_features().await?;
        Ok((self, f))
    }

    pub fn mechanisms(&self) -> Vec<String> {
        self.features
            .as_ref()
            .and_then(|f| f.child("mechanisms", NS_SASL))
            .map(|m| {
                m.elements()
                    .filter(|e| e.local == "mechanism")
                    .map(|e| e.text())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn sasl_result(&mut self) -> Result<Element> {
        let e = self.next_element(READ_TIMEOUT, "SASL reply").await?;
        if e.ns != NS_SASL {
            bail!("expected a SASL element, got {e}");
        }
        Ok(e)
    }

    fn outcome(e: Element) -> Result<SaslOutcome> {
        match e.local.as_str() {
            "success" => Ok(SaslOutcome::Success),
            "failure" => {
                let cond = e
                    .elements()
                    .find(|c| c.local != "text")
                    .map(|c| c.local.clone())
                    .unwrap_or_default();
                Ok(SaslOutcome::Failure(cond, e))
            }
            _ => bail!("unexpected SASL element {e}"),
        }
    }

    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<SaslOutcome> {
        let payload = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>"))
            .await?;
        let e = self.sasl_result().await?;
        Self::outcome(e)
    }

    /// A full SCRAM exchange (RFC 5802), verifying the server signature on success.
    pub async fn auth_scram(&mut self, mechanism: &str, user: &str, password: &str, cb: Cb) -> Result<SaslOutcome> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let hash = if mechanism.starts_with("SCRAM-SHA-256") {
            ScramHash::Sha256
        } else if mechanism.starts_with("SCRAM-SHA-1") {
            ScramHash::Sha1
        } else {
            bail!("unsupported SCRAM mechanism {mechanism}");
        };
        let (gs2, cb_data): (String, Vec<u8>) = match cb {
            Cb::None => ("n,,".into(), Vec::new()),
            Cb::ClientSupportsOnly => ("y,,".into(), Vec::new()),
            Cb::TlsExporter => ("p=tls-exporter,,".into(), self.tls_exporter()?),
            Cb::WrongData => ("p=tls-exporter,,".into(), vec![0x42; 32]),
            Cb::TlsServerEndPoint => ("p=tls-server-end-point,,".into(), self.tls_server_end_point()?),
        };
        let cnonce = format!("{:x}{:x}", rand_u64(), rand_u64());
        let client_first_bare = format!("n={},r={cnonce}", user.replace('=', "=3D").replace(',', "=2C"));
        let client_first = format!("{gs2}{client_first_bare}");
        self.send(format!(
            "<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{}</auth>",
            b64.encode(&client_first)
        ))
        .await?;
        let e = self.sasl_result().await?;
        if e.local != "challenge" {
            return Self::outcome(e);
        }
        let server_first = String::from_utf8(b64.decode(e.text().trim())?)?;
        let attrs = scram_attrs(&server_first);
        let nonce = attrs.get("r").context("server-first without nonce")?;
        if !nonce.starts_with(&cnonce) {
            bail!("server nonce does not extend the client nonce: {server_first}");
        }
        let salt = b64.decode(attrs.get("s").context("server-first without salt")?)?;
        let iterations: u32 = attrs.get("i").context("server-first without i")?.parse()?;
        if iterations < 4096 {
            bail!("RFC 5802 5.1 / RFC 7677: iteration count {iterations} is below 4096");
        }
        let mut cbind_input = gs2.clone().into_bytes();
        cbind_input.extend_from_slice(&cb_data);
        let client_final_wo_proof = format!("c={},r={nonce}", b64.encode(&cbind_input));
        let auth_message = format!("{client_first_bare},{server_first},{client_final_wo_proof}");
        let salted = hash.pbkdf2(password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.digest(&client_key);
        let client_sig = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        let server_key = hash.hmac(&salted, b"Server Key");
        let server_sig = hash.hmac(&server_key, auth_message.as_bytes());
        let client_final = format!("{client_final_wo_proof},p={}", b64.encode(&proof));
        self.send(format!(
            "<response xmlns='{NS_SASL}'>{}</response>",
            b64.encode(&client_final)
        ))
        .await?;
        let e = self.sasl_result().await?;
        let final_data = match e.local.as_str() {
            // RFC 6120 6.3.10: server-final in <success/> (or, legacy, in one more challenge).
            "success" => e.text(),
            "challenge" => {
                let data = e.text();
                self.send(format!("<response xmlns='{NS_SASL}'/>")).await?;
                let e2 = self.sasl_result().await?;
                if e2.local != "success" {
                    return Self::outcome(e2);
                }
                data
            }
            _ => return Self::outcome(e),
        };
        let server_final = String::from_utf8(b64.decode(final_data.trim())?)?;
        let fattrs = scram_attrs(&server_final);
        let v = fattrs
            .get("v")
            .with_context(|| format!("server-final without verifier: {server_final}"))?;
        if b64.decode(v)? != server_sig {
            bail!("SCRAM server signature does not verify (mutual authentication failed)");
        }
        Ok(SaslOutcome::Success)
    }

    fn tls_conn(&self) -> Result<&rustls::ClientConnection> {
        match &self.io {
            Io::Tls(t) => Ok(t.get_ref().1),
            _ => bail!("not a TLS connection"),
        }
    }

    /// RFC 9266 tls-exporter channel binding.
    pub fn tls_exporter(&self) -> Result<Vec<u8>> {
        let conn = self.tls_conn()?;
        let out = conn
            .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
            .map_err(|e| anyhow!("export_keying_material: {e}"))?;
        Ok(out)
    }

    /// The server's certificate (DER), as the TLS handshake presented it.
    pub fn server_certificate(&self) -> Result<Vec<u8>> {
        let conn = self.tls_conn()?;
        let cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .context("no server certificate")?;
        Ok(cert.as_ref().to_vec())
    }

    /// RFC 5929 tls-server-end-point: hash of the server certificate.
    pub fn tls_server_end_point(&self) -> Result<Vec<u8>> {
        let conn = self.tls_conn()?;
        let cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .context("no server certificate")?;
        let der = cert.as_ref();
        // The certificate's own signature hash, with MD5/SHA-1 upgraded to SHA-256.
        const SHA384_OIDS: [&[u8]; 2] = [
            &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03],
            &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0C],
        ];
        const SHA512_OIDS: [&[u8]; 2] = [
            &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x04],
            &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0D],
        ];
        let contains = |pat: &[u8]| der.windows(pat.len()).any(|w| w == pat);
        let alg = if SHA512_OIDS.iter().any(|o| contains(o)) {
            &ring::digest::SHA512
        } else if SHA384_OIDS.iter().any(|o| contains(o)) {
            &ring::digest::SHA384
        } else {
            &ring::digest::SHA256
        };
        Ok(ring::digest::digest(alg, der).as_ref().to_vec())
    }

    /// After SASL success: restart the stream, bind `resource`, return the full JID.
    pub async fn bind(&mut self, domain: &str, resource: Option<&str>) -> Result<String> {
        self.open_stream(domain).await?;
        let f = self.read_features().await?;
        if f.child("bind", NS_BIND).is_none() {
            bail!("RFC 6120 7.2: no <bind/> feature after SASL: {f}");
        }
        let id = next_id("bind");
        let inner = match resource {
            Some(r) => format!("<resource>{}</resource>", xml::escape(r)),
            None => String::new(),
        };
        self.send(format!(
            "<iq type='set' id='{id}'><bind xmlns='{NS_BIND}'>{inner}</bind></iq>"
        ))
        .await?;
        let reply = self
            .wait_for(READ_TIMEOUT, "bind result", |e| {
                e.local == "iq" && e.attr("id") == Some(&id)
            })
            .await?;
        if reply.attr("type") != Some("result") {
            bail!("bind failed: {reply}");
        }
        let jid = reply
            .child("bind", NS_BIND)
            .and_then(|b| b.elements().find(|e| e.local == "jid"))
            .map(|j| j.text())
            .context("bind result without <jid/>")?;
        self.jid = Some(jid.clone());
        Ok(jid)
    }

    /// Full login with STARTTLS + PLAIN + bind + initial presence.
    pub async fn login(addr: SocketAddr, domain: &str, user: &str, password: &str, resource: &str) -> Result<RawConn> {
        RawConn::connect(addr)
            .await?
            .login_over(domain, user, password, resource)
            .await
    }

    /// [`RawConn::login`] on a connected socket (e.g. from [`RawConn::connect_small_window`]).
    pub async fn login_over(self, domain: &str, user: &str, password: &str, resource: &str) -> Result<RawConn> {
        let (mut c, _f) = self.into_tls(domain).await?;
        match c.auth_plain(user, password).await? {
            SaslOutcome::Success => {}
            SaslOutcome::Failure(cond, e) => bail!("login of {user}@{domain} failed: <{cond}/> {e}"),
        }
        c.bind(domain, Some(resource)).await?;
        c.send("<presence/>").await?;
        Ok(c)
    }

    /// XEP-0199 ping; returns the round-trip time.
    pub async fn ping(&mut self, to: &str) -> Result<Duration> {
        let id = next_id("ping");
        let start = Instant::now();
        self.send(format!(
            "<iq type='get' id='{id}' to='{to}'><ping xmlns='{NS_PING}'/></iq>"
        ))
        .await?;
        let reply = self
            .wait_for(READ_TIMEOUT, &format!("ping reply from {to}"), |e| {
                e.local == "iq" && e.attr("id") == Some(&id)
            })
            .await?;
        if reply.attr("type") != Some("result") {
            bail!("XEP-0199: ping to {to} did not return a result: {reply}");
        }
        Ok(start.elapsed())
    }

    /// An IQ get with `payload` (raw XML) to `to`; returns the answer (result or error).
    pub async fn iq_get(&mut self, to: &str, payload: &str) -> Result<Element> {
        self.iq("get", Some(to), payload).await
    }

    /// An IQ of `kind` (`get`, `set`) with `payload` (raw XML), to `to` or, without one, to
    /// the account itself; returns the answer (result or error).
    pub async fn iq(&mut self, kind: &str, to: Option<&str>, payload: &str) -> Result<Element> {
        let id = next_id(kind);
        let to_attr = to.map(|t| format!(" to='{}'", xml::escape(t))).unwrap_or_default();
        self.send(format!("<iq type='{kind}' id='{id}'{to_attr}>{payload}</iq>"))
            .await?;
        let from = to.unwrap_or("the account");
        self.wait_for(READ_TIMEOUT, &format!("answer from {from}"), |e| {
            e.local == "iq" && e.attr("id") == Some(&id)
        })
        .await
    }

    /// Wait for a message of type `error` (what the server or a plugin refused), `what`
    /// naming it in the failure.
    pub async fn expect_message_error(&mut self, what: &str) -> Result<Element> {
        self.wait_for(READ_TIMEOUT, what, |e| {
            e.local == "message" && e.attr("type") == Some("error")
        })
        .await
    }

    /// Send a chat message to `to` and return the id used.
    pub async fn message(&mut self, to: &str, body: &str) -> Result<String> {
        let id = next_id("msg");
        self.send(format!(
            "<message type='chat' id='{id}' to='{}'><body>{}</body></message>",
            xml::escape(to),
            xml::escape(body)
        ))
        .await?;
        Ok(id)
    }

    /// The bodies of every message received (including any set aside by `wait_for`) until
    /// the stream ends, the connection closes, or `quiet` passes with nothing new.
    pub async fn collect_bodies(&mut self, quiet: Duration) -> Vec<String> {
        let body = |e: &Element| {
            (e.local == "message")
                .then(|| e.find("body").map(|b| b.text()))
                .flatten()
        };
        let mut out: Vec<String> = self.backlog.drain(..).filter_map(|e| body(&e)).collect();
        while let Ok(Some(event)) = self.next_event(quiet).await {
            match event {
                Event::Element(e) => out.extend(body(&e)),
                Event::StreamEnd => break,
                Event::Header(_) => {}
            }
        }
        out
    }

    /// Wait for a message with exactly this body.
    pub async fn expect_message(&mut self, body: &str) -> Result<Element> {
        let want = body.to_string();
        self.wait_for(READ_TIMEOUT, &format!("message {body:?}"), move |e| {
            e.local == "message" && e.find("body").map(|b| b.text()) == Some(want.clone())
        })
        .await
    }

    /// Read until the server ends the stream; then send our closing tag and wait for
    /// the TCP close. Never fails on protocol content: the report says what happened.
    pub async fn expect_stream_error(&mut self, timeout: Duration) -> StreamErrorReport {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut error = None;
        let mut closing_tag = false;
        let mut elapsed = Duration::ZERO;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next_event(remaining).await {
                Ok(Some(Event::Element(e))) => {
                    if e.is("error", NS_STREAM) && error.is_none() {
                        elapsed = start.elapsed();
                        error = Some(e);
                    }
                }
                Ok(Some(Event::Header(_))) => {}
                Ok(Some(Event::StreamEnd)) => {
                    closing_tag = true;
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        // Our side of the close (RFC 6120 4.4); errors here mean it is already gone.
        if self.closed.is_none() {
            let _ = self.send("</stream:stream>").await;
            let deadline = Instant::now() + timeout;
            while self.closed.is_none() {
                match self.fill(deadline).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(_) => break,
                }
            }
        }
        StreamErrorReport {
            error,
            closing_tag,
            closed: self.closed.clone(),
            transcript: self.transcript(),
            elapsed,
        }
    }

    /// Whether the connection has been seen closed.
    pub fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }
}

#[derive(Clone, Copy)]
enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let alg = match self {
            ScramHash::Sha1 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => ring::hmac::HMAC_SHA256,
        };
        let k = ring::hmac::Key::new(alg, key);
        ring::hmac::sign(&k, data).as_ref().to_vec()
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            ScramHash::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => &ring::digest::SHA256,
        };
        ring::digest::digest(alg, data).as_ref().to_vec()
    }

    fn pbkdf2(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let (alg, len) = match self {
            ScramHash::Sha1 => (ring::pbkdf2::PBKDF2_HMAC_SHA1, 20),
            ScramHash::Sha256 => (ring::pbkdf2::PBKDF2_HMAC_SHA256, 32),
        };
        let mut out = vec![0u8; len];
        let iters = std::num::NonZeroU32::new(iterations).expect("iterations > 0");
        ring::pbkdf2::derive(alg, iters, salt, password, &mut out);
        out
    }
}

fn scram_attrs(msg: &str) -> std::collections::HashMap<String, String> {
    msg.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("random");
    u64::from_le_bytes(b)
}

// ----------------------------------------------------------------------------------------
// TLS without certificate verification (the server's certificates are self-signed).
// ----------------------------------------------------------------------------------------

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn insecure_client_config(alpn: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    if alpn {
        cfg.alpn_protocols = vec![b"xmpp-client".to_vec()];
    }
    Arc::new(cfg)
}

/// A TCP connection to `addr` from the local address `from` (any port).
pub async fn tcp_from(addr: SocketAddr, from: std::net::IpAddr) -> Result<TcpStream> {
    let socket = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket
        .bind(SocketAddr::new(from, 0))
        .with_context(|| format!("bind {from}"))?;
    tokio::time::timeout(READ_TIMEOUT, socket.connect(addr))
        .await
        .with_context(|| format!("connect to {addr} from {from} timed out"))?
        .with_context(|| format!("connect to {addr} from {from}"))
}

async fn tls_handshake(tcp: TcpStream, domain: &str, alpn: bool) -> Result<TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(insecure_client_config(alpn));
    let name = rustls::pki_types::ServerName::try_from(domain.to_string()).context("server name")?;
    tokio::time::timeout(READ_TIMEOUT, connector.connect(name, tcp))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")
}

impl RawConn {
    /// Like [`RawConn::send`] but stops quietly if the server closes the connection.
    pub async fn send_tolerant(&mut self, data: &[u8]) -> usize {
        let mut written = 0;
        for chunk in data.chunks(8192) {
            if self.io.write_all(chunk).await.is_err() {
                break;
            }
            written += chunk.len();
        }
        written
    }
}

/// Describe a received stanza briefly.
pub fn describe(e: &Element) -> String {
    let mut s = String::new();
    let _ = write!(s, "<{}", e.qname);
    for (k, v) in &e.attrs {
        let _ = write!(s, " {k}='{v}'");
    }
    s.push('>');
    s
}
