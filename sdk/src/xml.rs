//! The XML element tree plugins read stanzas with and build replies from.
//!
//! Stanzas cross the plugin boundary as serialized XML. Plugins need to look inside them
//! (an IQ's payload, a message body) and build replies, so the SDK ships one small DOM
//! instead of making every plugin pick a parser. It is the host's own tree, from the
//! `poolxmpp-xml` crate both share: namespaces are resolved when parsing, so code compares
//! `(name, ns)` pairs and never cares which prefix a client chose; attributes are
//! `(namespace, local name)` pairs ([`Attr`], read as `get_attr("type")` or
//! `get_attr("xml:lang")`); and whatever a plugin builds is written namespace-well-formed
//! (invalid names left out, characters XML cannot carry replaced), exactly as the host
//! writes it.
//!
//! What a parsed tree costs is bounded by a small multiple of the input: every element
//! shares the [`Namespace`] string in force instead of copying it. The parser refuses what a
//! strict namespace-aware parser refuses where that is cheap: unbound prefixes,
//! reserved-prefix declarations, one attribute given twice through two prefixes, names that
//! are not XML names and characters outside XML 1.0's `Char`.

pub use poolxmpp_xml::{
    escape, escape_into, escape_text_into, is_ncname, is_xml_char, Attr, Element, Node, Ns, XmlError, NS_CLIENT, NS_XML,
};

/// A namespace URI, shared between the elements it applies to (cloning is a reference
/// count, not a copy). Reads like a `&str`: `ns == "vcard-temp"`, `ns.as_str()`, `&*ns`.
pub type Namespace = Ns;
