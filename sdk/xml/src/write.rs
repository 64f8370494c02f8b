//! Serialisation: whatever the tree holds, the output is namespace-well-formed on its own.
//!
//! Element namespaces are written as default declarations where they differ from the
//! parent's; attributes in a namespace other than XML's get a prefix declared on the same
//! element (`xmlns:ns1`), so any subtree written alone (a stored vCard, the payload echoed
//! in an error reply, a stanza forwarded without the sender's stream header) binds every
//! prefix it uses. Names and characters are checked as they are written: parsed trees are
//! already valid, but code and plugins build trees too, so an element or attribute whose
//! name is not an XML name, or whose namespace cannot be declared, is left out (and
//! logged), and a character outside XML's `Char` is written as U+FFFD.

use std::fmt::{self, Write as _};

use crate::chars::is_ncname;
#[cfg(test)]
use crate::chars::is_xml_char;
use crate::{Attr, Element, Node, NS_CLIENT, NS_XML, NS_XMLNS};

impl Element {
    /// Serialize, omitting `xmlns` where it equals `parent_ns`.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        if !is_ncname(&self.name) || self.ns == NS_XML || self.ns == NS_XMLNS {
            tracing::warn!(name = %self.name, ns = %self.ns, "not serialising an element that cannot be written as XML");
            return;
        }
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns='");
            escape_into(out, &self.ns);
            out.push('\'');
        }
        self.write_attrs(out);
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_text_into(out, t),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }

    fn write_attrs(&self, out: &mut String) {
        // Namespaces needing a prefix on this element, in first-use order: `ns1`, `ns2`, …
        let mut prefixed: Vec<&str> = Vec::new();
        for (i, a) in self.attrs.iter().enumerate() {
            if !is_ncname(&a.name) || self.attrs[..i].iter().any(|b| same_name(a, b)) {
                tracing::warn!(attribute = %a.name, element = %self.name, "not serialising an invalid or repeated attribute");
                continue;
            }
            let ns = a.ns.as_deref().unwrap_or("");
            // `xmlns` with no namespace would be written as a declaration, silently changing
            // the element's namespace (or declaring it twice).
            if ns == NS_XMLNS || (ns.is_empty() && a.name == "xmlns") {
                tracing::warn!(attribute = %a.name, "not serialising a namespace declaration as an attribute");
                continue;
            }
            out.push(' ');
            if ns == NS_XML {
                out.push_str("xml:");
            } else if !ns.is_empty() {
                let n = match prefixed.iter().position(|p| *p == ns) {
                    Some(i) => i + 1,
                    None => {
                        prefixed.push(ns);
                        let _ = write!(out, "xmlns:ns{}='", prefixed.len());
                        escape_into(out, ns);
                        out.push_str("' ");
                        prefixed.len()
                    }
                };
                let _ = write!(out, "ns{n}:");
            }
            out.push_str(&a.name);
            out.push_str("='");
            escape_into(out, &a.value);
            out.push('\'');
        }
    }

    /// Serialize as a top-level child of a `jabber:client` stream: no `xmlns` on the root
    /// when it is `jabber:client`. This is what a stream carries and what a plugin's
    /// `router.send` takes.
    pub fn to_stream_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_to(&mut out, NS_CLIENT);
        out
    }

    /// The SDK's former name for [`Element::to_stream_xml`].
    #[deprecated(note = "use `to_stream_xml`")]
    pub fn to_stanza_xml(&self) -> String {
        self.to_stream_xml()
    }

    /// Serialize as a document of its own, the root's namespace declared (for storage).
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_to(&mut out, "");
        out
    }
}

/// [`Element::to_xml`]: the element as a document of its own.
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml())
    }
}

/// Two attributes with one expanded name (an empty namespace is no namespace).
fn same_name(a: &Attr, b: &Attr) -> bool {
    a.name == b.name && a.ns.as_deref().unwrap_or("") == b.ns.as_deref().unwrap_or("")
}

/// Escape text or attribute values; `'` too because we quote attributes with it. Tab, line
/// feed and carriage return become character references so they survive a receiver's
/// end-of-line and attribute-value normalisation; a character XML cannot carry at all
/// (U+0000, U+FFFE, …) becomes U+FFFD.
pub fn escape_into(out: &mut String, s: &str) {
    escape_chars(out, s, true)
}

/// As [`escape_into`] for character data, where tabs and line feeds survive as they are.
pub fn escape_text_into(out: &mut String, s: &str) {
    escape_chars(out, s, false)
}

/// Escape `s` into `out`, copying the runs between special bytes whole: this runs on every
/// character of every stanza written. `s` is UTF-8, so the only characters outside XML's
/// `Char` are the C0 controls other than TAB, LF and CR, and U+FFFE and U+FFFF (bytes
/// `EF BF BE`/`EF BF BF`); they become U+FFFD (see [`crate::chars::is_xml_char`]).
fn escape_chars(out: &mut String, s: &str, attribute: bool) {
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (replacement, width) = match bytes[i] {
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'&' => ("&amp;", 1),
            b'\'' => ("&apos;", 1),
            b'"' => ("&quot;", 1),
            b'\r' => ("&#xD;", 1),
            b'\t' if attribute => ("&#x9;", 1),
            b'\n' if attribute => ("&#xA;", 1),
            b'\t' | b'\n' => {
                i += 1;
                continue;
            }
            0x00..=0x1F => ("\u{FFFD}", 1),
            0xEF if bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) => ("\u{FFFD}", 3),
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[run..i]);
        out.push_str(replacement);
        i += width;
        run = i;
    }
    out.push_str(&s[run..]);
}

/// [`escape_into`] into a new string.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-run escaper agrees with the plain per-character rules.
    #[test]
    fn escaping_matches_the_per_character_rules() {
        fn reference(s: &str, attribute: bool) -> String {
            let mut out = String::new();
            for c in s.chars() {
                match c {
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '&' => out.push_str("&amp;"),
                    '\'' => out.push_str("&apos;"),
                    '"' => out.push_str("&quot;"),
                    '\r' => out.push_str("&#xD;"),
                    '\t' if attribute => out.push_str("&#x9;"),
                    '\n' if attribute => out.push_str("&#xA;"),
                    c if !is_xml_char(c) => out.push('\u{FFFD}'),
                    c => out.push(c),
                }
            }
            out
        }
        let samples = [
            "",
            "plain",
            "a<b>&'\"c",
            "tab\tlf\ncr\r",
            "\u{0}\u{1}\u{C}\u{1F}x",
            "\u{FFFE}\u{FFFF}\u{FFFD}\u{EFBF}é🎉",
            "ünïcödé <tag> ]]> &amp;",
        ];
        for s in samples {
            for attribute in [false, true] {
                let mut out = String::new();
                escape_chars(&mut out, s, attribute);
                assert_eq!(out, reference(s, attribute), "{s:?} (attribute: {attribute})");
            }
        }
    }

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

    #[test]
    fn declares_the_prefixes_its_attributes_need() {
        let mut body = Element::new("body", NS_CLIENT).attr("xml:lang", "en").text("hi");
        body.set_attr_ns(Some("urn:a"), "x", "1");
        body.set_attr_ns(Some("urn:b"), "y", "2");
        body.set_attr_ns(Some("urn:a"), "z", "3");
        assert_eq!(
            body.to_stream_xml(),
            "<body xml:lang='en' xmlns:ns1='urn:a' ns1:x='1' xmlns:ns2='urn:b' ns2:y='2' ns1:z='3'>hi</body>"
        );
    }

    #[test]
    fn leaves_out_what_cannot_be_xml() {
        let e = Element::new("message", NS_CLIENT)
            .attr("evil:x", "1")
            .attr("ok", "a\u{1}\u{FFFE}b\r")
            .attr("xmlns", "urn:evil")
            .child(Element::new("bo=dy", NS_CLIENT))
            .child(Element::new("lang", NS_XML))
            .text("\u{0}");
        assert_eq!(
            e.to_stream_xml(),
            "<message ok='a\u{FFFD}\u{FFFD}b&#xD;'>\u{FFFD}</message>"
        );
    }

    #[test]
    fn a_document_declares_its_root_namespace() {
        let e = Element::new("message", NS_CLIENT)
            .attr("to", "a@b")
            .child(Element::new("body", NS_CLIENT).text("hi\tthere\r\n"));
        assert_eq!(
            e.to_stream_xml(),
            "<message to='a@b'><body>hi\tthere&#xD;\n</body></message>"
        );
        assert_eq!(
            e.to_xml(),
            "<message xmlns='jabber:client' to='a@b'><body>hi\tthere&#xD;\n</body></message>"
        );
        assert_eq!(e.to_string(), e.to_xml());
        let empty = Element::new("x", "").child(Element::new("y", "urn:y").child(Element::new("z", "")));
        assert_eq!(empty.to_xml(), "<x><y xmlns='urn:y'><z xmlns=''/></y></x>");
    }
}
