//! A property test over mutated streams: the stream reader's fuzz target (issue 10, must
//! show 2). Real stanzas (messages, presence with caps, a vCard, prefixes, namespaces,
//! entities, character references) are mutated byte-wise (insert, delete, duplicate, flip)
//! and spliced with hostile fragments (`xmlns:p=''`, `&#1;`, reserved prefixes, deep nesting,
//! long namespaces, many children). For every stream: the reader does not panic; every
//! stanza it accepts stays within the tree budget, re-serialises to XML that an independent
//! strict parser (the `xml` crate, with namespace and `Char` checks of our own on top) accepts
//! on its own, and reads back as an equal tree both with our reader and with the string
//! parser plugins use (`Element::parse_in` of the shared `poolxmpp-xml` crate, which the SDK
//! hands them), so a plugin sees exactly the tree the host routed.
//!
//! Run longer with `PROPTEST_CASES=100000 cargo test -p poolxmpp --lib stream::fuzz --release`
//! (the default, 256 cases, takes a few seconds); a failure prints the shrunk input to paste.

use proptest::prelude::*;

use super::reader::{Limits, ReadError, StreamEvent, XmlStreamReader};
use super::tree_budget::tree_cost;
use crate::xml::{is_xml_char, Element, NS_XML, NS_XMLNS};

const HEADERS: &[&str] = &[
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:h='urn:header' xmlns:c='jabber:client' xml:lang='en'>",
    "<?xml version='1.0' encoding='utf-8'?><s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client' xmlns:c='jabber:client'>",
];

/// The header a serialised stanza is read back under: nothing declared but the defaults.
const PLAIN_HEAD: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

const CORPUS: &[&str] = &[
    "<message to='bob@localhost/r' type='chat' id='m1' xml:lang='en'><body>Hello &amp; welcome &#x263A; &lt;3</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    "<presence><show>away</show><status>out\tto\r\nlunch</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://psi-im.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>",
    "<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Peter Saint-Andre</FN><N><FAMILY>Saint-Andre</FAMILY><GIVEN>Peter</GIVEN></N><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard></iq>",
    "<message to='a@b'><x:x xmlns:x='jabber:x:data' x:type='form' type='submit'><x:field var='a'><x:value>1</x:value></x:field></x:x></message>",
    "<message xmlns:p='urn:p' p:a='1'><body p:b='2' xml:lang='de'>x</body><q:e xmlns:q='urn:q' xmlns='urn:d'><f q:z='3'/><g xmlns=''/></q:e></message>",
    "<message><body><![CDATA[<not> & markup]]> &quot;&apos;&#65;&#x10FFFF;</body></message>",
    "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
    "<message h:x='1' c:y='2'><body h:z='&#x9;&#xA;&#xD;'>header prefixes</body></message>",
    "<c:message xmlns:c='jabber:client' to='x@y'><c:body>prefixed stanza</c:body></c:message>",
    "<message><a><b><c><d><e>deep</e></d></c></b></a></message>",
    "<presence type='subscribe' to='bob@localhost'/>",
];

const HOSTILE: &[&str] = &[
    " xmlns:p=''",
    "&#1;",
    "&#xFFFE;",
    "&#0;",
    "\u{1}",
    "\u{C}",
    "\u{FFFE}",
    "\0",
    " evil:x='1'",
    " Xml:lang='en'",
    " xmlns:xml='urn:x'",
    " xmlns:xml='http://www.w3.org/XML/1998/namespace'",
    " xmlns:xmlns='urn:x'",
    " xmlns:p='http://www.w3.org/XML/1998/namespace'",
    " xmlns:p='http://www.w3.org/2000/xmlns/'",
    " xmlns='http://www.w3.org/2000/xmlns/'",
    "<xml:foo/>",
    "<xmlns:foo/>",
    "<bo=dy/>",
    "<1body/>",
    "<a:b:c xmlns:a='u'/>",
    "<:x/>",
    " a:x='1' b:x='2' xmlns:a='urn:s' xmlns:b='urn:s'",
    " a:x='1' xmlns:a='urn:s' x='2'",
    "]]>",
    "<![CDATA[",
    "<!--",
    "<?pi x?>",
    "<?xml version='1.0'?>",
    "&lt;",
    "&bogus;",
    "'",
    "\"",
    "<",
    ">",
    "/>",
    "</",
    "=",
    ":",
    " xmlns='urn:other'",
    " xmlns=''",
    " p:q='v' xmlns:p='urn:pq'",
];

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, u8),
    Delete(usize),
    Duplicate(usize, usize),
    Flip(usize, u8),
    Splice(usize, usize),
    /// Splice a big fragment: a long namespace, deep nesting or many children.
    Big(usize, u8, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Insert(p, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), 0..HOSTILE.len()).prop_map(|(p, f)| Mutation::Splice(p, f)),
        (any::<usize>(), 0u8..4, 1usize..30_000).prop_map(|(p, k, n)| Mutation::Big(p, k, n)),
    ]
}

fn big_fragment(kind: u8, n: usize) -> String {
    match kind {
        0 => format!("<x xmlns='urn:{}'>{}</x>", "n".repeat(n * 2), "<a/>".repeat(n / 4)),
        1 => "<a>".repeat(n % 80),
        2 => "<a/>".repeat(n),
        _ => format!(
            "<a{}/>",
            (0..n % 100).map(|i| format!(" a{i}='{i}'")).collect::<String>()
        ),
    }
}

fn apply(doc: &mut Vec<u8>, m: &Mutation) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
    match *m {
        Mutation::Insert(p, b) => {
            let i = at(p, doc.len());
            doc.insert(i, b);
        }
        Mutation::Delete(p) if !doc.is_empty() => {
            doc.remove(p % doc.len());
        }
        Mutation::Duplicate(p, n) if !doc.is_empty() => {
            let i = p % doc.len();
            let end = (i + n).min(doc.len());
            let piece = doc[i..end].to_vec();
            doc.splice(end..end, piece);
        }
        Mutation::Flip(p, bit) if !doc.is_empty() => {
            let i = p % doc.len();
            doc[i] ^= 1 << bit;
        }
        Mutation::Splice(p, f) => {
            let i = at(p, doc.len());
            doc.splice(i..i, HOSTILE[f].bytes());
        }
        Mutation::Big(p, kind, n) => {
            let i = at(p, doc.len());
            doc.splice(i..i, big_fragment(kind, n).into_bytes());
        }
        _ => {}
    }
}

fn limits() -> Limits {
    Limits {
        max_stanza_bytes: 128 * 1024,
        ..Limits::default()
    }
    .with_memory_factor(8)
}

async fn read_all(input: &[u8], limits: Limits) -> (Vec<Element>, Option<ReadError>) {
    let mut reader = XmlStreamReader::new(input, limits);
    let mut stanzas = Vec::new();
    loop {
        match reader.next().await {
            Ok(StreamEvent::Stanza(e)) => stanzas.push(e),
            Ok(StreamEvent::End) => return (stanzas, None),
            Ok(_) => {}
            Err(e) => return (stanzas, Some(e)),
        }
    }
}

/// The independent strict parser: `xml` (xml-rs) over the stanza alone under a header
/// declaring only the defaults, plus what it leaves to the application: no prefix bound to
/// the XML or xmlns namespaces but their own, and only XML `Char`s in text and values.
fn oracle(stanza: &str) -> Result<(), String> {
    use xmlrs::reader::{EventReader, XmlEvent};
    let doc = format!("{PLAIN_HEAD}{stanza}</stream:stream>");
    let chars_ok = |s: &str| s.chars().all(is_xml_char);
    for event in EventReader::new(doc.as_bytes()) {
        match event.map_err(|e| e.to_string())? {
            XmlEvent::StartElement {
                attributes, namespace, ..
            } => {
                for (prefix, uri) in namespace.iter() {
                    if (uri == NS_XML) != (prefix == "xml") || (uri == NS_XMLNS) != (prefix == "xmlns") {
                        return Err(format!("prefix {prefix:?} bound to {uri:?}"));
                    }
                    if !prefix.is_empty() && uri.is_empty() {
                        return Err(format!("prefix {prefix:?} bound to no namespace"));
                    }
                }
                if let Some(a) = attributes.iter().find(|a| !chars_ok(&a.value)) {
                    return Err(format!("non-Char in attribute {}", a.name));
                }
            }
            XmlEvent::Characters(t) | XmlEvent::Whitespace(t) | XmlEvent::CData(t) if !chars_ok(&t) => {
                return Err("non-Char in text".into());
            }
            XmlEvent::Comment(_) | XmlEvent::ProcessingInstruction { .. } | XmlEvent::Doctype { .. } => {
                return Err("restricted XML".into());
            }
            XmlEvent::EndDocument => return Ok(()),
            _ => {}
        }
    }
    Err("document did not end".into())
}

fn check_stream(rt: &tokio::runtime::Runtime, input: &[u8]) -> Result<(), TestCaseError> {
    let limits = limits();
    let (stanzas, _) = rt.block_on(read_all(input, limits));
    for stanza in stanzas {
        let cost = tree_cost(&stanza, crate::xml::NS_CLIENT);
        prop_assert!(cost <= limits.max_tree_bytes, "tree of {cost} bytes accepted");
        let out = stanza.to_stream_xml();
        if let Err(e) = oracle(&out) {
            return Err(TestCaseError::fail(format!("strict parser refuses {out:?}: {e}")));
        }
        // Serialising may add a prefix declaration per attribute namespace.
        let reread_limits = Limits {
            max_attributes: limits.max_attributes * 2,
            max_stanza_bytes: out.len() + PLAIN_HEAD.len() + 1,
            ..limits
        };
        let doc = format!("{PLAIN_HEAD}{out}");
        let (again, err) = rt.block_on(read_all(doc.as_bytes(), reread_limits));
        prop_assert_eq!(again.len(), 1, "re-reading {:?}: {:?}", out, err);
        prop_assert_eq!(&again[0], &stanza, "re-read tree differs for {:?}", out);
        let plugins_view = Element::parse_in(&out, crate::xml::NS_CLIENT);
        prop_assert_eq!(
            plugins_view.as_ref(),
            Ok(&stanza),
            "the plugins' parser differs for {:?}",
            out
        );
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_streams(
        header in 0..HEADERS.len(),
        picks in proptest::collection::vec(0..CORPUS.len(), 1..4),
        mutations in proptest::collection::vec(mutation(), 0..6),
        close in any::<bool>(),
    ) {
        let mut body: Vec<u8> = picks.iter().flat_map(|&i| CORPUS[i].bytes()).collect();
        for m in &mutations {
            apply(&mut body, m);
        }
        let mut input = HEADERS[header].as_bytes().to_vec();
        input.extend_from_slice(&body);
        if close {
            input.extend_from_slice(b"</stream:stream>");
        }
        check_stream(&runtime(), &input)?;
    }
}

#[test]
fn the_unmutated_corpus_is_accepted_and_round_trips() {
    let rt = runtime();
    for head in HEADERS {
        let input = format!("{head}{}</stream:stream>", CORPUS.concat());
        let (stanzas, err) = rt.block_on(read_all(input.as_bytes(), limits()));
        if head.contains("urn:header") {
            assert!(err.is_none(), "{err:?}");
            assert_eq!(stanzas.len(), CORPUS.len());
        }
        check_stream(&rt, input.as_bytes()).unwrap();
    }
}

#[test]
fn every_hostile_fragment_in_a_start_tag_is_refused_or_harmless() {
    let rt = runtime();
    for f in HOSTILE {
        let input = format!("{}<message to='a@b'{f}><body>x</body></message>", HEADERS[0]);
        check_stream(&rt, input.as_bytes()).unwrap_or_else(|e| panic!("{f:?}: {e}"));
    }
}
