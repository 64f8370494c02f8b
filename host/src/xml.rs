//! A small owned XML element tree: what a stanza is once framed.
//!
//! Namespaces are resolved at parse time, so code compares `(name, ns)` pairs and never
//! cares which prefix a client chose. Serialization emits `xmlns` only where an element's
//! namespace differs from its parent's, which keeps routed stanzas byte-small.

use std::fmt::Write as _;

/// Namespace of client-to-server stanzas (RFC 6120 §4.8.3).
pub const NS_CLIENT: &str = "jabber:client";
/// Namespace of the stream root and stream-level elements.
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub ns: String,
    /// Attributes in document order, qualified names kept as written (e.g. `xml:lang`).
    /// Prefix declarations (`xmlns:foo`) are kept so prefixed attributes stay meaningful.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Self {
        Element {
            name: name.to_string(),
            ns: ns.to_string(),
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

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

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

    /// Serialize, omitting `xmlns` where it equals `parent_ns`.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns='");
            escape_into(out, &self.ns);
            out.push('\'');
        }
        for (k, v) in &self.attrs {
            let _ = write!(out, " {k}='");
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

    /// Serialize as a top-level child of a `jabber:client` stream.
    pub fn to_stream_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_to(&mut out, NS_CLIENT);
        out
    }
}

/// Escape text or attribute values; `'` too because we quote attributes with it.
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

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_minimal_namespaces() {
        let e = Element::new("iq", NS_CLIENT)
            .attr("type", "result")
            .attr("id", "a'b")
            .child(
                Element::new("query", "jabber:iq:roster")
                    .child(Element::new("item", "jabber:iq:roster").attr("jid", "x@y")),
            );
        assert_eq!(
            e.to_stream_xml(),
            "<iq type='result' id='a&apos;b'><query xmlns='jabber:iq:roster'><item jid='x@y'/></query></iq>"
        );
    }
}
