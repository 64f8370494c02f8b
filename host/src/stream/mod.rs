//! XML stream plumbing shared by every connection: framing with hard limits ([`reader`]),
//! the memory of a parsed stanza ([`tree_budget`]), the write side ([`writer`]), stream-level errors ([`error`]) and the XML trace ([`trace`]).

pub mod acks;
pub mod csi;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod limited;
pub mod linger;
pub mod reader;
pub mod trace;
pub mod tree_budget;
pub mod writer;

pub use error::{StreamError, StreamErrorCondition};
pub use reader::{Limits, ReadError, StreamEvent, StreamHeader, XmlStreamReader};
pub use writer::{Outbound, OutboundTx};
