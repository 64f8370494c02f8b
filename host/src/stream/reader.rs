//! Incremental XML framing of an XMPP stream: bytes in, one event per stream header,
//! top-level stanza or stream end out.
//!
//! Hard limits are enforced while parsing, never after: stanza bytes (through
//! [`LimitedBufRead`]), the memory of the tree built from them ([`TreeBudget`]), nesting
//! depth and attribute count. RFC 6120 §11.1 forbids comments, processing instructions, DTDs
//! and non-predefined entities; quick-xml never expands entities, and we refuse the events
//! that would carry them, so billion-laughs documents cannot even start.
//!
//! quick-xml frames the bytes; well-formedness beyond framing is checked here, because
//! quick-xml does not (RFC 6120 §11: what is not well-formed or not namespace-well-formed
//! gets `<not-well-formed/>`): names must be QNames of NCNames, text and attribute values
//! (raw or as character references) XML `Char`s, prefixes bound, the reserved prefixes and
//! namespaces (`xml`, `xmlns`) used only as Namespaces in XML allows, and no attribute given
//! twice under one expanded name. Only UTF-8 is accepted (RFC 6120 §11.6).

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use tokio::io::AsyncBufRead;

use super::error::{StreamError, StreamErrorCondition};
use super::limited::{LimitedBufRead, OverBudget};
use super::tree_budget::TreeBudget;
use crate::xml::{first_non_char, is_xml_char, split_qname, Attr, Element, Node, Ns, NS_XML, NS_XMLNS};

/// Parser limits, from `[limits]` in the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_attributes: usize,
    /// Memory one stanza's tree may take ([`TreeBudget`]); `stanza_memory_factor` times
    /// `max_stanza_bytes` from the config.
    pub max_tree_bytes: usize,
}

/// The default `stanza_memory_factor`: a stanza's tree may cost 8 times its byte limit.
pub const DEFAULT_MEMORY_FACTOR: usize = 8;

impl Limits {
    /// Set `max_tree_bytes` to `factor` times `max_stanza_bytes`.
    pub fn with_memory_factor(mut self, factor: usize) -> Self {
        self.max_tree_bytes = self.max_stanza_bytes.saturating_mul(factor);
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 48,
            max_attributes: 64,
            max_tree_bytes: DEFAULT_MEMORY_FACTOR * 256 * 1024,
        }
    }
}

/// The attributes of a received `<stream:stream>` opening tag.
#[derive(Debug, Clone, Default)]
pub struct StreamHeader {
    pub name: String,
    pub ns: String,
    /// The stream's default (content) namespace, e.g. `jabber:client`.
    pub default_ns: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug)]
pub enum StreamEvent {
    Header(StreamHeader),
    Stanza(Element),
    /// Whitespace between stanzas: a keepalive (RFC 6120 §4.6.1).
    Whitespace,
    /// `</stream:stream>` from the peer.
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

fn violation(condition: StreamErrorCondition, text: &str) -> ReadError {
    ReadError::Stream(StreamError::new(condition, text))
}

fn not_well_formed(text: &str) -> ReadError {
    violation(StreamErrorCondition::NotWellFormed, text)
}

fn too_big() -> ReadError {
    violation(StreamErrorCondition::PolicyViolation, "stanza needs too much memory")
}

/// The namespace declarations of one open element: prefix (`None`: the default) and URI.
type Scope = Vec<(Option<Box<str>>, Ns)>;

pub struct XmlStreamReader<R> {
    reader: Reader<LimitedBufRead<R>>,
    buf: Vec<u8>,
    /// Elements opened below the stream root and not yet closed.
    open: Vec<Element>,
    /// Namespace declarations, one scope per open element including the root.
    scopes: Vec<Scope>,
    /// What the stanza being parsed costs in memory so far.
    budget: TreeBudget,
    limits: Limits,
}

impl<T: tokio::io::AsyncRead> XmlStreamReader<tokio::io::BufReader<T>> {
    /// Bytes read from the transport that the parser has not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        self.reader.get_ref().get_ref().buffer()
    }
}

impl<R: AsyncBufRead + Unpin> XmlStreamReader<R> {
    pub fn new(inner: R, limits: Limits) -> Self {
        let limited = LimitedBufRead::new(inner, limits.max_stanza_bytes);
        Self::from_limited(limited, limits)
    }

    fn from_limited(mut limited: LimitedBufRead<R>, limits: Limits) -> Self {
        limited.reset_budget();
        let mut reader = Reader::from_reader(limited);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;
        XmlStreamReader {
            reader,
            buf: Vec::with_capacity(256),
            open: Vec::new(),
            scopes: Vec::new(),
            budget: TreeBudget::new(limits.max_tree_bytes),
            limits,
        }
    }

    /// A new parser over the same bytes, for the stream restarts after STARTTLS and SASL.
    pub fn restart(self) -> Self {
        let limits = self.limits;
        Self::from_limited(self.reader.into_inner(), limits)
    }

    /// The transport under the parser (bytes the parser has not consumed stay buffered in it).
    pub fn into_inner(self) -> R {
        self.reader.into_inner().into_inner()
    }

    /// Switch limits, e.g. to the larger authenticated stanza size after SASL.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        self.reader.get_mut().set_limit(limits.max_stanza_bytes);
        self.budget.set_max(limits.max_tree_bytes);
    }

    /// A counter of bytes consumed, readable while `next()` is pending.
    pub fn activity(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.reader.get_ref().activity()
    }

    /// Read until the next complete event.
    pub async fn next(&mut self) -> Result<StreamEvent, ReadError> {
        loop {
            self.buf.clear();
            let event = match self.reader.read_event_into_async(&mut self.buf).await {
                Ok(ev) => ev.into_owned(),
                Err(e) => return Err(map_xml_error(e)),
            };
            if let Some(out) = self.handle(event)? {
                match &out {
                    StreamEvent::Stanza(e) => super::trace::received(e),
                    StreamEvent::Header(h) => {
                        super::trace::received_header(h.to.as_deref(), h.from.as_deref(), h.version.as_deref())
                    }
                    _ => {}
                }
                if matches!(out, StreamEvent::Stanza(_) | StreamEvent::Header(_)) {
                    self.reader.get_mut().reset_budget();
                    self.budget.reset();
                }
                if self.buf.capacity() > 4096 {
                    // A big stanza went by; do not keep its buffer for an idle connection.
                    self.buf = Vec::with_capacity(256);
                }
                return Ok(out);
            }
        }
    }

    fn handle(&mut self, event: Event<'static>) -> Result<Option<StreamEvent>, ReadError> {
        match event {
            Event::Decl(decl) => {
                if !self.scopes.is_empty() {
                    return Err(not_well_formed("XML declaration inside the stream"));
                }
                match decl.encoding() {
                    None => Ok(None),
                    Some(Ok(enc)) if enc.eq_ignore_ascii_case(b"UTF-8") => Ok(None),
                    Some(Ok(_)) => Err(violation(
                        StreamErrorCondition::UnsupportedEncoding,
                        "only UTF-8 is supported",
                    )),
                    Some(Err(_)) => Err(not_well_formed("malformed XML declaration")),
                }
            }
            Event::Start(start) => self.on_start(start, false),
            Event::Empty(start) => self.on_start(start, true),
            Event::End(_) => self.on_end(),
            Event::Text(text) => {
                if text.windows(3).any(|w| w == b"]]>") {
                    return Err(not_well_formed("]]> in character data"));
                }
                let s = text
                    .decode()
                    .map_err(|_| violation(StreamErrorCondition::NotWellFormed, "bad encoding"))?;
                self.on_text(&s)
            }
            Event::CData(data) => {
                let s = data
                    .decode()
                    .map_err(|_| violation(StreamErrorCondition::NotWellFormed, "bad encoding"))?;
                self.on_text(&s)
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .ok()
                        .flatten()
                        .filter(|&c| is_xml_char(c))
                        .ok_or_else(|| violation(StreamErrorCondition::NotWellFormed, "bad character reference"))?
                } else {
                    match &*r {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"apos" => '\'',
                        b"quot" => '"',
                        _ => {
                            return Err(violation(
                                StreamErrorCondition::RestrictedXml,
                                "entity references are not allowed",
                            ))
                        }
                    }
                };
                self.on_text(ch.encode_utf8(&mut [0; 4]))
            }
            Event::Comment(_) => Err(violation(
                StreamErrorCondition::RestrictedXml,
                "comments are not allowed",
            )),
            Event::PI(_) => Err(violation(
                StreamErrorCondition::RestrictedXml,
                "processing instructions are not allowed",
            )),
            Event::DocType(_) => Err(violation(StreamErrorCondition::RestrictedXml, "DTDs are not allowed")),
            Event::Eof => Err(ReadError::Closed),
        }
    }

    fn on_text(&mut self, s: &str) -> Result<Option<StreamEvent>, ReadError> {
        if first_non_char(s).is_some() {
            return Err(not_well_formed("a character XML does not allow"));
        }
        match self.open.last_mut() {
            Some(_) if s.is_empty() => Ok(None),
            Some(parent) => {
                if let Some(Node::Text(prev)) = parent.children.last_mut() {
                    self.budget.text(s.len(), false).map_err(|_| too_big())?;
                    prev.push_str(s);
                } else {
                    self.budget.text(s.len(), true).map_err(|_| too_big())?;
                    parent.children.push(Node::Text(s.to_string()));
                }
                Ok(None)
            }
            None if s.trim().is_empty() => Ok(Some(StreamEvent::Whitespace)),
            None if self.scopes.is_empty() => Err(violation(
                StreamErrorCondition::NotWellFormed,
                "text before the stream header",
            )),
            None => Err(violation(StreamErrorCondition::BadFormat, "text at stream level")),
        }
    }

    fn on_start(&mut self, start: BytesStart<'static>, empty: bool) -> Result<Option<StreamEvent>, ReadError> {
        if self.scopes.len() >= self.limits.max_depth {
            return Err(violation(StreamErrorCondition::PolicyViolation, "nesting too deep"));
        }
        let qname = std::str::from_utf8(start.name().into_inner()).map_err(|_| not_well_formed("bad encoding"))?;
        let (prefix, local) = split_qname(qname).ok_or_else(|| not_well_formed("element name is not an XML name"))?;
        if matches!(prefix, Some("xml" | "xmlns")) {
            return Err(not_well_formed("element in a reserved prefix"));
        }
        let mut scope: Scope = Vec::new();
        // (prefix, local name, value) of the attributes that are not declarations.
        let mut written: Vec<(Option<&str>, &str, String)> = Vec::new();
        for (count, attr) in start.attributes().with_checks(true).enumerate() {
            if count >= self.limits.max_attributes {
                return Err(violation(StreamErrorCondition::PolicyViolation, "too many attributes"));
            }
            let attr = attr.map_err(|_| not_well_formed("malformed attribute"))?;
            let key = std::str::from_utf8(attr.key.into_inner()).map_err(|_| not_well_formed("bad encoding"))?;
            let (p, l) = split_qname(key).ok_or_else(|| not_well_formed("attribute name is not an XML name"))?;
            if attr.value.contains(&b'<') {
                return Err(not_well_formed("'<' in an attribute value"));
            }
            let value = attr
                .unescape_value()
                .map_err(|_| not_well_formed("bad attribute value"))?
                .into_owned();
            if first_non_char(&value).is_some() {
                return Err(not_well_formed("a character XML does not allow in an attribute value"));
            }
            match (p, l) {
                (None, "xmlns") => {
                    let ns = self.declare(None, value)?;
                    scope.push((None, ns));
                }
                (Some("xmlns"), declared) => {
                    let ns = self.declare(Some(declared), value)?;
                    scope.push((Some(declared.into()), ns));
                }
                _ => written.push((p, l, value)),
            }
        }
        self.scopes.push(scope);
        let ns = self.resolve(prefix)?;
        let mut attrs: Vec<Attr> = Vec::with_capacity(written.len());
        for (p, l, value) in written {
            let ns = match p {
                None => None,
                Some(p) => Some(self.resolve(Some(p))?),
            };
            // Namespaces in XML §6.3: one expanded name once, whatever the prefixes.
            if ns.is_some() && attrs.iter().any(|a| a.name == l && a.ns == ns) {
                return Err(not_well_formed("one attribute given twice"));
            }
            attrs.push(Attr {
                ns,
                name: l.to_string(),
                value,
            });
        }
        let element = Element {
            name: local.to_string(),
            ns,
            attrs,
            children: Vec::new(),
        };
        if self.scopes.len() == 1 {
            // The stream root.
            let header = StreamHeader {
                default_ns: self
                    .resolve(None)
                    .ok()
                    .filter(|ns| !ns.is_empty())
                    .map(|ns| ns.to_string()),
                to: element.get_attr("to").map(str::to_string),
                from: element.get_attr("from").map(str::to_string),
                version: element.get_attr("version").map(str::to_string),
                ns: element.ns.to_string(),
                name: element.name,
            };
            if empty {
                return Err(violation(StreamErrorCondition::BadFormat, "empty stream element"));
            }
            return Ok(Some(StreamEvent::Header(header)));
        }
        // A top-level stanza is written as a child of a `jabber:client` stream.
        let parent_ns = self.open.last().map_or(crate::xml::NS_CLIENT, |p| &*p.ns);
        self.budget.element(&element, parent_ns).map_err(|_| too_big())?;
        if empty {
            self.scopes.pop();
            Ok(self.complete(element))
        } else {
            self.open.push(element);
            Ok(None)
        }
    }

    /// Check one namespace declaration (Namespaces in XML §3) and give the namespace to
    /// bind, sharing the string already bound to that prefix when it is the same.
    fn declare(&mut self, prefix: Option<&str>, uri: String) -> Result<Ns, ReadError> {
        match prefix {
            Some("xmlns") => return Err(not_well_formed("the xmlns prefix cannot be declared")),
            Some("xml") if uri != NS_XML => return Err(not_well_formed("the xml prefix cannot be rebound")),
            Some("xml") => return Ok(Ns::new(NS_XML)),
            Some(_) if uri.is_empty() => return Err(not_well_formed("a prefix cannot be bound to no namespace")),
            _ if uri == NS_XML || uri == NS_XMLNS => {
                return Err(not_well_formed("a reserved namespace cannot be bound"));
            }
            _ => {}
        }
        if let Ok(current) = self.resolve(prefix) {
            if current == uri {
                return Ok(current);
            }
        }
        self.budget.namespace(uri.len()).map_err(|_| too_big())?;
        Ok(Ns::from(uri))
    }

    fn on_end(&mut self) -> Result<Option<StreamEvent>, ReadError> {
        self.scopes.pop();
        match self.open.pop() {
            Some(element) => Ok(self.complete(element)),
            None => Ok(Some(StreamEvent::End)),
        }
    }

    /// Attach a closed element to its parent, or hand it out if it is a top-level stanza.
    fn complete(&mut self, element: Element) -> Option<StreamEvent> {
        match self.open.last_mut() {
            Some(parent) => {
                parent.children.push(Node::Element(element));
                None
            }
            None => Some(StreamEvent::Stanza(element)),
        }
    }

    fn resolve(&self, prefix: Option<&str>) -> Result<Ns, ReadError> {
        if prefix == Some("xml") {
            return Ok(Ns::new(NS_XML));
        }
        for scope in self.scopes.iter().rev() {
            if let Some((_, ns)) = scope.iter().find(|(p, _)| p.as_deref() == prefix) {
                return Ok(ns.clone());
            }
        }
        match prefix {
            None => Ok(Ns::default()),
            Some(_) => Err(not_well_formed("undeclared namespace prefix")),
        }
    }
}

/// Parse one stanza we stored ourselves (offline messages, subscription requests, pool
/// frames) or a plugin produced, with the same parser and rules as the wire, so there is
/// exactly one XML reader in the server and nothing unchecked is emitted: what was stored
/// before a rule existed fails here and is dropped by the caller.
pub async fn parse_stored(xml: &str) -> Option<Element> {
    parse_document(xml, Limits::default()).await
}

/// Attributes the server may add to a stanza it accepted: the `from` it stamps, and the
/// `xmlns` its serializer writes where a namespace differs from the parent's.
pub const SERVER_ADDED_ATTRIBUTES: usize = 2;

impl Limits {
    /// Limits for reading back what was accepted under `self` and then stamped and
    /// serialized by us (offline storage, a peer node's forward): the same depth, and room
    /// for [`SERVER_ADDED_ATTRIBUTES`] and for one `xmlns:nsN` declaration per namespaced
    /// attribute, which the serializer writes on the element that uses it (the size limit
    /// is the stored text's own length). So a stanza accepted on the wire is always
    /// readable again.
    pub fn for_stored(self) -> Limits {
        Limits {
            max_attributes: 2 * self.max_attributes + SERVER_ADDED_ATTRIBUTES,
            ..self
        }
    }
}

/// Parse a stanza that was accepted under the wire limits `wire` and then stored or
/// forwarded by us, under [`Limits::for_stored`].
pub async fn parse_stored_under(xml: &str, wire: Limits) -> Option<Element> {
    parse_document(xml, wire.for_stored()).await
}

/// The stream root stored stanzas are read under.
const STORED_ROOT: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Parse one stanza under `limits`, its size limit being its own length.
async fn parse_document(xml: &str, limits: Limits) -> Option<Element> {
    let doc = format!("{STORED_ROOT}{xml}");
    let limits = Limits {
        max_stanza_bytes: doc.len() + 1,
        max_tree_bytes: limits
            .max_tree_bytes
            .max(doc.len().saturating_mul(DEFAULT_MEMORY_FACTOR)),
        ..limits
    };
    let mut reader = XmlStreamReader::new(doc.as_bytes(), limits);
    match reader.next().await {
        Ok(StreamEvent::Header(_)) => {}
        _ => return None,
    }
    match reader.next().await {
        Ok(StreamEvent::Stanza(e)) => Some(e),
        _ => None,
    }
}

fn map_xml_error(e: quick_xml::Error) -> ReadError {
    match e {
        quick_xml::Error::Io(io) => {
            if io.get_ref().is_some_and(|inner| inner.is::<OverBudget>()) {
                violation(StreamErrorCondition::PolicyViolation, "stanza too large")
            } else if io.kind() == std::io::ErrorKind::UnexpectedEof {
                ReadError::Closed
            } else {
                ReadError::Io(std::io::Error::new(io.kind(), io.to_string()))
            }
        }
        quick_xml::Error::Encoding(_) => violation(StreamErrorCondition::NotWellFormed, "bad encoding"),
        _ => violation(StreamErrorCondition::NotWellFormed, "malformed XML"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn events(input: &str, limits: Limits) -> Vec<Result<String, String>> {
        let mut r = XmlStreamReader::new(input.as_bytes(), limits);
        let mut out = Vec::new();
        loop {
            match r.next().await {
                Ok(StreamEvent::Header(h)) => out.push(Ok(format!("header {} {:?}", h.ns, h.default_ns))),
                Ok(StreamEvent::Stanza(e)) => out.push(Ok(e.to_stream_xml())),
                Ok(StreamEvent::Whitespace) => {}
                Ok(StreamEvent::End) => out.push(Ok("end".into())),
                Err(ReadError::Closed) => break,
                Err(ReadError::Stream(e)) => {
                    out.push(Err(e.condition.to_string()));
                    break;
                }
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    const HEAD: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    #[tokio::test]
    async fn frames_stanzas_and_resolves_namespaces() {
        let input = format!(
            "{HEAD} <message to='a@b'><body>x &amp; &#65;</body><p:x xmlns:p='urn:p'/></message></stream:stream>"
        );
        let ev = events(&input, Limits::default()).await;
        assert_eq!(
            ev[0],
            Ok("header http://etherx.jabber.org/streams Some(\"jabber:client\")".into())
        );
        assert_eq!(
            ev[1],
            Ok("<message to='a@b'><body>x &amp; A</body><x xmlns='urn:p'/></message>".into())
        );
        assert_eq!(ev[2], Ok("end".into()));
    }

    #[tokio::test]
    async fn refuses_dtd_and_entities() {
        let input = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>]><stream:stream/>";
        assert_eq!(
            events(input, Limits::default()).await,
            vec![Err("restricted-xml".into())]
        );
        let input = format!("{HEAD}<message><body>&lol;</body></message>");
        assert_eq!(events(&input, Limits::default()).await[1], Err("restricted-xml".into()));
    }

    #[tokio::test]
    async fn enforces_size_depth_and_wellformedness() {
        let limits = Limits {
            max_stanza_bytes: 1000,
            ..Limits::default()
        };
        let big = format!("{HEAD}<message><body>{}</body></message>", "a".repeat(5000));
        assert_eq!(events(&big, limits).await[1], Err("policy-violation".into()));
        let deep = format!("{HEAD}{}", "<a>".repeat(100));
        assert_eq!(
            events(&deep, Limits::default()).await[1],
            Err("policy-violation".into())
        );
        let bad = format!("{HEAD}<message><body></message>");
        assert_eq!(events(&bad, Limits::default()).await[1], Err("not-well-formed".into()));
    }

    #[tokio::test]
    async fn refuses_what_is_not_namespace_well_formed() {
        for bad in [
            "<message><body evil:x='1'/></message>",
            "<message Xml:lang='en'/>",
            "<message>\u{1}</message>",
            "<message>\u{FFFE}</message>",
            "<message>&#1;</message>",
            "<message>&#xFFFE;</message>",
            "<message id='&#xC;'/>",
            "<message id='\u{0}'/>",
            "<message xmlns:xml='urn:x'/>",
            "<message xmlns:xmlns='urn:x'/>",
            "<message xmlns:p='http://www.w3.org/2000/xmlns/'/>",
            "<message xmlns:p='http://www.w3.org/XML/1998/namespace'/>",
            "<message><x xmlns='http://www.w3.org/XML/1998/namespace'/></message>",
            "<message xmlns:p=''/>",
            "<message><xml:x/></message>",
            "<message><xmlns:x/></message>",
            "<message><bo=dy/></message>",
            "<message><1body/></message>",
            "<message><a:b:c xmlns:a='u'/></message>",
            "<message><:x/></message>",
            "<message xmlns:a='urn:s' xmlns:b='urn:s' a:x='1' b:x='2'/>",
            "<message id='<'/>",
            "<message>]]></message>",
            "<message><p:x/></message>",
            "<?xml version='1.0'?><message/>",
        ] {
            let input = format!("{HEAD}{bad}");
            assert_eq!(
                events(&input, Limits::default()).await[1],
                Err("not-well-formed".into()),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn accepts_what_namespaces_allow() {
        let input = format!(
            "{HEAD}<message xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en' xmlns:a='urn:a' a:x='1' x='2'>\
             <a:b a:y='&#x10FFFF;'>\t\r\n</a:b></message>"
        );
        assert_eq!(
            events(&input, Limits::default()).await[1],
            Ok("<message xml:lang='en' xmlns:ns1='urn:a' ns1:x='1' x='2'><b xmlns='urn:a' xmlns:ns1='urn:a' ns1:y='\u{10FFFF}'>\t&#xD;\n</b></message>".into())
        );
    }

    #[tokio::test]
    async fn only_utf8() {
        for enc in ["UTF-16", "ISO-8859-1"] {
            let input = format!("<?xml version='1.0' encoding='{enc}'?>{}", &HEAD[21..]);
            assert_eq!(
                events(&input, Limits::default()).await,
                vec![Err("unsupported-encoding".into())]
            );
        }
        let input = format!("<?xml version='1.0' encoding='utf-8'?>{}", &HEAD[21..]);
        assert!(events(&input, Limits::default()).await[0].is_ok());
    }

    #[tokio::test]
    async fn an_inherited_namespace_is_shared_and_the_tree_is_budgeted() {
        let ns = "n".repeat(64 * 1024);
        let input = format!("{HEAD}<message><x xmlns='{ns}'>{}</x></message>", "<a/>".repeat(1000));
        let mut r = XmlStreamReader::new(input.as_bytes(), Limits::default());
        assert!(matches!(r.next().await, Ok(StreamEvent::Header(_))));
        let Ok(StreamEvent::Stanza(m)) = r.next().await else {
            panic!()
        };
        let x = m.elements().next().unwrap();
        assert!(x.elements().all(|a| a.ns.ptr_eq(&x.ns)));

        let limits = Limits {
            max_stanza_bytes: 100_000,
            ..Limits::default()
        }
        .with_memory_factor(8);
        let input = format!("{HEAD}<message>{}</message>", "<a/>".repeat(20_000));
        assert_eq!(events(&input, limits).await[1], Err("policy-violation".into()));
    }
}
