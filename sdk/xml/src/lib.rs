//! # poolxmpp-xml
//!
//! The XML element tree the poolxmpp host and its plugin SDK share, so a stanza means the
//! same thing on both sides of the WebAssembly boundary and both write it the same way.
//!
//! Namespaces are resolved at parse time, so code compares `(name, ns)` pairs and never
//! cares which prefix a client chose: element names are local names with a namespace
//! ([`Ns`], shared between a parent and the children that inherit it), attributes are
//! `(namespace, local name)` pairs ([`Attr`]). The tree keeps no prefixes at all, so
//! whatever subtree is serialised on its own ([`Element::write_to`]) declares exactly what
//! it uses and is namespace-well-formed by construction.
//!
//! - [`element`]: [`Element`], [`Node`], [`Attr`] and their accessors and builders.
//! - [`ns`]: the shared namespace string.
//! - [`chars`]: XML 1.0 `Char` and Namespaces in XML `NCName`.
//! - [`write`]: the serializer and escaping.
//! - [`parse`]: one element from a string (the plugin side; the host frames streams with
//!   its own incremental reader under limits).
//! - `stanza`: `Element::swap_addresses` and `Element::message`, the SDK's reply builders.
//!
//! It builds for `wasm32-wasip2`: no async runtime, no operating system.

pub mod chars;
pub mod element;
pub mod ns;
pub mod parse;
mod stanza;
pub mod write;

pub use chars::{first_non_char, is_ncname, is_xml_char, split_qname};
pub use element::{Attr, Element, Node};
pub use ns::{Ns, NS_XML, NS_XMLNS};
pub use parse::XmlError;
pub use write::{escape, escape_into, escape_text_into};

/// Namespace of client-to-server stanzas (RFC 6120 §4.8.3).
pub const NS_CLIENT: &str = "jabber:client";
/// Namespace of the stream root and stream-level elements.
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
