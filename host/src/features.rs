//! The feature runtime as the RFC 6121 core sees it: who claims a component address or an
//! IQ namespace, what the filters make of a stanza, and handing a stanza over. The core
//! never learns that features are WebAssembly components: `plugins::Plugins` implements
//! [`Features`], and in-process tests use [`NoFeatures`] or a fake. This is what lets the
//! router, delivery and the server IQs sit below the plugin runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use crate::stanza::Condition;
pub use crate::stanza::ErrorType;
use crate::xml::Element;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which side of a local client a filter looks at (DESIGN §2): a stanza leaving its sender,
/// or reaching a local recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Why a feature did not take a stanza; `delivery` turns it into the sender's error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The feature's own stanza error, with an application-specific condition if it gave
    /// one (RFC 6120 §8.3.4).
    Error {
        error_type: ErrorType,
        condition: Condition,
        text: Option<String>,
        application: Option<Box<Element>>,
    },
    /// Its queue is full.
    Busy,
    /// This sender's requests keep failing it, so this sender is refused for a while.
    SenderBlocked,
    /// The stanza is too large to hand to it.
    TooLarge,
    /// Switched off, or unloaded meanwhile.
    Unavailable,
    /// It failed on this stanza (trapped, or ran out of time).
    Failed,
}

/// Stanzas one client session may have handed to features and not yet seen answered.
/// A feature's queue (`[limits] queue` of its manifest) is shared by every sender, so a
/// client that bursts past it would otherwise have the rest refused with
/// `<resource-constraint/>` (and deny the feature to everyone else meanwhile); past this
/// many, the session's read loop waits for its own answers instead, which paces the
/// client through its TCP stream.
pub const FEATURE_CALLS_PER_SESSION: usize = 64;

/// A client session's feature calls in flight (see [`FEATURE_CALLS_PER_SESSION`]).
#[derive(Debug, Clone)]
pub struct FeatureCalls(Arc<Semaphore>);

impl Default for FeatureCalls {
    fn default() -> Self {
        FeatureCalls(Arc::new(Semaphore::new(FEATURE_CALLS_PER_SESSION)))
    }
}

impl FeatureCalls {
    /// Room for one more call, held until its answer; waits while the session has
    /// [`FEATURE_CALLS_PER_SESSION`] unanswered.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.0.clone().acquire_owned().await
    }
}

/// What the filters made of a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Drop it without a word.
    Drop,
    /// Refuse it: the sender gets the error.
    Refuse(Refusal),
}

/// Something around the features that they may react to (the contract's `event`), told
/// by the RFC 6121 core (users) and the pool (nodes). Only features whose manifest asks
/// for an event's kind are told of it.
#[derive(Debug, Clone)]
pub enum Event {
    /// A resource of this node sent its initial presence; `features` are its entity
    /// capabilities (XEP-0115), learnt first when the pool did not know them.
    UserOnline {
        jid: String,
        presence: Arc<Element>,
        features: Arc<[String]>,
    },
    /// An available resource of this node went unavailable, by presence or because its
    /// session ended (then `presence` is the one the server wrote for it).
    UserOffline {
        jid: String,
        presence: Arc<Element>,
        features: Arc<[String]>,
    },
    /// A node joined the pool (its id).
    NodeJoined(String),
    /// A node left the pool, by shutdown or failure (its id).
    NodeLeft(String),
    /// This node became the owner of `key` under the fencing token `fence` (the pool's
    /// ownership: it took a dead node's key over, or claimed a fresh one).
    OwnershipGained { key: String, fence: u64 },
    /// This node was fenced out of its pool: it owns no key any more.
    Fenced,
}

/// A feature's answer to a stanza it was handed: `Ok` once it has dealt with it.
pub type Answer = BoxFuture<'static, Result<(), Refusal>>;

/// What to do with a feature's answer, called once by whoever ran the call (so no task
/// has to wait for it).
pub type Done = Box<dyn FnOnce(Result<(), Refusal>) + Send>;

/// Hand an answer to `done`: at once if it is ready (the call ran in line), else from a
/// task waiting for it.
pub fn finish(submitted: Result<Answer, Refusal>, done: Done) {
    let mut answer = match submitted {
        Ok(answer) => answer,
        Err(refusal) => return done(Err(refusal)),
    };
    let mut ready = std::task::Context::from_waker(std::task::Waker::noop());
    match answer.as_mut().poll(&mut ready) {
        std::task::Poll::Ready(outcome) => done(outcome),
        std::task::Poll::Pending => {
            tokio::spawn(async move { done(answer.await) });
        }
    }
}

/// One feature (a loaded plugin version).
pub trait Feature: Send + Sync {
    fn name(&self) -> &str;
    /// Queue a stanza for it. Queuing is synchronous, so stanzas reach a feature in the
    /// order they were routed; the answer comes later and is never waited for in line.
    fn submit(&self, stanza: &Element) -> Result<Answer, Refusal>;
    /// [`Feature::submit`] for a client's read loop, which may wait: a full queue is waited
    /// on for up to `wait` before the stanza is refused, and the caller may run the call
    /// itself. `done` gets the answer. By default it does not wait.
    fn submit_waiting<'a>(&'a self, stanza: &'a Element, wait: Duration, done: Done) -> BoxFuture<'a, ()> {
        let _ = wait;
        finish(self.submit(stanza), done);
        Box::pin(std::future::ready(()))
    }
    /// [`Feature::submit`] for a stanza another node of the pool forwarded here (a keyed
    /// feature's stanza for a key this node owns), after `hops` forwards. By default the
    /// same as a local one.
    fn submit_forwarded(&self, stanza: &Element, hops: u8) -> Result<Answer, Refusal> {
        let _ = hops;
        self.submit(stanza)
    }
}

/// The features of a node, as one consistent set at a time (plugins come and go).
pub trait Features: Send + Sync {
    /// The feature owning a component domain such as `conference.example.org`.
    fn for_address(&self, domain: &str) -> Option<Arc<dyn Feature>>;
    /// The feature answering IQs whose payload is in this namespace.
    fn for_iq_namespace(&self, ns: &str) -> Option<Arc<dyn Feature>>;
    /// Every component address served, for `disco#items` on a hosted domain.
    fn addresses(&self) -> Vec<String>;
    /// The features' `disco#info` features, sorted, without duplicates.
    fn disco_features(&self) -> Vec<String>;
    /// What the features add to an account's `disco#info` (XEP-0030 on a user's bare
    /// JID): identities as (category, type), e.g. PEP's `pubsub`/`pep` (XEP-0163 §6.1),
    /// and features, each sorted, without duplicates.
    fn account_disco(&self) -> (Vec<(String, String)>, Vec<String>) {
        (Vec::new(), Vec::new())
    }
    /// The feature answering disco#items of accounts and disco#info about one of an
    /// account's nodes (PEP's nodes, XEP-0163 §6.2), if one does.
    fn for_account_items(&self) -> Option<Arc<dyn Feature>> {
        None
    }
    /// Whether some filter may judge this stanza at this point; when none may, the router
    /// skips [`Features::filter`] (and the work of finding where the point runs). Runs on
    /// every routed stanza, twice: cheap, no await.
    fn would_filter(&self, direction: Direction, stanza: &Element, sent_by: Option<&str>) -> bool;
    /// Whether some filter may judge a stanza concerning `user` (a bare JID), at either
    /// point (an interest set covers a user at both): asked before a stanza is built, for
    /// the presence the server sends on a user's behalf (a broadcast's copy per contact),
    /// so a copy is addressed and judged only when some filter has rules for one of its
    /// two ends. Cheap, no await.
    fn would_filter_for(&self, user: &str) -> bool;
    /// Run the filters over a stanza, in order, until one does not let it pass.
    /// `sent_by`: the feature that sent the stanza, if one did; its own filter does not
    /// judge it (it decided the stanza itself, and its instance is busy sending it).
    fn filter<'a>(
        &'a self,
        direction: Direction,
        stanza: &'a Element,
        sent_by: Option<&'a str>,
    ) -> BoxFuture<'a, Verdict>;
    /// Tell the features that asked for it; never waits on them.
    fn notify(&self, event: Event);
    /// Another node of the pool changed a filter's interest set (see `plugins::interest`).
    fn interest_changed(&self, plugin: &str, user: &str, has_rules: bool) {
        let _ = (plugin, user, has_rules);
    }
    /// Read the filters' interest sets from the store again (a pool link came up: what
    /// was announced while it was down is there).
    fn reload_interest(&self) {}
}

/// A node without features: what in-process tests of the core start from.
#[cfg(test)]
pub struct NoFeatures;

#[cfg(test)]
impl Features for NoFeatures {
    fn for_address(&self, _: &str) -> Option<Arc<dyn Feature>> {
        None
    }
    fn for_iq_namespace(&self, _: &str) -> Option<Arc<dyn Feature>> {
        None
    }
    fn addresses(&self) -> Vec<String> {
        Vec::new()
    }
    fn disco_features(&self) -> Vec<String> {
        Vec::new()
    }
    fn would_filter(&self, _: Direction, _: &Element, _: Option<&str>) -> bool {
        false
    }
    fn would_filter_for(&self, _: &str) -> bool {
        false
    }
    fn notify(&self, _: Event) {}
    fn filter<'a>(&'a self, _: Direction, _: &'a Element, _: Option<&'a str>) -> BoxFuture<'a, Verdict> {
        Box::pin(async { Verdict::Pass })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_features_nothing_is_claimed_and_everything_passes() {
        let none = NoFeatures;
        assert!(none.for_address("conference.example.org").is_none());
        assert!(none.for_iq_namespace("vcard-temp").is_none());
        let stanza = Element::new("message", crate::xml::NS_CLIENT);
        assert!(!none.would_filter(Direction::Inbound, &stanza, None));
        assert_eq!(none.filter(Direction::Inbound, &stanza, None).await, Verdict::Pass);
    }
}
