//! The character classes of XML 1.0 (Fifth Edition) and Namespaces in XML 1.0 that a
//! well-formed stanza must respect: `Char` for text and attribute values, `NCName` for the
//! prefix and local part of every element and attribute name.

/// XML 1.0 §2.2 `Char`: tab, newline, carriage return and everything from U+0020 except
/// surrogates (which a Rust `char` cannot be) and U+FFFE, U+FFFF.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The first character that is not an XML `Char`, if any.
pub fn first_non_char(s: &str) -> Option<char> {
    // Fast path: printable ASCII and the allowed controls are the common case.
    if s.bytes()
        .all(|b| (0x20..0x80).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return None;
    }
    s.chars().find(|&c| !is_xml_char(c))
}

/// XML 1.0 §2.3 `NameStartChar`, without `:` (Namespaces in XML: names are NCNames).
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 §2.3 `NameChar`, without `:`.
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Namespaces in XML 1.0 §3 `NCName`: a non-empty XML name without a colon.
pub fn is_ncname(s: &str) -> bool {
    // Nearly every name is ASCII: checked byte by byte, without the Unicode ranges.
    if s.is_ascii() {
        let b = s.as_bytes();
        return b.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_name_start_char(c) => chars.all(is_name_char),
        _ => false,
    }
}

/// Split a qualified name (`prefix:local` or `local`) into its parts, if both are NCNames.
pub fn split_qname(qname: &str) -> Option<(Option<&str>, &str)> {
    match qname.split_once(':') {
        Some((p, l)) if is_ncname(p) && is_ncname(l) => Some((Some(p), l)),
        Some(_) => None,
        None if is_ncname(qname) => Some((None, qname)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars() {
        for c in ['\u{0}', '\u{1}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}'] {
            assert!(!is_xml_char(c), "{c:?}");
            assert_eq!(first_non_char(&format!("ab{c}")), Some(c));
        }
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            'é',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
            '\u{10FFFF}',
        ] {
            assert!(is_xml_char(c), "{c:?}");
        }
        assert_eq!(first_non_char("plain ascii\r\n"), None);
    }

    #[test]
    fn names() {
        for ok in ["body", "_x", "a-b.c1", "é", "x·y"] {
            assert!(is_ncname(ok), "{ok}");
        }
        for bad in ["", "1body", "bo=dy", "a:b", "-a", ".a", "a b", "a\u{0}"] {
            assert!(!is_ncname(bad), "{bad}");
        }
        assert_eq!(split_qname("p:x"), Some((Some("p"), "x")));
        assert_eq!(split_qname("x"), Some((None, "x")));
        for bad in ["a:b:c", ":x", "x:", "1:x", "p:1"] {
            assert_eq!(split_qname(bad), None, "{bad}");
        }
    }
}
