//! A small owned XML element tree, the same shape as the host's.
//!
//! Stanzas cross the plugin boundary as serialized XML. Plugins need to look inside them
//! (an IQ's payload, a message body) and build replies, so the SDK ships one tiny DOM
//! instead of making every plugin pick a parser. Namespaces are resolved when parsing, so
//! code compares `(name, ns)` pairs and never cares which prefix a client chose; this is
//! the model the host uses too, which keeps round trips lossless.
//!
//! What a parsed tree costs is bounded by a small multiple of the input: every element
//! shares the [`Namespace`] string in force instead of copying it, so an element declaring a
//! long default namespace over thousands of empty children costs one copy, not thousands.
//! The parser also refuses what a strict namespace-aware parser refuses where that is cheap:
//! unbound prefixes, reserved-prefix declarations, one attribute given twice through two
//! prefixes, names that are not XML names and characters outside XML 1.0's `Char`.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Namespace of client stanzas (RFC 6120 §4.8.3): what the host's stanzas are in.
pub const NS_CLIENT: &str = "jabber:client";
/// The namespace the `xml:` prefix is bound to by definition.
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// Deeper documents are refused: the tree is recursive and plugin stacks are small.
const MAX_DEPTH: usize = 128;

/// A namespace URI, shared between the elements it applies to (cloning is a reference
/// count, not a copy). Reads like a `&str`: `ns == "vcard-temp"`, `ns.as_str()`, `&*ns`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Namespace(Arc<str>);

impl Namespace {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether two values share one allocation (what the parser arranges for inherited
    /// namespaces).
    pub fn shares(&self, other: &Namespace) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for Namespace {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Namespace {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Namespace {
    fn from(s: &str) -> Self {
        Namespace(Arc::from(s))
    }
}

impl From<String> for Namespace {
    fn from(s: String) -> Self {
        Namespace(Arc::from(s))
    }
}

impl From<&String> for Namespace {
    fn from(s: &String) -> Self {
        Namespace(Arc::from(s.as_str()))
    }
}

impl From<Namespace> for String {
    fn from(ns: Namespace) -> Self {
        ns.0.to_string()
    }
}

impl PartialEq<str> for Namespace {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Namespace {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Namespace {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Namespace> for str {
    fn eq(&self, other: &Namespace) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Namespace> for &str {
    fn eq(&self, other: &Namespace) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Namespace> for String {
    fn eq(&self, other: &Namespace) -> bool {
        **self == *other.0
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A child of an element: another element or a run of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An element with its namespace resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name, without prefix.
    pub name: String,
    /// Namespace URI (empty for none), shared with the elements that inherit it.
    pub ns: Namespace,
    /// Attributes in document order, names as written (`xml:lang`); the default namespace
    /// declaration is not among them (it is `ns`).
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

/// Why some text is not an element the SDK can work with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError(pub String);

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid XML: {}", self.0)
    }
}

impl std::error::Error for XmlError {}

fn err(message: impl Into<String>) -> XmlError {
    XmlError(message.into())
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Self {
        Element {
            name: name.to_string(),
            ns: Namespace::from(ns),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: set an attribute.
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: append a child element.
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: append text.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Whether this is `<name xmlns='ns'>`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && *self.ns == *ns
    }

    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Set an attribute, replacing any previous value.
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name.to_string(), value)),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(pos).1)
    }

    /// Child elements, skipping text.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child `<name xmlns='ns'>`.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// Append a child element in place.
    pub fn push(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// The concatenated direct text of this element (not of its descendants).
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }

    /// Parse one element. The root's namespace must be declared (or is empty).
    pub fn parse(xml: &str) -> Result<Element, XmlError> {
        Element::parse_in(xml, "")
    }

    /// Parse one element as if it appeared inside an element whose default namespace is
    /// `default_ns`. Stanzas from the host are written as children of a `jabber:client`
    /// stream, so [`crate::Stanza::element`] parses them with [`NS_CLIENT`].
    pub fn parse_in(xml: &str, default_ns: &str) -> Result<Element, XmlError> {
        let mut reader = Reader::from_str(xml);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;
        let mut parser = Parser {
            scopes: vec![vec![(None, Namespace::from(default_ns))]],
            open: Vec::new(),
            done: None,
        };
        loop {
            let event = reader.read_event().map_err(|e| err(e.to_string()))?;
            match event {
                Event::Eof => break,
                Event::Start(start) => parser.start(&start, false)?,
                Event::Empty(start) => parser.start(&start, true)?,
                Event::End(_) => parser.end(),
                Event::Text(t) => parser.text(&t.decode().map_err(|e| err(e.to_string()))?)?,
                Event::CData(t) => parser.text(&t.decode().map_err(|e| err(e.to_string()))?)?,
                Event::GeneralRef(r) => {
                    let c = if r.is_char_ref() {
                        r.resolve_char_ref().map_err(|e| err(e.to_string()))?
                    } else {
                        match &*r {
                            b"amp" => Some('&'),
                            b"lt" => Some('<'),
                            b"gt" => Some('>'),
                            b"apos" => Some('\''),
                            b"quot" => Some('"'),
                            _ => None,
                        }
                    };
                    let c = c.ok_or_else(|| err("unknown entity reference"))?;
                    // `&#1;` is no more a character of XML 1.0 than a raw U+0001.
                    if !is_xml_char(c) {
                        return Err(err(format!("character reference to U+{:04X}", c as u32)));
                    }
                    parser.text(c.encode_utf8(&mut [0; 4]))?;
                }
                // XMPP forbids these (RFC 6120 §11.1); refuse rather than guess.
                Event::DocType(_) => return Err(err("DTDs are not allowed")),
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            }
        }
        parser.done.ok_or_else(|| err("no complete element"))
    }

    /// Serialize with the root's namespace declared, e.g. for storage.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_to(&mut out, "");
        out
    }

    /// Serialize as a top-level stanza of a `jabber:client` stream (what the host's
    /// `router.send` expects): no `xmlns` on the root when it is `jabber:client`.
    pub fn to_stanza_xml(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_to(&mut out, NS_CLIENT);
        out
    }

    /// Serialize, declaring `xmlns` only where an element's namespace differs from its
    /// parent's (`parent_ns` for the root).
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if *self.ns != *parent_ns {
            out.push_str(" xmlns='");
            escape_into(out, &self.ns);
            out.push('\'');
        }
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            escape_into(out, v);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_into(out, t),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

impl std::str::FromStr for Element {
    type Err = XmlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Element::parse(s)
    }
}

/// Escape text or an attribute value (attributes are always quoted with `'`).
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

/// Namespace declarations in force: `(prefix, uri)`, `None` for the default namespace.
type Scope = Vec<(Option<String>, Namespace)>;

/// The namespace `xmlns` itself is bound to; nothing may be declared in it.
const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";

struct Parser {
    scopes: Vec<Scope>,
    open: Vec<Element>,
    done: Option<Element>,
}

/// XML 1.0 `Char` (§2.2): what may appear in text and attribute values.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn check_chars(s: &str) -> Result<(), XmlError> {
    match s.chars().find(|c| !is_xml_char(*c)) {
        Some(c) => Err(err(format!("U+{:04X} is not an XML character", c as u32))),
        None => Ok(()),
    }
}

/// XML 1.0 `NameStartChar` without `:` (namespaces make it a separator).
fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}'
        | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A namespace `NCName`: an XML name without colons.
fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

/// Split a qualified name (`prefix:local` or `local`), refusing anything that is not one.
fn split_qname(qname: &str) -> Result<(Option<&str>, &str), XmlError> {
    let (prefix, local) = match qname.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, qname),
    };
    if !is_ncname(local) || prefix.is_some_and(|p| !is_ncname(p)) {
        return Err(err(format!("{qname:?} is not an XML name")));
    }
    Ok((prefix, local))
}

impl Parser {
    fn resolve(&self, prefix: Option<&str>) -> Result<Namespace, XmlError> {
        for scope in self.scopes.iter().rev() {
            if let Some((_, uri)) = scope.iter().find(|(p, _)| p.as_deref() == prefix) {
                // Shared, not copied: this is what keeps the tree's cost linear in the input.
                return Ok(uri.clone());
            }
        }
        match prefix {
            None => Ok(Namespace::default()),
            Some("xml") => Ok(Namespace::from(NS_XML)),
            Some(p) => Err(err(format!("undeclared prefix {p}"))),
        }
    }

    /// Check one namespace declaration against the reserved names (Namespaces in XML §3).
    fn declaration(prefix: Option<&str>, uri: &str) -> Result<(), XmlError> {
        let reserved = |what: &str| Err(err(format!("{what} is reserved")));
        match prefix {
            Some("xmlns") => reserved("the xmlns prefix"),
            Some("xml") if uri != NS_XML => reserved("the xml prefix"),
            _ if uri == NS_XML && prefix != Some("xml") => reserved("the xml namespace"),
            _ if uri == NS_XMLNS => reserved("the xmlns namespace"),
            Some(p) if uri.is_empty() => Err(err(format!("prefix {p} declared with an empty namespace"))),
            _ => Ok(()),
        }
    }

    fn start(&mut self, start: &BytesStart<'_>, empty: bool) -> Result<(), XmlError> {
        if self.done.is_some() {
            return Err(err("more than one root element"));
        }
        if self.open.len() >= MAX_DEPTH {
            return Err(err("nesting too deep"));
        }
        let raw_name = start.name();
        let qname = std::str::from_utf8(raw_name.as_ref()).map_err(|_| err("bad encoding"))?;
        let (prefix, local) = split_qname(qname)?;
        if matches!(prefix, Some("xmlns" | "xml")) {
            return Err(err(format!("element {qname} uses a reserved prefix")));
        }
        let (prefix, local) = (prefix.map(str::to_string), local.to_string());
        let mut scope = Scope::new();
        let mut attrs = Vec::new();
        for attr in start.attributes().with_checks(true) {
            let attr = attr.map_err(|e| err(e.to_string()))?;
            let key = std::str::from_utf8(attr.key.as_ref())
                .map_err(|_| err("bad encoding"))?
                .to_string();
            split_qname(&key)?;
            let value = attr.unescape_value().map_err(|e| err(e.to_string()))?.into_owned();
            check_chars(&value)?;
            if key == "xmlns" {
                Parser::declaration(None, &value)?;
                scope.push((None, Namespace::from(value)));
            } else {
                if let Some(p) = key.strip_prefix("xmlns:") {
                    Parser::declaration(Some(p), &value)?;
                    scope.push((Some(p.to_string()), Namespace::from(value.as_str())));
                }
                attrs.push((key, value));
            }
        }
        self.scopes.push(scope);
        let ns = self.resolve(prefix.as_deref())?;
        self.check_attribute_names(&attrs)?;
        self.open.push(Element {
            name: local,
            ns,
            attrs,
            children: Vec::new(),
        });
        if empty {
            self.end();
        }
        Ok(())
    }

    /// Every attribute prefix is bound, and no attribute appears twice under two prefixes
    /// bound to one namespace (Namespaces in XML §6.3). Runs with the element's own
    /// declarations in scope.
    fn check_attribute_names(&self, attrs: &[(String, String)]) -> Result<(), XmlError> {
        let mut qualified: Vec<(Namespace, &str)> = Vec::new();
        for (key, _) in attrs {
            let Some((prefix, local)) = key.split_once(':') else {
                continue;
            };
            if prefix == "xmlns" {
                continue;
            }
            let ns = self.resolve(Some(prefix))?;
            if qualified.iter().any(|(n, l)| *n == ns && *l == local) {
                return Err(err(format!("attribute {{{ns}}}{local} given twice")));
            }
            qualified.push((ns, local));
        }
        Ok(())
    }

    fn end(&mut self) {
        self.scopes.pop();
        if let Some(done) = self.open.pop() {
            match self.open.last_mut() {
                Some(parent) => parent.children.push(Node::Element(done)),
                None => self.done = Some(done),
            }
        }
    }

    fn text(&mut self, s: &str) -> Result<(), XmlError> {
        check_chars(s)?;
        match self.open.last_mut() {
            Some(parent) => {
                if let Some(Node::Text(prev)) = parent.children.last_mut() {
                    prev.push_str(s);
                } else {
                    parent.children.push(Node::Text(s.to_string()));
                }
                Ok(())
            }
            None if s.trim().is_empty() => Ok(()),
            None => Err(err("text outside the root element")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_prefixes_and_entities() {
        let e = Element::parse_in(
            "<iq type='get' id='a&amp;b'><p:vCard xmlns:p='vcard-temp'><p:FN>A &lt;&#x42;&gt;</p:FN><N/></p:vCard></iq>",
            NS_CLIENT,
        )
        .unwrap();
        assert!(e.is("iq", NS_CLIENT));
        assert_eq!(e.get_attr("id"), Some("a&b"));
        let v = e.get_child("vCard", "vcard-temp").unwrap();
        assert_eq!(v.get_child("FN", "vcard-temp").unwrap().text_content(), "A <B>");
        // An unprefixed child keeps the default namespace in force, not the prefixed one.
        assert!(v.get_child("N", NS_CLIENT).is_some());
    }

    #[test]
    fn round_trips_with_minimal_declarations() {
        let xml = "<vCard xmlns='vcard-temp'><FN>Al &amp; &apos;Bo&apos;</FN><X xmlns='urn:x' a='1'/></vCard>";
        let e = Element::parse(xml).unwrap();
        assert_eq!(e.to_xml(), xml);
        assert_eq!(Element::parse(&e.to_xml()).unwrap(), e);
    }

    #[test]
    fn stanza_xml_omits_the_client_namespace() {
        let e = Element::new("message", NS_CLIENT)
            .attr("to", "a@b")
            .child(Element::new("body", NS_CLIENT).text("hi"));
        assert_eq!(e.to_stanza_xml(), "<message to='a@b'><body>hi</body></message>");
        assert_eq!(
            e.to_xml(),
            "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>"
        );
    }

    #[test]
    fn refuses_garbage() {
        assert!(Element::parse("").is_err());
        assert!(Element::parse("<a><b></a>").is_err());
        assert!(Element::parse("<a/><b/>").is_err());
        assert!(Element::parse("<p:a/>").is_err());
        assert!(Element::parse("<a>&ent;</a>").is_err());
        assert!(Element::parse("<!DOCTYPE a><a/>").is_err());
        let deep = "<a>".repeat(200) + &"</a>".repeat(200);
        assert!(Element::parse(&deep).is_err());
    }

    /// What a tree costs in memory, counting each shared namespace string once.
    fn cost(e: &Element, seen: &mut Vec<Namespace>) -> usize {
        let mut total = std::mem::size_of::<Node>() + e.name.len();
        if !seen.iter().any(|n| n.shares(&e.ns)) {
            total += e.ns.len();
            seen.push(e.ns.clone());
        }
        total += e.attrs.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>();
        for child in &e.children {
            total += match child {
                Node::Element(c) => cost(c, seen),
                Node::Text(t) => std::mem::size_of::<Node>() + t.len(),
            };
        }
        total
    }

    #[test]
    fn inherited_namespaces_are_shared_not_copied() {
        // Issue 10 item 1: a 64 KiB default namespace over 16,384 empty children cost
        // 16,384 copies (1 GiB) when every element owned its namespace string.
        let ns = "u".repeat(64 * 1024);
        let xml = format!(
            "<iq type='get' id='a'><vCard xmlns='vcard-temp'><x xmlns='{ns}'>{}</x></vCard></iq>",
            "<a/>".repeat(16 * 1024)
        );
        let e = Element::parse_in(&xml, NS_CLIENT).unwrap();
        let x = e.get_child("vCard", "vcard-temp").unwrap().elements().next().unwrap();
        assert_eq!(x.children.len(), 16 * 1024);
        assert!(x.elements().all(|a| a.ns.shares(&x.ns) && a.ns == ns.as_str()));
        let bytes = cost(&e, &mut Vec::new());
        assert!(
            bytes < 32 * xml.len(),
            "the tree costs {bytes} bytes for {} bytes of input",
            xml.len()
        );
    }

    #[test]
    fn refuses_what_a_namespace_aware_parser_refuses() {
        let bad = [
            "<body evil:x='1'/>",
            "<body Xml:lang='en'/>",
            "<a xmlns:xml='urn:other'/>",
            "<a xmlns:xmlns='urn:x'/>",
            "<a xmlns:p=''/>",
            "<a xmlns:p='http://www.w3.org/2000/xmlns/'/>",
            "<a xmlns='http://www.w3.org/XML/1998/namespace'/>",
            "<xml:a/>",
            "<xmlns:a/>",
            "<a xmlns:p='urn:x' xmlns:q='urn:x' p:k='1' q:k='2'/>",
            "<1body/>",
            "<a>\u{1}</a>",
            "<a>\u{C}</a>",
            "<a>\u{FFFE}</a>",
            "<a>&#1;</a>",
            "<a>&#xFFFE;</a>",
            "<a k='&#0;'/>",
            "<a k='\u{1}'/>",
        ];
        for xml in bad {
            assert!(Element::parse(xml).is_err(), "accepted {xml:?}");
        }
        let good = [
            "<a xml:lang='en'/>",
            "<a xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/>",
            "<a xmlns:p='urn:x' xmlns:q='urn:y' p:k='1' q:k='2'/>",
            "<a\u{E9}b xmlns='urn:x'>tab\there &#x10000;</a\u{E9}b>",
        ];
        for xml in good {
            assert!(Element::parse(xml).is_ok(), "refused {xml:?}");
        }
    }

    #[test]
    fn namespaces_read_like_strings() {
        let e = Element::parse("<a xmlns='urn:x'/>").unwrap();
        assert_eq!(e.ns, "urn:x");
        assert_eq!(e.ns.as_str(), "urn:x");
        assert!(matches!(&*e.ns, "urn:x"));
        assert_eq!(e.ns.to_string(), "urn:x");
        assert_eq!(String::from(e.ns.clone()), "urn:x".to_string());
    }
}
