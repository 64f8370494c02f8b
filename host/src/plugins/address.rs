//! Addresses on the plugin boundary in their normalised form (RFC 7622, as the router
//! resolved them), found without a parse when they are in that form already — nearly
//! always: the server stamps `from`, and clients mostly write canonical JIDs. Every
//! stanza a plugin sees, and both filter points of every routed stanza, need this, and
//! the `jid` crate's PRECIS profiles cost more than the rest of a filter point.

use std::borrow::Cow;

use jid::Jid;

/// An address's normalised bare JID; `None` if it is not a JID.
pub fn bare_jid(address: &str) -> Option<Cow<'_, str>> {
    match plain_bare_end(address) {
        Some(end) => Some(Cow::Borrowed(&address[..end])),
        None => Some(Cow::Owned(Jid::new(address).ok()?.to_bare().to_string())),
    }
}

/// An address in its normalised form; `None` if it is not a JID.
pub fn normalised(address: &str) -> Option<Cow<'_, str>> {
    if is_plain(address) {
        return Some(Cow::Borrowed(address));
    }
    Some(Cow::Owned(Jid::new(address).ok()?.to_string()))
}

/// The most bytes a part of a JID may have (RFC 7622 §3); longer ones take the parse,
/// which refuses them.
const MAX_PART: usize = 1023;

/// Whether a full or bare JID is certainly normalised: a plain bare JID, and a resource
/// of printable ASCII without spaces (which the resource profile leaves unchanged).
fn is_plain(address: &str) -> bool {
    let Some(end) = plain_bare_end(address) else {
        return false;
    };
    match address.get(end + 1..) {
        None => true, // no resource
        Some(resource) => {
            !resource.is_empty() && resource.len() <= MAX_PART && resource.bytes().all(|b| b.is_ascii_graphic())
        }
    }
}

/// Where the bare JID at the start of an address ends (its length, or the index of the
/// `/` before the resource) if it is certainly normalised: lower-case ASCII letters,
/// digits and `.-_` around at most one `@`, neither part empty nor longer than a part
/// may be, the domain neither starting nor ending with a dot. One pass over the bytes;
/// anything else goes through the `jid` crate.
fn plain_bare_end(address: &str) -> Option<usize> {
    let bytes = address.as_bytes();
    let mut at = None;
    let mut end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {}
            b'@' if at.is_none() => at = Some(i),
            b'/' => {
                end = i;
                break;
            }
            _ => return None,
        }
    }
    let domain_start = at.map_or(0, |at| at + 1);
    let domain = &bytes[domain_start..end];
    let local_ok = at.is_none_or(|at| at > 0 && at <= MAX_PART);
    let domain_ok =
        !domain.is_empty() && domain.len() <= MAX_PART && domain.first() != Some(&b'.') && domain.last() != Some(&b'.');
    (local_ok && domain_ok).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_addresses_skip_the_parse_and_they_are_what_the_parse_gives() {
        for plain in [
            "alice@example.org",
            "load12@localhost",
            "example.org",
            "a_b-c@x.y",
            "alice@example.org/phone",
            "alice@example.org/Gajim.x7#Q!",
        ] {
            assert!(is_plain(plain), "{plain}");
            assert_eq!(Jid::new(plain).unwrap().to_string(), plain);
        }
        for other in [
            "Alice@example.org",
            "alice@example.org.",
            "alice@.example.org",
            "@example.org",
            "alice@",
            "a@b@c",
            "ａlice@x",
            "alice@x/",
            "alice@x/with space",
            "alice@x/ｐhone",
        ] {
            assert!(!is_plain(other), "{other}");
        }
        assert_eq!(
            bare_jid("Alice@Example.org/phone").as_deref(),
            Some("alice@example.org")
        );
        assert_eq!(bare_jid("alice@example.org/x").as_deref(), Some("alice@example.org"));
        assert_eq!(
            normalised("ａｌｉｃｅ@LocalHost/ｐhone").as_deref(),
            Some("alice@localhost/phone")
        );
        assert_eq!(normalised("a@b@c"), None);
        assert_eq!(
            bare_jid("alice@example.org/a@b/c").as_deref(),
            Some("alice@example.org")
        );
    }
}
