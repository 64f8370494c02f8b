//! What a parsed stanza costs in memory, counted while it is parsed.
//!
//! The byte limit under the parser ([`super::limited`]) bounds what a client sends; this
//! bounds what the tree built from it holds, which can be far more per input byte (a `<a/>`
//! is 4 bytes on the wire and an [`Element`] of about 90 in memory). Each element, attribute,
//! text run and namespace declaration is charged its struct size plus the bytes of its
//! strings, as it is added; past the budget the stanza is refused with `<policy-violation/>`.
//! Growth slack of the `Vec`s (at most as much again) is not counted.
//!
//! Namespaces are shared in the tree, but the serializer writes one out wherever an
//! element's namespace differs from its parent's, or an attribute needs its prefix declared:
//! those bytes are charged too, so what a stanza costs when it is written out (to every
//! recipient's queue) is bounded by the same budget — `<x xmlns:p='(64 KiB)'><p:a/>…` would
//! otherwise be small in memory and a gigabyte on the wire.

use crate::xml::{Attr, Element, Node};

#[derive(Debug)]
pub struct TreeBudget {
    used: usize,
    max: usize,
}

/// The stanza's tree would exceed its budget.
#[derive(Debug)]
pub struct OverTree;

impl TreeBudget {
    pub fn new(max: usize) -> Self {
        TreeBudget { used: 0, max }
    }

    pub fn reset(&mut self) {
        self.used = 0;
    }

    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    fn charge(&mut self, bytes: usize) -> Result<(), OverTree> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.max {
            Err(OverTree)
        } else {
            Ok(())
        }
    }

    /// An element (its slot in the parent's children) with its name and attributes, and
    /// the namespace declarations its serialization under a parent in `parent_ns` writes.
    pub fn element(&mut self, e: &Element, parent_ns: &str) -> Result<(), OverTree> {
        let attrs: usize = e
            .attrs
            .iter()
            .map(|a| {
                std::mem::size_of::<Attr>() + a.name.len() + a.value.len() + a.ns.as_ref().map_or(0, |ns| ns.len())
            })
            .sum();
        let declared = if *e.ns == *parent_ns { 0 } else { e.ns.len() };
        self.charge(std::mem::size_of::<Node>() + e.name.len() + attrs + declared)
    }

    /// A new text node of `len` bytes, or `len` more bytes appended to one.
    pub fn text(&mut self, len: usize, new_node: bool) -> Result<(), OverTree> {
        self.charge(len + if new_node { std::mem::size_of::<Node>() } else { 0 })
    }

    /// A namespace string newly allocated for a declaration (with its `Arc` counts).
    pub fn namespace(&mut self, len: usize) -> Result<(), OverTree> {
        self.charge(len + 2 * std::mem::size_of::<usize>())
    }
}

/// What an already built tree costs by the same measure (namespaces not counted, since
/// they may be shared); for tests and assertions.
#[cfg(test)]
pub fn tree_cost(e: &Element, parent_ns: &str) -> usize {
    let mut b = TreeBudget::new(usize::MAX);
    let _ = b.element(e, parent_ns);
    for c in &e.children {
        match c {
            Node::Element(child) => b.used += tree_cost(child, &e.ns),
            Node::Text(t) => {
                let _ = b.text(t.len(), true);
            }
        }
    }
    b.used
}
