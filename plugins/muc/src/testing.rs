//! What the unit tests of the room's rules share.

use poolxmpp_sdk::{Element, NS_CLIENT};

use crate::ns;

/// A bare join request.
pub fn join() -> Element {
    Element::new("presence", NS_CLIENT).child(Element::new("x", ns::MUC))
}

/// The status codes of a room's presence or message.
pub fn codes(e: &Element) -> Vec<String> {
    e.get_child("x", ns::MUC_USER)
        .into_iter()
        .flat_map(|x| x.elements())
        .filter(|c| c.name == "status")
        .filter_map(|c| c.get_attr("code").map(str::to_string))
        .collect()
}
