//! Minimal incremental XMPP stream parser on top of quick-xml.
//!
//! XMPP is one endless XML document per direction: `<stream:stream>` is opened once
//! (and re-opened after STARTTLS and SASL success) and every stanza is a direct child
//! of it. We therefore read the stream header as a bare start tag and then build a
//! small owned tree for each depth-1 element. Namespaces are handled loosely (local
//! names plus the literal `xmlns` attribute) because a load generator only needs to
//! recognise a handful of well-known elements; it is not a conformance checker.

use anyhow::{anyhow, bail, Context, Result};
use quick_xml::events::{BytesStart, Event};
use tokio::io::AsyncBufRead;

/// One parsed element with its attributes, text and children.
#[derive(Debug, Default, Clone)]
pub struct Element {
    /// Local name (prefix stripped), e.g. `features` for `<stream:features>`.
    pub name: String,
    /// Attributes with their qualified keys (`xmlns`, `xml:lang`, ...), values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Concatenated, unescaped character data directly inside this element.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The element's own default namespace declaration, if any.
    pub fn ns(&self) -> Option<&str> {
        self.attr("xmlns")
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// First child with the given local name and `xmlns`.
    pub fn child_ns(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name && c.ns() == Some(ns))
    }

    /// A short human-readable description of an error stanza / SASL failure:
    /// the names of its children (the defined condition) plus any `<text>`.
    pub fn describe_error(&self) -> String {
        let holder = self.child("error").unwrap_or(self);
        let mut parts: Vec<String> = holder
            .children
            .iter()
            .filter(|c| c.name != "text")
            .map(|c| c.name.clone())
            .collect();
        if let Some(t) = holder.child("text") {
            if !t.text.is_empty() {
                parts.push(format!("({})", t.text));
            }
        }
        if parts.is_empty() {
            format!("<{}/> without condition", self.name)
        } else {
            parts.join(" ")
        }
    }
}

fn start_to_element(start: &BytesStart<'_>) -> Result<Element> {
    let name = std::str::from_utf8(start.local_name().as_ref())
        .context("element name is not UTF-8")?
        .to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.context("malformed attribute")?;
        let key = std::str::from_utf8(attr.key.as_ref())
            .context("attribute name is not UTF-8")?
            .to_owned();
        let value = attr.unescape_value().context("bad attribute value")?.into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

/// Incremental reader of one XMPP stream direction (server -> client).
pub struct XmlReader<R> {
    reader: quick_xml::Reader<R>,
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> XmlReader<R> {
    pub fn new(inner: R) -> Self {
        let mut reader = quick_xml::Reader::from_reader(inner);
        // No trimming: it would eat the spaces around entity references inside a
        // body. Whitespace keepalives between stanzas arrive as text at depth 0 and
        // are simply ignored by `next_element`.
        reader.config_mut().trim_text(false);
        // After login the read half gets a fresh reader that never saw the
        // `<stream:stream>` start tag; its `</stream:stream>` must still parse.
        reader.config_mut().allow_unmatched_ends = true;
        Self {
            reader,
            buf: Vec::with_capacity(4096),
        }
    }

    pub fn into_inner(self) -> R {
        self.reader.into_inner()
    }

    pub fn get_mut(&mut self) -> &mut R {
        self.reader.get_mut()
    }

    /// Read up to and including the server's `<stream:stream ...>` start tag.
    pub async fn read_stream_header(&mut self) -> Result<Element> {
        loop {
            self.buf.clear();
            match self.reader.read_event_into_async(&mut self.buf).await? {
                Event::Start(s) => {
                    let el = start_to_element(&s)?;
                    if el.name != "stream" {
                        bail!("expected <stream:stream>, got <{}>", el.name);
                    }
                    return Ok(el);
                }
                Event::Decl(_) | Event::Comment(_) | Event::Text(_) | Event::PI(_) => {}
                Event::Eof => bail!("connection closed before stream header"),
                other => bail!("unexpected XML before stream header: {other:?}"),
            }
        }
    }

    /// Read the next complete depth-1 element (stanza or stream-level element).
    /// Returns `Ok(None)` on `</stream:stream>` or EOF (a clean close).
    pub async fn next_element(&mut self) -> Result<Option<Element>> {
        let mut stack: Vec<Element> = Vec::new();
        loop {
            self.buf.clear();
            let ev = self.reader.read_event_into_async(&mut self.buf).await?;
            let done = match ev {
                Event::Start(s) => {
                    stack.push(start_to_element(&s)?);
                    None
                }
                Event::Empty(s) => Some(start_to_element(&s)?),
                Event::End(_) => match stack.pop() {
                    Some(el) => Some(el),
                    // End of the stream root itself.
                    None => return Ok(None),
                },
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&t.decode().context("bad text")?);
                    }
                    None
                }
                Event::CData(c) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&c.decode().context("bad CDATA")?);
                    }
                    None
                }
                Event::GeneralRef(r) => {
                    if let Some(top) = stack.last_mut() {
                        if let Some(ch) = r.resolve_char_ref()? {
                            top.text.push(ch);
                        } else {
                            let name = r.decode().context("bad entity")?;
                            let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                                .ok_or_else(|| anyhow!("unknown entity &{name};"))?;
                            top.text.push_str(resolved);
                        }
                    }
                    None
                }
                Event::Eof => {
                    if stack.is_empty() {
                        return Ok(None);
                    }
                    bail!("connection closed in the middle of <{}>", stack[0].name);
                }
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => None,
            };
            if let Some(el) = done {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(Some(el)),
                }
            }
        }
    }
}

/// Escape text / attribute content for outgoing XML.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_stream_and_stanzas() {
        let data = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>\
            <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
            <mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>\
            </stream:features> <message to='a@b'><body>1 &amp; 2&#33;</body></message>\
            </stream:stream>";
        let mut r = XmlReader::new(&data[..]);
        let hdr = r.read_stream_header().await.unwrap();
        assert_eq!(hdr.attr("id"), Some("x"));
        let f = r.next_element().await.unwrap().unwrap();
        assert_eq!(f.name, "features");
        let m = f.child_ns("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl").unwrap();
        let names: Vec<_> = m.children.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(names, ["SCRAM-SHA-1", "PLAIN"]);
        let msg = r.next_element().await.unwrap().unwrap();
        assert_eq!(msg.child("body").unwrap().text, "1 & 2!");
        assert!(r.next_element().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn continued_reader_sees_stream_end() {
        let data = b" <message/></stream:stream>";
        let mut r = XmlReader::new(&data[..]);
        assert_eq!(r.next_element().await.unwrap().unwrap().name, "message");
        assert!(r.next_element().await.unwrap().is_none());
    }

    #[test]
    fn describes_errors() {
        let el = Element {
            name: "failure".into(),
            children: vec![Element {
                name: "not-authorized".into(),
                ..Element::default()
            }],
            ..Element::default()
        };
        assert_eq!(el.describe_error(), "not-authorized");
    }
}
