//! Parsing one element from a string: what plugins do with the stanzas the host hands them
//! and with what they stored.
//!
//! The host frames streams with its own incremental reader under hard limits
//! (`host/src/stream/reader.rs`); this one reads a complete string and builds the same tree.
//! Namespaces are resolved as they are read and every element shares the [`Ns`] in force
//! instead of copying it, so a tree costs a small multiple of its input. It refuses what a
//! strict namespace-aware parser refuses where that is cheap: unbound prefixes,
//! reserved-prefix declarations, one attribute given twice through two prefixes, names that
//! are not XML names and characters outside XML 1.0's `Char`, raw or referenced.

use std::fmt;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::chars::{first_non_char, is_xml_char, split_qname};
use crate::{Attr, Element, Node, Ns, NS_XML, NS_XMLNS};

/// Deeper documents are refused: the tree is recursive and plugin stacks are small.
const MAX_DEPTH: usize = 128;

/// Why some text is not an element.
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
    /// Parse one element. The root's namespace must be declared (or is empty).
    pub fn parse(xml: &str) -> Result<Element, XmlError> {
        Element::parse_in(xml, "")
    }

    /// Parse one element as if it appeared inside an element whose default namespace is
    /// `default_ns`. Stanzas from the host are written as children of a `jabber:client`
    /// stream ([`Element::to_stream_xml`]), so they are parsed with [`crate::NS_CLIENT`].
    pub fn parse_in(xml: &str, default_ns: &str) -> Result<Element, XmlError> {
        let mut reader = Reader::from_str(xml);
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;
        let mut parser = Parser {
            scopes: vec![vec![(None, Ns::new(default_ns))]],
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
                // Not part of the tree (and never in what the host writes): skipped.
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            }
        }
        parser.done.ok_or_else(|| err("no complete element"))
    }
}

impl std::str::FromStr for Element {
    type Err = XmlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Element::parse(s)
    }
}

fn check_chars(s: &str) -> Result<(), XmlError> {
    match first_non_char(s) {
        Some(c) => Err(err(format!("U+{:04X} is not an XML character", c as u32))),
        None => Ok(()),
    }
}

fn qname(qname: &str) -> Result<(Option<&str>, &str), XmlError> {
    split_qname(qname).ok_or_else(|| err(format!("{qname:?} is not an XML name")))
}

/// Namespace declarations in force on one element: `(prefix, uri)`, `None` for the default.
type Scope = Vec<(Option<String>, Ns)>;

struct Parser {
    scopes: Vec<Scope>,
    open: Vec<Element>,
    done: Option<Element>,
}

impl Parser {
    fn resolve(&self, prefix: Option<&str>) -> Result<Ns, XmlError> {
        for scope in self.scopes.iter().rev() {
            if let Some((_, uri)) = scope.iter().find(|(p, _)| p.as_deref() == prefix) {
                // Shared, not copied: this is what keeps the tree's cost linear in the input.
                return Ok(uri.clone());
            }
        }
        match prefix {
            None => Ok(Ns::default()),
            Some("xml") => Ok(Ns::new(NS_XML)),
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
        let name = std::str::from_utf8(raw_name.as_ref()).map_err(|_| err("bad encoding"))?;
        let (prefix, local) = qname(name)?;
        if matches!(prefix, Some("xmlns" | "xml")) {
            return Err(err(format!("element {name} uses a reserved prefix")));
        }
        // Declarations first (they apply to the element's own name and attributes), the
        // other attributes as written until they can be resolved.
        let mut scope = Scope::new();
        let mut written: Vec<(String, String)> = Vec::new();
        for attr in start.attributes().with_checks(true) {
            let attr = attr.map_err(|e| err(e.to_string()))?;
            let key = std::str::from_utf8(attr.key.as_ref()).map_err(|_| err("bad encoding"))?;
            let (key_prefix, key_local) = qname(key)?;
            let value = attr.unescape_value().map_err(|e| err(e.to_string()))?.into_owned();
            check_chars(&value)?;
            match (key_prefix, key_local) {
                (None, "xmlns") => {
                    Parser::declaration(None, &value)?;
                    scope.push((None, Ns::new(&value)));
                }
                (Some("xmlns"), p) => {
                    Parser::declaration(Some(p), &value)?;
                    scope.push((Some(p.to_string()), Ns::new(&value)));
                }
                _ => written.push((key.to_string(), value)),
            }
        }
        self.scopes.push(scope);
        let ns = self.resolve(prefix)?;
        let attrs = self.attributes(written)?;
        self.open.push(Element {
            name: local.to_string(),
            ns,
            attrs,
            children: Vec::new(),
        });
        if empty {
            self.end();
        }
        Ok(())
    }

    /// Resolve the attributes with the element's own declarations in scope: every prefix is
    /// bound, and no attribute appears twice under two prefixes bound to one namespace
    /// (Namespaces in XML §6.3). An unprefixed attribute has no namespace (§6.2).
    fn attributes(&self, written: Vec<(String, String)>) -> Result<Vec<Attr>, XmlError> {
        let mut attrs: Vec<Attr> = Vec::with_capacity(written.len());
        for (key, value) in written {
            let (ns, name) = match key.split_once(':') {
                Some((prefix, local)) => (Some(self.resolve(Some(prefix))?), local),
                None => (None, key.as_str()),
            };
            if attrs.iter().any(|a| a.name == name && a.ns == ns) {
                return Err(err(format!("attribute {key} given twice")));
            }
            attrs.push(Attr {
                ns,
                name: name.to_string(),
                value,
            });
        }
        Ok(attrs)
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
    use crate::NS_CLIENT;

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
        // The declaration is not an attribute: it became the element's namespace.
        assert!(v.attrs.is_empty());
        assert_eq!(v.get_child("FN", "vcard-temp").unwrap().text_content(), "A <B>");
        // An unprefixed child keeps the default namespace in force, not the prefixed one.
        assert!(v.get_child("N", NS_CLIENT).is_some());
    }

    #[test]
    fn attributes_are_resolved() {
        let e = Element::parse("<a xmlns:p='urn:p' xml:lang='en' p:k='1' k='2'/>").unwrap();
        assert_eq!(e.get_attr("xml:lang"), Some("en"));
        assert_eq!(e.get_attr_ns(Some(NS_XML), "lang"), Some("en"));
        assert_eq!(e.get_attr_ns(Some("urn:p"), "k"), Some("1"));
        assert_eq!(e.get_attr("k"), Some("2"));
        assert_eq!(e.attrs.len(), 3);
        // Written alone, it declares the prefix its attribute needs.
        assert_eq!(e.to_xml(), "<a xml:lang='en' xmlns:ns1='urn:p' ns1:k='1' k='2'/>");
        assert_eq!(Element::parse(&e.to_xml()).unwrap(), e);
    }

    #[test]
    fn a_subtree_stays_well_formed_on_its_own() {
        // The prefix is declared on the root; the child written alone must still bind it.
        let e = Element::parse("<r xmlns:p='urn:p'><c p:k='v'/></r>").unwrap();
        let c = e.elements().next().unwrap();
        assert_eq!(c.to_xml(), "<c xmlns:ns1='urn:p' ns1:k='v'/>");
        assert_eq!(&Element::parse(&c.to_xml()).unwrap(), c);
    }

    #[test]
    fn round_trips_with_minimal_declarations() {
        let xml = "<vCard xmlns='vcard-temp'><FN>Al &amp; &apos;Bo&apos;</FN><X xmlns='urn:x' a='1'/></vCard>";
        let e = Element::parse(xml).unwrap();
        assert_eq!(e.to_xml(), xml);
        assert_eq!(Element::parse(&e.to_xml()).unwrap(), e);
        assert_eq!(xml.parse::<Element>().unwrap(), e);
    }

    #[test]
    fn refuses_garbage() {
        assert!(Element::parse("").is_err());
        assert!(Element::parse("<a><b></a>").is_err());
        assert!(Element::parse("<a/><b/>").is_err());
        assert!(Element::parse("<p:a/>").is_err());
        assert!(Element::parse("<a>&ent;</a>").is_err());
        assert!(Element::parse("<!DOCTYPE a><a/>").is_err());
        assert!(Element::parse("<a>x</a>y").is_err());
        let deep = "<a>".repeat(200) + &"</a>".repeat(200);
        assert!(Element::parse(&deep).is_err());
    }

    /// What a tree costs in memory, counting each shared namespace string once.
    fn cost(e: &Element, seen: &mut Vec<Ns>) -> usize {
        let mut total = std::mem::size_of::<Node>() + e.name.len();
        if !seen.iter().any(|n| n.ptr_eq(&e.ns)) {
            total += e.ns.len();
            seen.push(e.ns.clone());
        }
        total += e
            .attrs
            .iter()
            .map(|a| a.name.len() + a.value.len() + std::mem::size_of::<Attr>())
            .sum::<usize>();
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
        assert!(x.elements().all(|a| a.ns.ptr_eq(&x.ns) && a.ns == ns.as_str()));
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
            "<a xmlns:p='http://www.w3.org/XML/1998/namespace'/>",
            "<1body/>",
            "<a b:c:d='1'/>",
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
            "<a xmlns:p='urn:x' p:k='1' k='2'/>",
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
