//! Namespace names, shared rather than copied.
//!
//! Every element carries its resolved namespace. A child without its own `xmlns` shares its
//! parent's string (an `Arc` clone), so a 64 KiB namespace inherited by thousands of children
//! costs 64 KiB once, not once per child (issue 10, item 1). The host's stream reader and the
//! SDK's parser both arrange that sharing; [`Ns::ptr_eq`] is how tests see it.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{Arc, LazyLock};

/// The namespace of `xml:` attributes; bound in every document, never declared otherwise.
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of namespace declarations themselves; nothing may be put in it.
pub const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// Namespaces built by the server's own code all the time: `Ns::new` hands out one shared
/// copy of each instead of allocating per element.
static WELL_KNOWN: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
    [
        "",
        crate::NS_CLIENT,
        crate::NS_STREAMS,
        "urn:ietf:params:xml:ns:xmpp-stanzas",
        "urn:ietf:params:xml:ns:xmpp-streams",
        "jabber:iq:roster",
        "urn:xmpp:delay",
        "urn:xmpp:ping",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        NS_XML,
    ]
    .into_iter()
    .map(Arc::from)
    .collect()
});

/// A namespace name: a shared, immutable string (cloning is a reference count, not a copy)
/// that reads and compares like a `&str`: `ns == "vcard-temp"`, `ns.as_str()`, `&*ns`.
#[derive(Clone)]
pub struct Ns(Arc<str>);

impl Ns {
    /// The namespace `s`, sharing the one copy of a well-known namespace.
    pub fn new(s: &str) -> Ns {
        match WELL_KNOWN.iter().find(|w| ***w == *s) {
            Some(w) => Ns(w.clone()),
            None => Ns(Arc::from(s)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both share one allocation (then they are equal without comparing bytes).
    pub fn ptr_eq(&self, other: &Ns) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The SDK's former name for [`Ns::ptr_eq`].
    #[deprecated(note = "use `ptr_eq`")]
    pub fn shares(&self, other: &Ns) -> bool {
        self.ptr_eq(other)
    }
}

impl Default for Ns {
    fn default() -> Self {
        Ns::new("")
    }
}

impl Deref for Ns {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Ns {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Ns {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq for Ns {
    fn eq(&self, other: &Ns) -> bool {
        self.ptr_eq(other) || *self.0 == *other.0
    }
}

impl Eq for Ns {}

impl Hash for Ns {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (*self.0).hash(state)
    }
}

/// Ordered as the strings are, so namespaces can key a `BTreeMap`.
impl Ord for Ns {
    fn cmp(&self, other: &Ns) -> Ordering {
        (*self.0).cmp(&*other.0)
    }
}

impl PartialOrd for Ns {
    fn partial_cmp(&self, other: &Ns) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<str> for Ns {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Ns {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Ns {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Ns> for str {
    fn eq(&self, other: &Ns) -> bool {
        *self == *other.0
    }
}

impl PartialEq<Ns> for &str {
    fn eq(&self, other: &Ns) -> bool {
        **self == *other.0
    }
}

impl PartialEq<Ns> for String {
    fn eq(&self, other: &Ns) -> bool {
        **self == *other.0
    }
}

impl From<&str> for Ns {
    fn from(s: &str) -> Ns {
        Ns::new(s)
    }
}

impl From<String> for Ns {
    fn from(s: String) -> Ns {
        Ns::new(&s)
    }
}

impl From<&String> for Ns {
    fn from(s: &String) -> Ns {
        Ns::new(s)
    }
}

impl From<Ns> for String {
    fn from(ns: Ns) -> String {
        ns.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_with_strings_and_shares_well_known_names() {
        let a = Ns::new(crate::NS_CLIENT);
        let b = Ns::new("jabber:client");
        assert!(a.ptr_eq(&b));
        assert!(a == crate::NS_CLIENT && "jabber:client" == a && a != "x");
        let c = Ns::new("urn:example");
        assert_eq!(c.clone(), Ns::new("urn:example"));
        assert!(c.clone().ptr_eq(&c));
        assert!(Ns::new("a") < Ns::new("b"));
        assert_eq!(String::from(c), "urn:example");
    }
}
