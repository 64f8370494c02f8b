//! JIDs as privacy items name them: parsed, checked and normalised (RFC 7622 in the
//! small: local and domain lower-cased, the resource kept exactly).
//!
//! The SDK's `jid` helpers take apart addresses the host already validated; values in a
//! client's privacy list or block request are not, so this module checks them.

use std::fmt;

/// Characters RFC 7622 §3.3.1 forbids in a localpart.
const LOCAL_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];
/// Longest part, in bytes (RFC 7622 §3.2–3.4).
const MAX_PART: usize = 1023;

/// A JID taken apart: `[node@]domain[/resource]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jid {
    pub node: Option<String>,
    pub domain: String,
    pub resource: Option<String>,
}

impl Jid {
    /// A JID from a client, checked; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Jid> {
        let (bare, resource) = match s.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (s, None),
        };
        let (node, domain) = match bare.split_once('@') {
            Some((n, d)) => (Some(n), d),
            None => (None, bare),
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        let bad_text = |p: &str| p.is_empty() || p.len() > MAX_PART || p.chars().any(|c| c.is_control());
        if bad_text(domain)
            || domain.contains('@')
            || domain.chars().any(char::is_whitespace)
            || domain.starts_with('.')
            || domain.contains("..")
        {
            return None;
        }
        if let Some(n) = node {
            if bad_text(n) || n.chars().any(|c| c.is_whitespace() || LOCAL_FORBIDDEN.contains(&c)) {
                return None;
            }
        }
        if let Some(r) = resource {
            if bad_text(r) {
                return None;
            }
        }
        Some(Jid {
            node: node.map(str::to_lowercase),
            domain: domain.to_lowercase(),
            resource: resource.map(str::to_string),
        })
    }

    /// A JID the host stamped (already valid): taken apart without checks (it is judged
    /// on every stanza a filter point asks about).
    pub fn of_host(s: &str) -> Jid {
        let (node, domain, resource) = parts(s);
        Jid {
            node: node.map(str::to_lowercase),
            domain: domain.to_lowercase(),
            resource: resource.map(str::to_string),
        }
    }

    /// [`Jid::covers`] for an item's value as stored (already normalised by
    /// [`Jid::parse`]), without building a `Jid` for it.
    pub fn stored_covers(value: &str, other: &Jid) -> bool {
        let (node, domain, resource) = parts(value);
        if domain != other.domain {
            return false;
        }
        match (node, resource) {
            (Some(n), Some(r)) => other.node.as_deref() == Some(n) && other.resource.as_deref() == Some(r),
            (Some(n), None) => other.node.as_deref() == Some(n),
            (None, Some(r)) => other.node.is_none() && other.resource.as_deref() == Some(r),
            (None, None) => true,
        }
    }

    /// `node@domain` or `domain`.
    pub fn bare(&self) -> String {
        match &self.node {
            Some(n) => format!("{n}@{}", self.domain),
            None => self.domain.clone(),
        }
    }

    /// Whether an item naming `self` covers `other` (XEP-0016 §2.1): a full JID only
    /// itself; `node@domain` any of its resources; `domain/resource` only itself;
    /// `domain` the domain, every account at it and every resource of it.
    pub fn covers(&self, other: &Jid) -> bool {
        if self.domain != other.domain {
            return false;
        }
        match (&self.node, &self.resource) {
            (Some(_), Some(_)) => self == other,
            (Some(n), None) => other.node.as_ref() == Some(n),
            (None, Some(r)) => other.node.is_none() && other.resource.as_ref() == Some(r),
            (None, None) => true,
        }
    }
}

/// `[node@]domain[/resource]` split, borrowing.
fn parts(s: &str) -> (Option<&str>, &str, Option<&str>) {
    let (bare, resource) = match s.split_once('/') {
        Some((b, r)) => (b, Some(r)),
        None => (s, None),
    };
    match bare.split_once('@') {
        Some((n, d)) => (Some(n), d, resource),
        None => (None, bare, resource),
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.bare())?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let j = Jid::parse("Bob@Example.COM/Phone").unwrap();
        assert_eq!(j.to_string(), "bob@example.com/Phone");
        assert_eq!(j.bare(), "bob@example.com");
        assert_eq!(Jid::parse("example.com.").unwrap().to_string(), "example.com");
        assert_eq!(Jid::parse("a.b/r@x").unwrap().resource.as_deref(), Some("r@x"));
        for bad in [
            "", "@x", "a@", "a@b/", "a b@c", "a@b@c", "a\"@b", "a@b c", ".x", "a@x..y",
        ] {
            assert!(Jid::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn covers_as_xep_0016_says() {
        let j = |s| Jid::parse(s).unwrap();
        assert!(j("a@d/r").covers(&j("a@d/r")));
        assert!(!j("a@d/r").covers(&j("a@d/s")));
        assert!(!j("a@d/r").covers(&j("a@d")));
        assert!(j("a@d").covers(&j("a@d/x")));
        assert!(j("a@d").covers(&j("a@d")));
        assert!(!j("a@d").covers(&j("b@d")));
        assert!(j("d/r").covers(&j("d/r")));
        assert!(!j("d/r").covers(&j("a@d/r")));
        assert!(!j("d/r").covers(&j("d")));
        assert!(j("d").covers(&j("d")));
        assert!(j("d").covers(&j("a@d/x")));
        for (item, other) in [
            ("a@d/r", "a@d/r"),
            ("a@d/r", "a@d/s"),
            ("a@d", "a@d/x"),
            ("a@d", "b@d"),
            ("d/r", "d/r"),
            ("d/r", "a@d/r"),
            ("d", "a@d/x"),
            ("d", "e"),
        ] {
            assert_eq!(
                Jid::stored_covers(item, &j(other)),
                j(item).covers(&j(other)),
                "{item} / {other}"
            );
        }
        assert!(j("d").covers(&j("d/x")));
        assert!(!j("d").covers(&j("a@e")));
        assert!(!j("d").covers(&j("a@sub.d")));
    }
}
