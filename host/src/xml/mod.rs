//! A small owned XML element tree: what a stanza is once framed.
//!
//! Namespaces are resolved at parse time, so code compares `(name, ns)` pairs and never
//! cares which prefix a client chose: element names are local names with a namespace
//! ([`Ns`], shared between a parent and the children that inherit it), attributes are
//! `(namespace, local name)` pairs. The tree keeps no prefixes at all, so whatever subtree
//! is serialised on its own ([`write`]) declares exactly what it uses and is
//! namespace-well-formed by construction.

mod chars;
mod ns;
mod write;

pub use chars::{first_non_char, is_ncname, is_xml_char, split_qname};
pub use ns::{Ns, NS_XML, NS_XMLNS};
pub use write::{escape_into, escape_str as escape, escape_text_into};

/// Namespace of client-to-server stanzas (RFC 6120 §4.8.3).
pub const NS_CLIENT: &str = "jabber:client";
/// Namespace of the stream root and stream-level elements.
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// One attribute, namespace-resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// `None` for an unprefixed attribute (Namespaces in XML §6.2: it has no namespace);
    /// [`NS_XML`] for `xml:lang` and friends.
    pub ns: Option<Ns>,
    /// The local name.
    pub name: String,
    pub value: String,
}

impl Attr {
    /// Whether this is the attribute written `key` in code: `local`, or `xml:local`.
    fn is_key(&self, key: &str) -> bool {
        let (ns, local) = attr_key(key);
        self.name == local && self.ns.as_deref() == ns
    }
}

/// How code names an attribute: `type` (no namespace) or `xml:lang` (the XML namespace,
/// the one prefix bound in every document). Any other `p:x` has no meaning without a
/// declaration, so it is taken as an (invalid, never serialised) local name.
fn attr_key(key: &str) -> (Option<&'static str>, &str) {
    match key.strip_prefix("xml:") {
        Some(local) => (Some(NS_XML), local),
        None => (None, key),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The local name (never a prefix).
    pub name: String,
    pub ns: Ns,
    /// Attributes in document order; namespace declarations are not attributes.
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Self {
        Element::with_ns(name, Ns::new(ns))
    }

    /// As [`Element::new`], sharing an existing namespace string.
    pub fn with_ns(name: &str, ns: Ns) -> Self {
        Element {
            name: name.to_string(),
            ns,
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: set an attribute (`name` or `xml:name`).
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

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// The attribute written `name` (no namespace) or `xml:name` (the XML namespace).
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|a| a.is_key(name)).map(|a| a.value.as_str())
    }

    /// The attribute `local` in namespace `ns` (`None`: no namespace).
    pub fn get_attr_ns(&self, ns: Option<&str>, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == local && a.ns.as_deref() == ns)
            .map(|a| a.value.as_str())
    }

    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let (ns, local) = attr_key(name);
        self.set_attr_ns(ns, local, value);
    }

    /// Set the attribute `local` in namespace `ns` (`None`: no namespace).
    pub fn set_attr_ns(&mut self, ns: Option<&str>, local: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|a| a.name == local && a.ns.as_deref() == ns) {
            Some(slot) => slot.value = value,
            None => self.attrs.push(Attr {
                ns: ns.map(Ns::new),
                name: local.to_string(),
                value,
            }),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|a| a.is_key(name))?;
        Some(self.attrs.remove(pos).value)
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// Concatenated direct text content.
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }
}
