//! Nicknames: which a room accepts, in what form, and when two are the same. XEP-0045
//! leaves nicknames to the PRECIS Nickname profile (RFC 8266), done here by
//! `precis-profiles`: a nickname is enforced (non-ASCII spaces mapped to SPACE, spaces
//! trimmed and collapsed, NFKC: "Ａｌｉｃｅ " becomes "Alice") and the room uses that form,
//! telling the occupant with status 210 when it differs from what was asked; two nicknames
//! are the same if they compare equal (also case-folded), so "alice" cannot sit beside
//! "Alice", nor "Ａlice" pass for either. Code points the profile disallows (controls,
//! unassigned ones, …) are refused with `not-acceptable`.

use poolxmpp_sdk::{Condition, StanzaError};
use precis_profiles::precis_core::profile::PrecisFastInvocation;
use precis_profiles::Nickname;

/// The longest nickname accepted, in bytes (a JID resource's limit).
pub const MAX_BYTES: usize = 1023;

/// `asked` (the resource of an occupant JID, or a registration's nickname) in the form
/// the room uses, or why it cannot be one: none or blank is `jid-malformed` (§7.2.1);
/// one the profile refuses, or too long, `not-acceptable`.
pub fn enforce(asked: &str) -> Result<String, StanzaError> {
    if asked.trim().is_empty() {
        return Err(StanzaError::new(Condition::JidMalformed).with_text("a nickname is required"));
    }
    match Nickname::enforce(asked) {
        Ok(nick) if nick.len() <= MAX_BYTES && !nick.is_empty() => Ok(nick.into_owned()),
        Ok(_) => Err(StanzaError::not_acceptable().with_text("that nickname is too long")),
        Err(e) => Err(StanzaError::not_acceptable().with_text(format!("that nickname is not allowed ({e})"))),
    }
}

/// The form an enforced nickname is compared in (RFC 8266 §2.4: case-folded, then
/// normalised again): equal keys are the same nickname.
pub fn key(enforced: &str) -> String {
    let lower = enforced.to_lowercase();
    Nickname::enforce(lower.as_str()).map_or(lower.clone(), |k| k.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_enforced_and_compared_as_rfc_8266_says() {
        assert_eq!(enforce("  Alice   Smith ").unwrap(), "Alice Smith");
        assert_eq!(
            enforce("Ａｌｉｃｅ").unwrap(),
            "Alice",
            "full-width letters are NFKC-mapped"
        );
        assert_eq!(
            enforce("Alice\u{00A0}Smith").unwrap(),
            "Alice Smith",
            "a non-ASCII space is SPACE"
        );
        assert_eq!(enforce("Ünïcødé ☃").unwrap(), "Ünïcødé ☃", "symbols and letters stay");
        assert_eq!(key("Alice"), key("alice"));
        assert_eq!(key(&enforce("ＡＬＩＣＥ").unwrap()), key("alice"));
        assert_ne!(key("Alice"), key("Alicia"));
    }

    #[test]
    fn blank_and_prohibited_nicknames_are_refused() {
        assert_eq!(enforce("   ").unwrap_err().condition, Condition::JidMalformed);
        for bad in ["bell\u{7}", "nul\u{0}x", "unassigned\u{378}", "tab\there"] {
            assert_eq!(enforce(bad).unwrap_err().condition, Condition::NotAcceptable, "{bad:?}");
        }
        assert_eq!(
            enforce(&"a".repeat(MAX_BYTES + 1)).unwrap_err().condition,
            Condition::NotAcceptable
        );
    }
}
