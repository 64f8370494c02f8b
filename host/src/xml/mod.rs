//! The owned element tree: what a stanza is once framed.
//!
//! The tree, its namespaces, the XML character rules and the serializer live in the
//! `poolxmpp-xml` crate (`sdk/xml/`), shared with the plugin SDK so host and plugins read
//! and write stanzas the same way; this module re-exports it under the name the host's
//! code has always used. Its string parser (`Element::parse`) is the plugins'; the host
//! frames and re-reads XML with `stream::reader`, under limits.

pub use poolxmpp_xml::*;

/// Namespaces more than one part of the host reads or writes (the stream, its trace).
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_REGISTER: &str = "jabber:iq:register";
