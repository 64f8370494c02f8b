//! JID helpers on plain strings (RFC 7622: `[node@]domain[/resource]`).
//!
//! The host stamps every `from` and validates every `to` before a plugin sees them, so
//! plugins only need to take addresses apart, not to validate them. Strings keep the
//! boundary types simple (the WIT contract uses strings too).

/// The bare JID (`node@domain` or `domain`): everything before the first `/`.
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

/// The resource, if the JID is a full JID.
pub fn resource(jid: &str) -> Option<&str> {
    jid.split_once('/').map(|(_, r)| r)
}

/// The local part, if any.
pub fn node(jid: &str) -> Option<&str> {
    bare(jid).split_once('@').map(|(n, _)| n)
}

/// The domain part.
pub fn domain(jid: &str) -> &str {
    let b = bare(jid);
    b.split_once('@').map_or(b, |(_, d)| d)
}

/// Whether the JID has no resource.
pub fn is_bare(jid: &str) -> bool {
    !jid.contains('/')
}

/// The bare JID in the form to use as a key. The host hands plugins `to` and `from` already
/// normalised (RFC 7622: nodeprep maps `ａｌｉｃｅ` and `Alice` to `alice`), so this only
/// lower-cases, which is idempotent on those and keeps keys stable for addresses a plugin
/// reads from elsewhere (a stored stanza, a payload). Use it whenever two addresses are
/// compared or one is used in a storage key.
pub fn normalize_bare(jid: &str) -> String {
    bare(jid).to_lowercase()
}

/// Whether two JIDs name the same account (compares normalized bare JIDs).
pub fn same_bare(a: &str, b: &str) -> bool {
    normalize_bare(a) == normalize_bare(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_addresses() {
        assert_eq!(bare("a@b.c/r/x"), "a@b.c");
        assert_eq!(resource("a@b.c/r/x"), Some("r/x"));
        assert_eq!(node("a@b.c/r"), Some("a"));
        assert_eq!(domain("a@b.c/r@s"), "b.c");
        assert_eq!(domain("echo.b.c"), "echo.b.c");
        assert_eq!(node("echo.b.c/r@x"), None);
        assert!(is_bare("a@b"));
        assert!(same_bare("Alice@Localhost/phone", "alice@localhost"));
    }
}
