//! A small, strict-enough incremental parser for what the server sends on an XMPP stream.
//!
//! The raw-socket tests need to find the stream header, top-level elements (features,
//! stanzas, `<stream:error/>`) and the closing `</stream:stream>` in a byte stream that
//! arrives in arbitrary chunks. This parser keeps its own buffer, returns `None` when
//! it needs more bytes, resolves namespaces (so assertions can check that a stream
//! error condition really is in `urn:ietf:params:xml:ns:xmpp-streams`) and reports
//! malformed server output as an error instead of guessing.

use std::fmt;

pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
pub const NS_STREAMS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_STANZAS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_CLIENT: &str = "jabber:client";
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_PING: &str = "urn:xmpp:ping";
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// The qualified name as written (`stream:error`).
    pub qname: String,
    /// The local part (`error`).
    pub local: String,
    /// The resolved namespace URI ("" if none).
    pub ns: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// The exact bytes of this element as received (lossy UTF-8), for messages.
    pub raw: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn is(&self, local: &str, ns: &str) -> bool {
        self.local == local && self.ns == ns
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn child(&self, local: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(local, ns))
    }

    /// First descendant (depth-first) with this local name, any namespace.
    pub fn find(&self, local: &str) -> Option<&Element> {
        for e in self.elements() {
            if e.local == local {
                return Some(e);
            }
            if let Some(found) = e.find(local) {
                return Some(found);
            }
        }
        None
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Element(e) => out.push_str(&e.text()),
            }
        }
        out
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The peer's stream header (its children list is empty).
    Header(Element),
    /// A complete first-level child of the stream.
    Element(Element),
    /// `</stream:stream>`.
    StreamEnd,
}

/// Incremental parser for one XMPP stream (reset it when the stream restarts).
#[derive(Default)]
pub struct StreamParser {
    buf: Vec<u8>,
    pos: usize,
    /// Namespace declarations in scope for the stream's children.
    root_scope: Vec<(String, String)>,
    header_seen: bool,
    ended: bool,
}

type Parsed<T> = Result<Option<(T, usize)>, String>;

impl StreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Start a new stream (after STARTTLS or SASL success): keep nothing.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Bytes received but not yet consumed by an event.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn header_seen(&self) -> bool {
        self.header_seen
    }

    /// The next complete event, `Ok(None)` if more bytes are needed.
    pub fn next(&mut self) -> Result<Option<Event>, String> {
        loop {
            if self.ended {
                let rest = &self.buf[self.pos..];
                if rest.iter().all(|b| b.is_ascii_whitespace()) {
                    return Ok(None);
                }
                return Err(format!(
                    "data after </stream:stream>: {:?}",
                    String::from_utf8_lossy(rest)
                ));
            }
            let buf = &self.buf;
            let mut p = self.pos;
            while p < buf.len() && buf[p].is_ascii_whitespace() {
                p += 1;
            }
            self.pos = p;
            if p >= buf.len() {
                return Ok(None);
            }
            if buf[p] != b'<' {
                return Err(format!(
                    "text at stream level: {:?}",
                    String::from_utf8_lossy(&buf[p..buf.len().min(p + 200)])
                ));
            }
            if starts_with(buf, p, b"<?") {
                match find(buf, p, b"?>") {
                    Some(end) => {
                        if self.header_seen {
                            return Err("processing instruction inside the stream".into());
                        }
                        self.pos = end + 2;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            if starts_with(buf, p, b"<!") {
                if buf.len() - p < 4 {
                    return Ok(None);
                }
                return Err(format!(
                    "comment/DTD from the server: {:?}",
                    String::from_utf8_lossy(&buf[p..buf.len().min(p + 200)])
                ));
            }
            if starts_with(buf, p, b"</") {
                let Some(end) = find(buf, p, b">") else { return Ok(None) };
                let name = String::from_utf8_lossy(&buf[p + 2..end]).trim().to_string();
                if !self.header_seen {
                    return Err(format!("end tag </{name}> before the stream header"));
                }
                if local_of(&name) != "stream" {
                    return Err(format!("unexpected end tag </{name}> at stream level"));
                }
                self.pos = end + 1;
                self.ended = true;
                return Ok(Some(Event::StreamEnd));
            }
            if !self.header_seen {
                let Some((tag, end)) = parse_start_tag(buf, p)? else {
                    return Ok(None);
                };
                if tag.self_closing {
                    return Err(format!("self-closing stream header: {}", tag.qname));
                }
                let scope = declarations(&tag.attrs);
                let ns = resolve(&scope, prefix_of(&tag.qname))?;
                let header = Element {
                    local: local_of(&tag.qname).to_string(),
                    qname: tag.qname,
                    ns,
                    attrs: tag.attrs,
                    children: Vec::new(),
                    raw: String::from_utf8_lossy(&buf[p..end]).into_owned(),
                };
                self.root_scope = scope;
                self.header_seen = true;
                self.pos = end;
                return Ok(Some(Event::Header(header)));
            }
            let scope = self.root_scope.clone();
            let Some((el, end)) = parse_element(buf, p, &scope, 0)? else {
                return Ok(None);
            };
            self.pos = end;
            return Ok(Some(Event::Element(el)));
        }
    }
}

struct StartTag {
    qname: String,
    attrs: Vec<(String, String)>,
    self_closing: bool,
}

fn starts_with(buf: &[u8], p: usize, pat: &[u8]) -> bool {
    buf.len() >= p + pat.len() && &buf[p..p + pat.len()] == pat
}

fn find(buf: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    if buf.len() < pat.len() {
        return None;
    }
    (from..=buf.len() - pat.len()).find(|&i| &buf[i..i + pat.len()] == pat)
}

fn prefix_of(qname: &str) -> Option<&str> {
    qname.split_once(':').map(|(p, _)| p)
}

fn local_of(qname: &str) -> &str {
    qname.split_once(':').map(|(_, l)| l).unwrap_or(qname)
}

fn is_name_byte(b: u8) -> bool {
    !(b.is_ascii_whitespace() || matches!(b, b'>' | b'/' | b'=' | b'<' | b'"' | b'\''))
}

/// Parse `<name attr='v' ...>` or `<name .../>` starting at `p` (which is `<`).
fn parse_start_tag(buf: &[u8], p: usize) -> Parsed<StartTag> {
    let mut i = p + 1;
    let start = i;
    while i < buf.len() && is_name_byte(buf[i]) {
        i += 1;
    }
    if i >= buf.len() {
        return Ok(None);
    }
    if i == start {
        return Err(format!("empty element name at {:?}", lossy(buf, p)));
    }
    let qname = String::from_utf8_lossy(&buf[start..i]).into_owned();
    let mut attrs = Vec::new();
    loop {
        while i < buf.len() && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= buf.len() {
            return Ok(None);
        }
        match buf[i] {
            b'>' => {
                return Ok(Some((
                    StartTag {
                        qname,
                        attrs,
                        self_closing: false,
                    },
                    i + 1,
                )))
            }
            b'/' => {
                if i + 1 >= buf.len() {
                    return Ok(None);
                }
                if buf[i + 1] != b'>' {
                    return Err(format!("bad '/' in tag {qname}"));
                }
                return Ok(Some((
                    StartTag {
                        qname,
                        attrs,
                        self_closing: true,
                    },
                    i + 2,
                )));
            }
            _ => {}
        }
        let astart = i;
        while i < buf.len() && is_name_byte(buf[i]) {
            i += 1;
        }
        if i >= buf.len() {
            return Ok(None);
        }
        if i == astart {
            return Err(format!("bad attribute syntax in <{qname}>: {:?}", lossy(buf, astart)));
        }
        let aname = String::from_utf8_lossy(&buf[astart..i]).into_owned();
        while i < buf.len() && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= buf.len() {
            return Ok(None);
        }
        if buf[i] != b'=' {
            return Err(format!("attribute {aname} without value in <{qname}>"));
        }
        i += 1;
        while i < buf.len() && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= buf.len() {
            return Ok(None);
        }
        let quote = buf[i];
        if quote != b'"' && quote != b'\'' {
            return Err(format!("unquoted attribute {aname} in <{qname}>"));
        }
        let vstart = i + 1;
        let Some(vend) = buf[vstart..].iter().position(|&b| b == quote).map(|o| vstart + o) else {
            return Ok(None);
        };
        let raw_value = String::from_utf8_lossy(&buf[vstart..vend]);
        if raw_value.contains('<') {
            return Err(format!("'<' in attribute {aname} of <{qname}>"));
        }
        let value = unescape(&raw_value)?;
        if attrs.iter().any(|(k, _)| *k == aname) {
            return Err(format!("duplicate attribute {aname} in <{qname}>"));
        }
        attrs.push((aname, value));
        i = vend + 1;
    }
}

fn declarations(attrs: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in attrs {
        if k == "xmlns" {
            out.push((String::new(), v.clone()));
        } else if let Some(p) = k.strip_prefix("xmlns:") {
            out.push((p.to_string(), v.clone()));
        }
    }
    out
}

fn resolve(scope: &[(String, String)], prefix: Option<&str>) -> Result<String, String> {
    let want = prefix.unwrap_or("");
    if want == "xml" {
        return Ok(NS_XML.to_string());
    }
    match scope.iter().rev().find(|(p, _)| p == want) {
        Some((_, uri)) => Ok(uri.clone()),
        None if want.is_empty() => Ok(String::new()),
        None => Err(format!("undeclared namespace prefix {want:?}")),
    }
}

fn parse_element(buf: &[u8], p: usize, parent_scope: &[(String, String)], depth: usize) -> Parsed<Element> {
    if depth > 200 {
        return Err("element nesting deeper than 200".into());
    }
    let Some((tag, mut i)) = parse_start_tag(buf, p)? else {
        return Ok(None);
    };
    let mut scope = parent_scope.to_vec();
    scope.extend(declarations(&tag.attrs));
    let ns = resolve(&scope, prefix_of(&tag.qname))?;
    let mut el = Element {
        local: local_of(&tag.qname).to_string(),
        qname: tag.qname,
        ns,
        attrs: tag.attrs,
        children: Vec::new(),
        raw: String::new(),
    };
    if tag.self_closing {
        el.raw = String::from_utf8_lossy(&buf[p..i]).into_owned();
        return Ok(Some((el, i)));
    }
    loop {
        if i >= buf.len() {
            return Ok(None);
        }
        if buf[i] == b'<' {
            if starts_with(buf, i, b"</") {
                let Some(end) = find(buf, i, b">") else { return Ok(None) };
                let name = String::from_utf8_lossy(&buf[i + 2..end]).trim().to_string();
                if name != el.qname {
                    return Err(format!("mismatched end tag </{name}> for <{}>", el.qname));
                }
                el.raw = String::from_utf8_lossy(&buf[p..end + 1]).into_owned();
                return Ok(Some((el, end + 1)));
            }
            if starts_with(buf, i, b"<![CDATA[") {
                let Some(end) = find(buf, i, b"]]>") else {
                    return Ok(None);
                };
                el.children
                    .push(Node::Text(String::from_utf8_lossy(&buf[i + 9..end]).into_owned()));
                i = end + 3;
                continue;
            }
            if starts_with(buf, i, b"<!") || starts_with(buf, i, b"<?") {
                if buf.len() - i < 9 {
                    return Ok(None);
                }
                return Err(format!("restricted XML from the server: {:?}", lossy(buf, i)));
            }
            let Some((child, end)) = parse_element(buf, i, &scope, depth + 1)? else {
                return Ok(None);
            };
            el.children.push(Node::Element(child));
            i = end;
        } else {
            let end = buf[i..].iter().position(|&b| b == b'<').map(|o| i + o);
            let Some(end) = end else { return Ok(None) };
            let text = unescape(&String::from_utf8_lossy(&buf[i..end]))?;
            el.children.push(Node::Text(text));
            i = end;
        }
    }
}

fn lossy(buf: &[u8], p: usize) -> String {
    String::from_utf8_lossy(&buf[p..buf.len().min(p + 120)]).into_owned()
}

/// Decode the five predefined entities and character references.
pub fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            return Err(format!("unterminated entity in {s:?}"));
        };
        let ent = &after[..semi];
        match ent {
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "amp" => out.push('&'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            _ => {
                let code = if let Some(hex) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = ent.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    return Err(format!("non-predefined entity &{ent}; from the server"));
                };
                match code.and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => return Err(format!("bad character reference &{ent};")),
                }
            }
        }
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escape text for element content or attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stream_in_pieces() {
        let input = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>\
            <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
            </stream:features><stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
            <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>a &amp; b &#x41;</text></stream:error></stream:stream>";
        let mut p = StreamParser::new();
        let mut events = Vec::new();
        for chunk in input.chunks(7) {
            p.feed(chunk);
            while let Some(ev) = p.next().unwrap() {
                events.push(ev);
            }
        }
        assert_eq!(events.len(), 4);
        let Event::Header(h) = &events[0] else { panic!() };
        assert!(h.is("stream", NS_STREAM));
        let Event::Element(f) = &events[1] else { panic!() };
        assert!(f.is("features", NS_STREAM));
        let tls = f.child("starttls", NS_TLS).unwrap();
        assert!(tls.child("required", NS_TLS).is_some());
        let Event::Element(e) = &events[2] else { panic!() };
        assert!(e.is("error", NS_STREAM));
        assert!(e.child("not-well-formed", NS_STREAMS_ERR).is_some());
        assert_eq!(e.child("text", NS_STREAMS_ERR).unwrap().text(), "a & b A");
        assert_eq!(events[3], Event::StreamEnd);
    }
}
