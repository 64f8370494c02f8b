//! The tree itself: elements, their attributes and children, and the accessors code uses
//! to read and build stanzas.

use crate::{Ns, NS_XML};

/// A child of an element: another element or a run of text.
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

/// An element with its namespace resolved.
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
    /// `<name xmlns='ns'/>`, with no attributes or children yet.
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

    /// Whether this is `<name xmlns='ns'>`.
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

    /// Set the attribute written `name` or `xml:name`, replacing any previous value.
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

    /// Remove the attribute written `name` or `xml:name`, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|a| a.is_key(name))?;
        Some(self.attrs.remove(pos).value)
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

    /// The first child `<name xmlns='ns'>`, to change in place.
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

    /// Whether there is a child `<name xmlns='ns'>`.
    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
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
}
