//! Plain RFC 6120 client connection: TCP -> (STARTTLS | direct TLS) -> SASL ->
//! stream restart -> resource bind -> (RFC 3921 session) -> initial presence.
//!
//! Only standard wire protocol is used so the same tool can be pointed at any
//! server (poolxmpp, Prosody, ejabberd) and the numbers stay comparable. Each
//! login records per-phase timings so a slow phase (TLS vs. SASL vs. bind) is
//! visible in the report, not just the total.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rsasl::prelude::State;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::sasl::{self, ScramCache};
use crate::xml::{escape, Element, XmlReader};

const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
const NS_REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
const NS_PING: &str = "urn:xmpp:ping";

/// How the TCP connection gets encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// RFC 6120 STARTTLS on the plain c2s port (default).
    StartTls,
    /// XEP-0368 direct TLS (TLS from the first byte).
    Direct,
    /// No TLS at all (only useful if the server allows it).
    None,
}

/// Everything needed to open a client connection; shared by all tasks.
pub struct ClientOpts {
    pub addr: SocketAddr,
    /// The nodes of a pool: each user connects to one of them, chosen by a hash of its
    /// name, so a user's sessions share a node and users spread evenly. Empty: `addr`.
    pub spread: Vec<SocketAddr>,
    pub domain: String,
    pub password: String,
    pub tls: TlsMode,
    pub connector: TlsConnector,
    pub mechanism: String,
    /// Upper bound for one whole login (or registration) attempt.
    pub op_timeout: Duration,
    /// Global end of the run; no attempt runs past it.
    pub deadline: Instant,
    pub scram: Arc<ScramCache>,
}

impl ClientOpts {
    /// The server address `user` connects to.
    pub fn addr_for(&self, user: &str) -> SocketAddr {
        if self.spread.is_empty() {
            return self.addr;
        }
        // FNV-1a, then splitmix64's finalizer: stable across runs and platforms (unlike
        // std's randomized hasher), and names that differ in one character (load0, load1)
        // land independently instead of in a fixed pattern.
        let mut h = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        self.spread[(h % self.spread.len() as u64) as usize]
    }
}

/// Time spent in each phase of one login, measured from the start of `connect`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoginTimings {
    pub tcp: Duration,
    pub tls: Duration,
    pub auth: Duration,
    /// Stream restart + bind + session + initial presence.
    pub bind: Duration,
    pub total: Duration,
}

/// Plain or TLS transport behind one type so the XML layer need not care.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskCx<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskCx<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Io = BufReader<Transport>;
/// Read side of an established session (kept separate so a task can read while
/// another writes).
pub type SessionReader = XmlReader<BufReader<ReadHalf<Io>>>;
pub type SessionWriter = WriteHalf<Io>;

/// A logged-in, available client session.
pub struct Session {
    /// Full JID assigned by the server at bind time.
    pub jid: String,
    pub reader: SessionReader,
    pub writer: SessionWriter,
    pub timings: LoginTimings,
}

/// Write and flush one piece of XML.
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, data: &str) -> Result<()> {
    w.write_all(data.as_bytes()).await?;
    w.flush().await?;
    Ok(())
}

/// Reply to a server-originated IQ get (e.g. XEP-0199 ping) so idle sessions
/// are not dropped as dead. Returns the reply to send, if any.
pub fn iq_reply(el: &Element) -> Option<String> {
    if el.name != "iq" || el.attr("type") != Some("get") {
        return None;
    }
    let id = escape(el.attr("id").unwrap_or(""));
    let to = el
        .attr("from")
        .map(|f| format!(" to='{}'", escape(f)))
        .unwrap_or_default();
    if el.child_ns("ping", NS_PING).is_some() {
        Some(format!("<iq type='result' id='{id}'{to}/>"))
    } else {
        Some(format!(
            "<iq type='error' id='{id}'{to}><error type='cancel'><service-unavailable \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        ))
    }
}

impl Session {
    /// Close the stream politely: send `</stream:stream>`, wait (bounded) for the
    /// server's closing tag, then shut the transport down. Returns `true` if the
    /// server closed cleanly within `wait`.
    pub async fn close(self, wait: Duration) -> bool {
        close_halves(self.reader, self.writer, wait).await
    }
}

/// [`Session::close`] for a session that was split into its halves.
pub async fn close_halves(mut reader: SessionReader, mut writer: SessionWriter, wait: Duration) -> bool {
    if send(&mut writer, "</stream:stream>").await.is_err() {
        return false;
    }
    let drained = tokio::time::timeout(wait, async {
        loop {
            match reader.next_element().await {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = tokio::time::timeout(wait, writer.shutdown()).await;
    drained
}

impl ClientOpts {
    /// Time allowed for one attempt starting now.
    fn attempt_timeout(&self) -> Duration {
        self.op_timeout
            .min(self.deadline.saturating_duration_since(Instant::now()))
    }
}

/// The stream header we open (and re-open) with.
fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
        escape(domain)
    )
}

/// A `<stream:error>` the server ended the stream with (RFC 6120 §4.9). Kept as a
/// type so callers can act on the condition: retry after `resource-constraint`,
/// reconnect elsewhere after `see-other-host`.
#[derive(Debug, Clone)]
pub struct StreamError {
    /// The defined condition, e.g. `see-other-host`.
    pub condition: String,
    /// Character data of the condition element (`host:port` for `see-other-host`).
    pub content: String,
    description: String,
}

impl StreamError {
    fn from_element(el: &Element) -> Self {
        let cond = el.children.iter().find(|c| c.name != "text");
        StreamError {
            condition: cond.map(|c| c.name.clone()).unwrap_or_default(),
            content: cond.map(|c| c.text.trim().to_owned()).unwrap_or_default(),
            description: el.describe_error(),
        }
    }

    /// The stream error somewhere in `err`'s chain, if that is what ended the attempt.
    pub fn find(err: &anyhow::Error) -> Option<&StreamError> {
        err.chain().find_map(|e| e.downcast_ref::<StreamError>())
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream error: {}", self.description)
    }
}

impl std::error::Error for StreamError {}

/// Read the next top-level element, turning a `<stream:error>` or a closed stream
/// into an error.
async fn expect_element(xml: &mut XmlReader<Io>) -> Result<Element> {
    match xml.next_element().await? {
        Some(el) if el.name == "error" => Err(StreamError::from_element(&el).into()),
        Some(el) => Ok(el),
        None => bail!("server closed the stream"),
    }
}

/// Send our stream header on `io`, read the server's header and features.
async fn open_stream(io: Io, domain: &str) -> Result<(XmlReader<Io>, Element)> {
    let mut xml = XmlReader::new(io);
    send(xml.get_mut(), &stream_header(domain)).await?;
    let hdr = xml.read_stream_header().await?;
    if hdr.attr("version") != Some("1.0") {
        bail!("server stream version is {:?}, need 1.0", hdr.attr("version"));
    }
    let features = expect_element(&mut xml).await?;
    if features.name != "features" {
        bail!("expected <stream:features>, got <{}>", features.name);
    }
    Ok((xml, features))
}

/// Wait for the IQ response with `id`, ignoring anything else the server sends.
async fn await_iq(xml: &mut XmlReader<Io>, id: &str) -> Result<Element> {
    loop {
        let el = expect_element(xml).await?;
        if el.name == "iq" && el.attr("id") == Some(id) {
            return Ok(el);
        }
    }
}

/// The phases a connection goes through; used to label timeouts and errors.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Connect,
    Tls,
    Stream,
    Register,
    Sasl,
    Bind,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Connect => "tcp connect",
            Phase::Tls => "tls",
            Phase::Stream => "stream",
            Phase::Register => "register",
            Phase::Sasl => "sasl",
            Phase::Bind => "bind",
        }
    }
}

/// Connect and secure the transport; returns the XML reader positioned after the
/// (post-TLS) stream features.
async fn connect_secure(
    opts: &ClientOpts,
    addr: SocketAddr,
    phase: &mut Phase,
    t: &mut LoginTimings,
    start: Instant,
) -> Result<(XmlReader<Io>, Element)> {
    *phase = Phase::Connect;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    t.tcp = start.elapsed();
    let sni = crate::tls::server_name(&opts.domain)?;
    if opts.tls == TlsMode::Direct {
        *phase = Phase::Tls;
        let tls = opts.connector.connect(sni, tcp).await?;
        t.tls = start.elapsed();
        *phase = Phase::Stream;
        return open_stream(BufReader::new(Transport::Tls(Box::new(tls))), &opts.domain).await;
    }
    *phase = Phase::Stream;
    let (mut xml, features) = open_stream(BufReader::new(Transport::Plain(tcp)), &opts.domain).await?;
    if opts.tls == TlsMode::None {
        t.tls = start.elapsed();
        return Ok((xml, features));
    }
    *phase = Phase::Tls;
    if features.child_ns("starttls", NS_TLS).is_none() {
        bail!("server does not offer STARTTLS");
    }
    send(xml.get_mut(), "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
    let answer = expect_element(&mut xml).await?;
    if answer.name != "proceed" {
        bail!("STARTTLS refused: <{}>", answer.name);
    }
    let io = xml.into_inner();
    if !io.buffer().is_empty() {
        bail!("server sent data after <proceed/> before the TLS handshake");
    }
    let Transport::Plain(tcp) = io.into_inner() else {
        unreachable!("STARTTLS on an already encrypted transport")
    };
    let tls = opts.connector.connect(sni, tcp).await?;
    t.tls = start.elapsed();
    *phase = Phase::Stream;
    open_stream(BufReader::new(Transport::Tls(Box::new(tls))), &opts.domain).await
}

/// Run the SASL exchange with rsasl.
async fn authenticate(opts: &ClientOpts, xml: &mut XmlReader<Io>, features: &Element, user: &str) -> Result<()> {
    let offered: Vec<String> = features
        .child_ns("mechanisms", NS_SASL)
        .map(|m| {
            m.children
                .iter()
                .filter(|c| c.name == "mechanism")
                .map(|c| c.text.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut session = sasl::start(&opts.mechanism, &offered, user, &opts.password, opts.scram.clone())?;
    let mut out = Vec::with_capacity(256);
    let mut state = session.step64(None, &mut out)?;
    let initial = if out.is_empty() {
        "=".to_owned()
    } else {
        String::from_utf8(out.clone())?
    };
    send(
        xml.get_mut(),
        &format!(
            "<auth xmlns='{NS_SASL}' mechanism='{}'>{initial}</auth>",
            escape(&opts.mechanism)
        ),
    )
    .await?;
    loop {
        let el = expect_element(xml).await?;
        match el.name.as_str() {
            "challenge" => {
                out.clear();
                state = session.step64(Some(el.text.trim().as_bytes()), &mut out)?;
                let resp = std::str::from_utf8(&out)?;
                send(xml.get_mut(), &format!("<response xmlns='{NS_SASL}'>{resp}</response>")).await?;
            }
            "success" => {
                let data = el.text.trim();
                if !data.is_empty() && data != "=" {
                    out.clear();
                    // For SCRAM this verifies the server signature (mutual auth).
                    state = session.step64(Some(data.as_bytes()), &mut out)?;
                }
                if state == State::Running {
                    bail!("server reported success before the SASL exchange finished");
                }
                return Ok(());
            }
            "failure" => bail!("sasl failure: {}", el.describe_error()),
            other => bail!("unexpected <{other}> during SASL"),
        }
    }
}

/// After SASL: restart, bind, optional session, initial presence.
async fn bind(opts: &ClientOpts, xml: XmlReader<Io>, resource: &str) -> Result<(XmlReader<Io>, String)> {
    let (mut xml, features) = open_stream(xml.into_inner(), &opts.domain).await?;
    if features.child_ns("bind", NS_BIND).is_none() {
        bail!("server does not offer resource binding");
    }
    send(
        xml.get_mut(),
        &format!(
            "<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>{}</resource></bind></iq>",
            escape(resource)
        ),
    )
    .await?;
    let res = await_iq(&mut xml, "bind1").await?;
    if res.attr("type") != Some("result") {
        bail!("bind failed: {}", res.describe_error());
    }
    let jid = res
        .child("bind")
        .and_then(|b| b.child("jid"))
        .map(|j| j.text.trim().to_owned())
        .ok_or_else(|| anyhow!("bind result without <jid>"))?;
    // RFC 3921 session establishment, only when the server says it is not optional
    // (RFC 6121 servers either omit it or mark it <optional/>).
    if let Some(s) = features.child_ns("session", NS_SESSION) {
        if s.child("optional").is_none() {
            send(
                xml.get_mut(),
                &format!("<iq type='set' id='sess1'><session xmlns='{NS_SESSION}'/></iq>"),
            )
            .await?;
            let res = await_iq(&mut xml, "sess1").await?;
            if res.attr("type") != Some("result") {
                bail!("session failed: {}", res.describe_error());
            }
        }
    }
    send(xml.get_mut(), "<presence/>").await?;
    Ok((xml, jid))
}

/// Full login; the whole attempt is bounded by `opts.op_timeout`.
pub async fn login(opts: &ClientOpts, user: &str, resource: &str) -> Result<Session> {
    login_at(opts, opts.addr_for(user), user, resource).await
}

/// [`login`] at an explicit server address (e.g. one named by `<see-other-host/>`,
/// which then surfaces as a [`StreamError`] from the bind phase).
pub async fn login_at(opts: &ClientOpts, addr: SocketAddr, user: &str, resource: &str) -> Result<Session> {
    let mut phase = Phase::Connect;
    let mut t = LoginTimings::default();
    let start = Instant::now();
    let fut = async {
        let (mut xml, features) = connect_secure(opts, addr, &mut phase, &mut t, start).await?;
        phase = Phase::Sasl;
        authenticate(opts, &mut xml, &features, user).await?;
        t.auth = start.elapsed();
        phase = Phase::Bind;
        let (xml, jid) = bind(opts, xml, resource).await?;
        t.bind = start.elapsed();
        t.total = t.bind;
        Ok::<_, anyhow::Error>((xml, jid))
    };
    let res = tokio::time::timeout(opts.attempt_timeout(), fut).await;
    let (xml, jid) = match res {
        Err(_) => bail!("{}: timeout", phase.label()),
        Ok(Err(e)) => return Err(e.context(phase.label())),
        Ok(Ok(v)) => v,
    };
    let (r, w) = tokio::io::split(xml.into_inner());
    Ok(Session {
        jid,
        reader: XmlReader::new(BufReader::new(r)),
        writer: w,
        timings: t,
    })
}

/// Outcome of an XEP-0077 in-band registration attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    Created,
    AlreadyExists,
}

/// XEP-0077 in-band registration of `user` (before authentication).
pub async fn register(opts: &ClientOpts, user: &str) -> Result<Registered> {
    let mut phase = Phase::Connect;
    let mut t = LoginTimings::default();
    let fut = async {
        let (mut xml, features) = connect_secure(opts, opts.addr_for(user), &mut phase, &mut t, Instant::now()).await?;
        phase = Phase::Register;
        if features.child_ns("register", NS_REGISTER_FEATURE).is_none() {
            bail!("server does not advertise in-band registration (XEP-0077)");
        }
        send(
            xml.get_mut(),
            &format!(
                "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>\
                 <username>{}</username><password>{}</password></query></iq>",
                escape(user),
                escape(&opts.password)
            ),
        )
        .await?;
        let res = await_iq(&mut xml, "reg1").await?;
        let outcome = match res.attr("type") {
            Some("result") => Registered::Created,
            _ if res.child("error").is_some_and(|e| e.child("conflict").is_some()) => Registered::AlreadyExists,
            _ => bail!("registration refused: {}", res.describe_error()),
        };
        let _ = send(xml.get_mut(), "</stream:stream>").await;
        Ok(outcome)
    };
    match tokio::time::timeout(opts.attempt_timeout(), fut).await {
        Err(_) => bail!("{}: timeout", phase.label()),
        Ok(r) => r.with_context(|| phase.label()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stream_errors_keep_condition_and_address() {
        let data = b"<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>\
            127.0.0.3:16222</see-other-host><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>home</text>\
            </stream:error>";
        let el = XmlReader::new(&data[..]).next_element().await.unwrap().unwrap();
        let err: anyhow::Error = StreamError::from_element(&el).into();
        let err = err.context("bind");
        let se = StreamError::find(&err).unwrap();
        assert_eq!(
            (se.condition.as_str(), se.content.as_str()),
            ("see-other-host", "127.0.0.3:16222")
        );
        assert_eq!(format!("{err:#}"), "bind: stream error: see-other-host (home)");
    }
}
