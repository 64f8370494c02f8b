//! XEP-0115 §5: the verification string of a disco#info answer and its hash, so the
//! server believes a `ver` only when the answer it got hashes to it (§5.4).

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::xml::Element;

pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DATA: &str = "jabber:x:data";

/// What a verified answer says: its features, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub features: Vec<String>,
}

/// Why an answer does not prove its `ver`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("the hash {0} is not one this server checks")]
    UnknownHash(String),
    #[error("a duplicate identity, feature or form type")]
    Duplicate,
    #[error("a FORM_TYPE that is not one hidden field with one value")]
    BadFormType,
    #[error("it hashes to {0}")]
    Mismatch(String),
}

/// Check a disco#info `<query/>` against `hash` and `ver` from a presence's `<c/>`.
pub fn verify(query: &Element, hash: &str, ver: &str) -> Result<Verified, Unverified> {
    if !hash.eq_ignore_ascii_case("sha-1") {
        return Err(Unverified::UnknownHash(hash.to_string()));
    }
    let (s, features) = verification_string(query)?;
    let digest = Sha1::digest(s.as_bytes());
    let got = base64::engine::general_purpose::STANDARD.encode(digest);
    if got != ver {
        return Err(Unverified::Mismatch(got));
    }
    Ok(Verified { features })
}

/// §5.1, steps 1–8: identities, then features, then extended forms, each sorted.
fn verification_string(query: &Element) -> Result<(String, Vec<String>), Unverified> {
    let attr = |e: &Element, n: &str| e.get_attr(n).unwrap_or_default().to_string();
    let mut identities: Vec<(String, String, String, String)> = query
        .elements()
        .filter(|e| e.is("identity", NS_DISCO_INFO))
        .map(|e| {
            (
                attr(e, "category"),
                attr(e, "type"),
                attr(e, "xml:lang"),
                attr(e, "name"),
            )
        })
        .collect();
    identities.sort();
    if identities.windows(2).any(|w| w[0] == w[1]) {
        return Err(Unverified::Duplicate);
    }
    let mut features: Vec<String> = query
        .elements()
        .filter(|e| e.is("feature", NS_DISCO_INFO))
        .map(|e| attr(e, "var"))
        .collect();
    features.sort();
    if features.windows(2).any(|w| w[0] == w[1]) {
        return Err(Unverified::Duplicate);
    }
    let mut s = String::new();
    for (category, kind, lang, name) in &identities {
        s.push_str(&format!("{category}/{kind}/{lang}/{name}<"));
    }
    for f in &features {
        s.push_str(f);
        s.push('<');
    }
    let mut forms = Vec::new();
    for form in query.elements().filter(|e| e.is("x", NS_DATA)) {
        let fields: Vec<&Element> = form.elements().filter(|e| e.is("field", NS_DATA)).collect();
        let form_types: Vec<&&Element> = fields
            .iter()
            .filter(|f| f.get_attr("var") == Some("FORM_TYPE"))
            .collect();
        let form_type = match form_types.as_slice() {
            [] => continue, // forms without FORM_TYPE are left out (§5.1)
            [f] if f.get_attr("type") == Some("hidden") => match values(f).as_slice() {
                [v] => v.clone(),
                _ => return Err(Unverified::BadFormType),
            },
            _ => return Err(Unverified::BadFormType),
        };
        let mut rest: Vec<(String, Vec<String>)> = fields
            .iter()
            .filter(|f| f.get_attr("var") != Some("FORM_TYPE"))
            .map(|f| {
                let mut v = values(f);
                v.sort();
                (attr(f, "var"), v)
            })
            .collect();
        rest.sort();
        forms.push((form_type, rest));
    }
    forms.sort();
    if forms.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(Unverified::Duplicate);
    }
    for (form_type, fields) in forms {
        s.push_str(&form_type);
        s.push('<');
        for (var, vals) in fields {
            s.push_str(&var);
            s.push('<');
            for v in vals {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    Ok((s, features))
}

fn values(field: &Element) -> Vec<String> {
    field
        .elements()
        .filter(|e| e.is("value", NS_DATA))
        .map(Element::text_content)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(xml: &str) -> Element {
        Element::parse(xml).unwrap()
    }

    #[test]
    fn the_simple_example_of_xep_0115() {
        let q = query(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' name='Exodus 0.9.1' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/></query>",
        );
        let v = verify(&q, "sha-1", "QgayPKawpkPSDYmwT/WM94uAlu0=").unwrap();
        assert_eq!(v.features.len(), 4);
        assert!(matches!(verify(&q, "sha-1", "wrong="), Err(Unverified::Mismatch(_))));
        assert!(matches!(verify(&q, "md5", "x"), Err(Unverified::UnknownHash(_))));
    }

    #[test]
    fn the_complex_example_with_a_form() {
        let q = query(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
             <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/>\
             <x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
             <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
             <field var='os'><value>Mac</value></field>\
             <field var='os_version'><value>10.5.1</value></field>\
             <field var='software'><value>Psi</value></field>\
             <field var='software_version'><value>0.11</value></field></x></query>",
        );
        verify(&q, "sha-1", "q07IKJEyjvHSyhy//CH0CxmKi8w=").unwrap();
    }

    #[test]
    fn duplicates_are_refused() {
        let q = query(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <feature var='a'/><feature var='a'/></query>",
        );
        assert_eq!(verify(&q, "sha-1", "x"), Err(Unverified::Duplicate));
    }
}
