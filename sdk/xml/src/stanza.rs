//! The stanza-shaped builders that belong to the tree because plugins call them as
//! `Element::…` (an inherent method can only live in the crate that defines the type).

use crate::{Element, NS_CLIENT};

impl Element {
    /// Swap `from` and `to` in place (a missing one stays missing on the other side): the
    /// first step of every reply.
    pub fn swap_addresses(&mut self) {
        let from = self.remove_attr("from");
        let to = self.remove_attr("to");
        if let Some(f) = from {
            self.set_attr("to", f);
        }
        if let Some(t) = to {
            self.set_attr("from", t);
        }
    }

    /// A `<message/>` from `from` to `to` of the given `type` (`chat`, `normal`, ...).
    pub fn message(from: &str, to: &str, kind: &str) -> Element {
        Element::new("message", NS_CLIENT)
            .attr("from", from)
            .attr("to", to)
            .attr("type", kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_what_is_there() {
        let mut m = Element::message("a@b/r", "c@d", "chat");
        m.swap_addresses();
        assert_eq!((m.get_attr("from"), m.get_attr("to")), (Some("c@d"), Some("a@b/r")));
        let mut half = Element::new("iq", NS_CLIENT).attr("from", "a@b");
        half.swap_addresses();
        assert_eq!((half.get_attr("from"), half.get_attr("to")), (None, Some("a@b")));
    }
}
