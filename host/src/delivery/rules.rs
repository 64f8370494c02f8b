//! RFC 6121 §8.5 for messages to a local account, as plain decisions over the account's
//! resources: no sessions, sockets or store, so every rule has a table test below. The
//! router carries a decision out ([`super::deliver_message`]).

use crate::stanza::{Condition, MessageType};

/// One bound resource as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Has sent initial presence and not gone unavailable since.
    pub available: bool,
    pub priority: i8,
}

/// What to do with a message for an account's bare JID (§8.5.2), or for a full JID the
/// rules treat as the bare one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToBare {
    /// Hand it to these resources (indices into the candidates). If none of them can take
    /// it (a queue that is full, a node out of reach), the rules for no resource apply:
    /// [`to_bare`] over no candidates.
    Deliver(Vec<usize>),
    /// Keep it for the account's next available resource (§8.5.2.2.1, XEP-0160).
    Offline,
    /// Drop it without a word.
    Ignore,
    /// Answer the sender with this error.
    Bounce(Condition),
}

/// §8.5.2.1.1 and §8.5.2.2.1. Resources with a negative priority never get a message sent
/// to the bare JID; when they are all there is, the account counts as having no available
/// resource. Of several non-negative resources, "most available" is the highest priority:
/// all resources sharing it get the message (normal, chat); headlines go to every
/// non-negative resource.
pub fn to_bare(message: MessageType, candidates: &[Candidate]) -> ToBare {
    let eligible = |c: &Candidate| c.available && c.priority >= 0;
    let top = candidates.iter().filter(|c| eligible(c)).map(|c| c.priority).max();
    let chosen = |keep: &dyn Fn(&Candidate) -> bool| -> Vec<usize> {
        candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| eligible(c) && keep(c))
            .map(|(i, _)| i)
            .collect()
    };
    match (message, top) {
        (MessageType::Error, _) => ToBare::Ignore,
        (MessageType::Groupchat, _) => ToBare::Bounce(Condition::ServiceUnavailable),
        (MessageType::Headline, Some(_)) => ToBare::Deliver(chosen(&|_| true)),
        (MessageType::Headline, None) => ToBare::Ignore,
        (MessageType::Normal | MessageType::Chat, Some(top)) => ToBare::Deliver(chosen(&|c| c.priority == top)),
        (MessageType::Normal | MessageType::Chat, None) => ToBare::Offline,
    }
}

/// What to do with a message for a full JID whose resource is not bound (or could not take
/// it), §8.5.3.2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsentResource {
    /// A chat message goes on as if sent to the bare JID.
    AsBare,
    Ignore,
    Bounce(Condition),
}

/// §8.5.3.2.1: chat is treated as sent to the bare JID; an error is dropped; normal,
/// groupchat and headline messages are refused with `<service-unavailable/>` (the RFC
/// lets the server drop them or refuse them; a refusal tells the sender it did not land).
pub fn to_absent_resource(message: MessageType) -> AbsentResource {
    match message {
        MessageType::Chat => AbsentResource::AsBare,
        MessageType::Error => AbsentResource::Ignore,
        MessageType::Normal | MessageType::Groupchat | MessageType::Headline => {
            AbsentResource::Bounce(Condition::ServiceUnavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageType::*;

    const ALL: [MessageType; 5] = [Normal, Chat, Groupchat, Headline, Error];

    /// Available resources with these priorities.
    fn available(priorities: &[i8]) -> Vec<Candidate> {
        priorities
            .iter()
            .map(|&priority| Candidate {
                available: true,
                priority,
            })
            .collect()
    }

    /// §8.5.2.1.1 and §8.5.2.2.1, one row per case: message type, the resources'
    /// priorities, what happens.
    #[test]
    fn bare_jid_table() {
        let svc = ToBare::Bounce(Condition::ServiceUnavailable);
        let d = |i: &[usize]| ToBare::Deliver(i.to_vec());
        let table: &[(MessageType, &[i8], ToBare)] = &[
            // No resource at all (§8.5.2.2.1).
            (Normal, &[], ToBare::Offline),
            (Chat, &[], ToBare::Offline),
            (Groupchat, &[], svc.clone()),
            (Headline, &[], ToBare::Ignore),
            (Error, &[], ToBare::Ignore),
            // One resource, positive, zero, negative.
            (Normal, &[1], d(&[0])),
            (Chat, &[0], d(&[0])),
            (Normal, &[-1], ToBare::Offline),
            (Chat, &[-1], ToBare::Offline),
            (Headline, &[1], d(&[0])),
            (Headline, &[-1], ToBare::Ignore),
            (Groupchat, &[1], svc.clone()),
            (Error, &[1], ToBare::Ignore),
            // Several: the highest priority wins, shared ties all get it, negatives never.
            (Normal, &[1, 1, 1], d(&[0, 1, 2])),
            (Chat, &[3, 1, 2], d(&[0])),
            (Chat, &[1, 2, -1, 3], d(&[3])),
            (Normal, &[0, 0, -1, 0], d(&[0, 1, 3])),
            (Chat, &[-1, -1, -1], ToBare::Offline),
            (Normal, &[-5, 0], d(&[1])),
            (Headline, &[3, 1, -1, 0], d(&[0, 1, 3])),
            (Headline, &[-1, -1], ToBare::Ignore),
            (Groupchat, &[5, 5], svc.clone()),
            (Error, &[5, 5], ToBare::Ignore),
        ];
        for (message, priorities, expected) in table {
            assert_eq!(
                &to_bare(*message, &available(priorities)),
                expected,
                "{} to a bare JID with priorities {priorities:?}",
                message.as_str()
            );
        }
    }

    /// A bound resource that has not sent initial presence is not available: it gets
    /// nothing sent to the bare JID (§8.5.2.1: "available resource").
    #[test]
    fn connected_but_unavailable_resources_get_nothing_for_the_bare_jid() {
        let candidates = [
            Candidate {
                available: false,
                priority: 10,
            },
            Candidate {
                available: true,
                priority: 0,
            },
        ];
        assert_eq!(to_bare(Chat, &candidates), ToBare::Deliver(vec![1]));
        assert_eq!(to_bare(Chat, &candidates[..1]), ToBare::Offline);
        assert_eq!(to_bare(Headline, &candidates[..1]), ToBare::Ignore);
    }

    /// §8.5.3.2.1, every message type.
    #[test]
    fn absent_resource_table() {
        for message in ALL {
            let expected = match message {
                Chat => AbsentResource::AsBare,
                Error => AbsentResource::Ignore,
                Normal | Groupchat | Headline => AbsentResource::Bounce(Condition::ServiceUnavailable),
            };
            assert_eq!(to_absent_resource(message), expected, "{}", message.as_str());
        }
    }

    /// What can no longer be delivered after the chosen resources refused it (full queues,
    /// a node out of reach) falls to the no-resource rule of its type: never lost silently
    /// when it is worth keeping.
    #[test]
    fn the_fallback_is_the_no_resource_rule() {
        assert_eq!(to_bare(Chat, &[]), ToBare::Offline);
        assert_eq!(to_bare(Normal, &[]), ToBare::Offline);
        assert_eq!(to_bare(Headline, &[]), ToBare::Ignore);
    }
}
