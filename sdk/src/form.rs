//! Building XEP-0004 data forms (room configuration, node configuration, registration):
//! the field and option elements every form-serving plugin writes the same way.
//!
//! ```
//! use poolxmpp_sdk::form;
//! let f = form::field("pubsub#max_items", "text-single", "Items to keep", &["10"]);
//! assert_eq!(f.get_attr("var"), Some("pubsub#max_items"));
//! assert_eq!(form::flag(true), "1");
//! let x = poolxmpp_sdk::Element::new("x", form::NS_DATA).child(f);
//! assert_eq!(form::fields(&x).collect::<Vec<_>>(), [("pubsub#max_items", vec!["10".to_string()])]);
//! ```

use crate::xml::Element;

/// The data forms namespace.
pub const NS_DATA: &str = "jabber:x:data";

/// A `<field/>` of type `kind` with its label and values.
pub fn field(var: &str, kind: &str, label: &str, values: &[&str]) -> Element {
    let mut f = Element::new("field", NS_DATA)
        .attr("var", var)
        .attr("type", kind)
        .attr("label", label);
    for v in values {
        f.push(Element::new("value", NS_DATA).text(*v));
    }
    f
}

/// An `<option/>` of a list field: its value, and a label if it has one.
pub fn choice(value: &str, label: Option<&str>) -> Element {
    let mut o = Element::new("option", NS_DATA);
    if let Some(l) = label {
        o.set_attr("label", l);
    }
    o.child(Element::new("value", NS_DATA).text(value))
}

/// The fields of a form as sent: each `var` with its values, in order (fields without
/// a `var` are left out).
pub fn fields(form: &Element) -> impl Iterator<Item = (&str, Vec<String>)> {
    form.elements().filter(|e| e.name == "field").filter_map(|f| {
        let var = f.get_attr("var")?;
        let values = f
            .elements()
            .filter(|v| v.name == "value")
            .map(|v| v.text_content())
            .collect();
        Some((var, values))
    })
}

/// A boolean field's value as forms write it.
pub fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}
