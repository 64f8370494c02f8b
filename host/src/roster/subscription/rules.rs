//! The subscription state machine of RFC 6121 §3 and Appendix A as plain functions: from
//! the roster item as it is (and whether the contact's request is waiting), a subscription
//! stanza gives the item to write and what happens next, in the order the RFC requires.
//! No store, sessions or sockets, so Appendix A has a table test below; the shell in
//! [`super`] runs the transition inside the store's atomic update and then the effects.

use crate::stanza::SubscriptionType;
use crate::store::RosterItem;

/// What happens after the item is written, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Push the written item to the user's interested resources.
    Push,
    /// Forget the contact's waiting request.
    RemovePendingIn,
    /// Keep the contact's request until the user answers it (§3.1.3).
    StorePendingIn,
    /// Unavailable presence from the user's available resources to the contact, which is
    /// losing its subscription to the user (§3.2.2, §3.3.3, §2.5.2).
    UnavailableToContact,
    /// Carry the stanza on to the contact's side.
    Route,
    /// The user's current presence to the contact, now subscribed (§3.1.5, §3.4).
    PresenceToContact,
    /// Deliver the stanza to the user's available resources.
    DeliverToUser,
    /// Answer the contact on the user's behalf with this stanza (§3.1.3, §3.4).
    Reply(SubscriptionType),
}

/// One transition: the item to write (`None`: it stays as it is) and the effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub item: Option<RosterItem>,
    pub effects: Vec<Effect>,
}

impl Step {
    fn new(item: Option<RosterItem>, effects: &[Effect]) -> Step {
        // A push only ever follows a write.
        let effects = effects
            .iter()
            .copied()
            .filter(|e| *e != Effect::Push || item.is_some())
            .collect();
        Step { item, effects }
    }
}

/// The user (`item`'s owner) sends `stanza` to the contact (§3.1.2, §3.1.5, §3.2.2,
/// §3.3.2; Appendix A.2). `pending_in`: the contact's request is waiting — for
/// `unsubscribed`, it was waiting and the shell has withdrawn it already (it goes whatever
/// the item says).
pub fn outbound(item: Option<&RosterItem>, contact: &str, pending_in: bool, stanza: SubscriptionType) -> Step {
    use Effect::*;
    let current = || item.cloned().unwrap_or_else(|| RosterItem::new(contact));
    match stanza {
        SubscriptionType::Subscribe => {
            let changed = (!item.is_some_and(|i| i.subscription.has_to() || i.ask))
                .then(|| RosterItem { ask: true, ..current() });
            Step::new(changed, &[Push, Route])
        }
        SubscriptionType::Subscribed if pending_in => {
            let mut approved = current();
            approved.subscription = approved.subscription.with_from(true);
            approved.approved = false;
            Step::new(Some(approved), &[Push, RemovePendingIn, Route, PresenceToContact])
        }
        SubscriptionType::Subscribed => {
            // No request waiting: a pre-approval (§3.4), unless already given or subscribed.
            let pre_approval = (!item.is_some_and(|i| i.subscription.has_from() || i.approved)).then(|| RosterItem {
                approved: true,
                ..current()
            });
            Step::new(pre_approval, &[Push])
        }
        SubscriptionType::Unsubscribe => {
            let changed = item.filter(|i| i.subscription.has_to() || i.ask).map(|i| {
                let mut i = i.clone();
                i.subscription = i.subscription.with_to(false);
                i.ask = false;
                i
            });
            Step::new(changed, &[Push, Route])
        }
        SubscriptionType::Unsubscribed => {
            let had_from = item.is_some_and(|i| i.subscription.has_from());
            let changed = item.filter(|i| i.subscription.has_from() || i.approved).map(|i| {
                let mut i = i.clone();
                i.subscription = i.subscription.with_from(false);
                i.approved = false;
                i
            });
            // Routed only if it answers a request or ends a subscription: cancelling a
            // pre-approval alone stays on the user's side (Appendix A.2.4, note 1).
            let route = pending_in || had_from;
            let mut effects = vec![Push];
            // While the contact is still subscribed, before it hears of the cancellation.
            if had_from {
                effects.push(UnavailableToContact);
            }
            if route {
                effects.push(Route);
            }
            Step::new(changed, &effects)
        }
    }
}

/// `stanza` from the contact reaches the user, who has an account here (§3.1.3, §3.1.6,
/// §3.2.3, §3.3.3; Appendix A.3). Whatever is delivered to the user comes before the
/// roster push that reflects it. `pending_in`: the contact's request is waiting — for
/// `unsubscribe`, it was waiting and the shell has withdrawn it.
pub fn inbound(item: Option<&RosterItem>, pending_in: bool, stanza: SubscriptionType) -> Step {
    use Effect::*;
    match stanza {
        SubscriptionType::Subscribe => {
            if item.is_some_and(|i| i.subscription.has_from()) {
                // Already subscribed: answer for the user (§3.1.3).
                return Step::new(None, &[Reply(SubscriptionType::Subscribed)]);
            }
            if let Some(pre) = item.filter(|i| i.approved) {
                // Pre-approved (§3.4): subscribed at once, and the contact gets presence.
                let mut i = pre.clone();
                i.subscription = i.subscription.with_from(true);
                i.approved = false;
                return Step::new(Some(i), &[Push, Reply(SubscriptionType::Subscribed), PresenceToContact]);
            }
            if pending_in {
                // Appendix A.3.1 ("None + Pending In", "None + Pending Out/In", "To +
                // Pending In": not delivered, no state change): the request is waiting
                // already, and the user has it, live or at initial presence (§3.1.3).
                return Step::new(None, &[]);
            }
            Step::new(None, &[StorePendingIn, DeliverToUser])
        }
        SubscriptionType::Subscribed => {
            // Only an answer to our own request counts (§3.1.6); otherwise ignored.
            let changed = item.filter(|i| i.ask).map(|i| {
                let mut i = i.clone();
                i.subscription = i.subscription.with_to(true);
                i.ask = false;
                i
            });
            let effects: &[Effect] = if changed.is_some() { &[DeliverToUser, Push] } else { &[] };
            Step::new(changed, effects)
        }
        SubscriptionType::Unsubscribe => {
            let changed = item.filter(|i| i.subscription.has_from()).map(|i| {
                let mut i = i.clone();
                i.subscription = i.subscription.with_from(false);
                i
            });
            let effects: &[Effect] = match (&changed, pending_in) {
                (Some(_), _) => &[DeliverToUser, Push, UnavailableToContact],
                (None, true) => &[DeliverToUser],
                (None, false) => &[],
            };
            Step::new(changed, effects)
        }
        SubscriptionType::Unsubscribed => {
            let changed = item.filter(|i| i.subscription.has_to() || i.ask).map(|i| {
                let mut i = i.clone();
                i.subscription = i.subscription.with_to(false);
                i.ask = false;
                i
            });
            let effects: &[Effect] = if changed.is_some() { &[DeliverToUser, Push] } else { &[] };
            Step::new(changed, effects)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::Subscription;
    use Effect::*;
    use SubscriptionType::*;

    /// The states of Appendix A, written as the RFC names them: the item (for
    /// `contact@example.org`) and whether the contact's request is waiting.
    pub(crate) fn state(name: &str) -> (RosterItem, bool) {
        let (sub, rest) = name.split_once(' ').unwrap_or((name, ""));
        let mut item = RosterItem::new("contact@example.org");
        item.subscription = match sub {
            "None" => Subscription::None,
            "To" => Subscription::To,
            "From" => Subscription::From,
            "Both" => Subscription::Both,
            other => panic!("no state {other}"),
        };
        item.ask = rest.contains("Out");
        (item, rest.contains("In"))
    }

    /// The name of a state, as [`state`] reads it.
    pub(crate) fn name(item: &RosterItem, pending_in: bool) -> String {
        let mut n = match item.subscription {
            Subscription::None => "None",
            Subscription::To => "To",
            Subscription::From => "From",
            Subscription::Both => "Both",
        }
        .to_string();
        match (item.ask, pending_in) {
            (true, true) => n.push_str(" +Out+In"),
            (true, false) => n.push_str(" +Out"),
            (false, true) => n.push_str(" +In"),
            (false, false) => {}
        }
        n
    }

    pub(crate) const STATES: [&str; 9] = [
        "None",
        "None +Out",
        "None +In",
        "None +Out+In",
        "To",
        "To +In",
        "From",
        "From +Out",
        "Both",
    ];

    /// Where the pending request stands after a step's effects.
    fn pending_after(pending_in: bool, stanza: SubscriptionType, direction: &str, effects: &[Effect]) -> bool {
        let withdrawn_by_shell =
            (direction == "out" && stanza == Unsubscribed) || (direction == "in" && stanza == Unsubscribe);
        if withdrawn_by_shell || effects.contains(&RemovePendingIn) {
            false
        } else {
            pending_in || effects.contains(&StorePendingIn)
        }
    }

    fn run(direction: &str, from: &str, stanza: SubscriptionType) -> (String, Vec<Effect>) {
        let (item, pending_in) = state(from);
        let step = match direction {
            "out" => outbound(Some(&item), "contact@example.org", pending_in, stanza),
            _ => inbound(Some(&item), pending_in, stanza),
        };
        let after = step.item.clone().unwrap_or(item);
        (
            name(&after, pending_after(pending_in, stanza, direction, &step.effects)),
            step.effects,
        )
    }

    /// One row of Appendix A: the stanza, the state before, the state after, the effects
    /// in order. The shell's tests (`super::super::tests`) run the same rows end to end.
    pub(crate) type Row = (SubscriptionType, &'static str, &'static str, &'static [Effect]);

    /// Appendix A.2: the user sends each subscription stanza in each state.
    pub(crate) const APPENDIX_A2: &[Row] = &[
        // A.2.1 subscribe
        (Subscribe, "None", "None +Out", &[Push, Route]),
        (Subscribe, "None +Out", "None +Out", &[Route]),
        (Subscribe, "None +In", "None +Out+In", &[Push, Route]),
        (Subscribe, "None +Out+In", "None +Out+In", &[Route]),
        (Subscribe, "To", "To", &[Route]),
        (Subscribe, "To +In", "To +In", &[Route]),
        (Subscribe, "From", "From +Out", &[Push, Route]),
        (Subscribe, "From +Out", "From +Out", &[Route]),
        (Subscribe, "Both", "Both", &[Route]),
        // A.2.2 unsubscribe
        (Unsubscribe, "None", "None", &[Route]),
        (Unsubscribe, "None +Out", "None", &[Push, Route]),
        (Unsubscribe, "None +In", "None +In", &[Route]),
        (Unsubscribe, "None +Out+In", "None +In", &[Push, Route]),
        (Unsubscribe, "To", "None", &[Push, Route]),
        (Unsubscribe, "To +In", "None +In", &[Push, Route]),
        (Unsubscribe, "From", "From", &[Route]),
        (Unsubscribe, "From +Out", "From", &[Push, Route]),
        (Unsubscribe, "Both", "From", &[Push, Route]),
        // A.2.3 subscribed: approves a waiting request; otherwise a pre-approval, which
        // is not routed (§3.4).
        (Subscribed, "None", "None", &[Push]),
        (Subscribed, "None +Out", "None +Out", &[Push]),
        (
            Subscribed,
            "None +In",
            "From",
            &[Push, RemovePendingIn, Route, PresenceToContact],
        ),
        (
            Subscribed,
            "None +Out+In",
            "From +Out",
            &[Push, RemovePendingIn, Route, PresenceToContact],
        ),
        (Subscribed, "To", "To", &[Push]),
        (
            Subscribed,
            "To +In",
            "Both",
            &[Push, RemovePendingIn, Route, PresenceToContact],
        ),
        (Subscribed, "From", "From", &[]),
        (Subscribed, "From +Out", "From +Out", &[]),
        (Subscribed, "Both", "Both", &[]),
        // A.2.4 unsubscribed: refuses a waiting request or cancels the contact's
        // subscription, which first gets the user's unavailable presence.
        (Unsubscribed, "None", "None", &[]),
        (Unsubscribed, "None +Out", "None +Out", &[]),
        (Unsubscribed, "None +In", "None", &[Route]),
        (Unsubscribed, "None +Out+In", "None +Out", &[Route]),
        (Unsubscribed, "To", "To", &[]),
        (Unsubscribed, "To +In", "To", &[Route]),
        (Unsubscribed, "From", "None", &[Push, UnavailableToContact, Route]),
        (
            Unsubscribed,
            "From +Out",
            "None +Out",
            &[Push, UnavailableToContact, Route],
        ),
        (Unsubscribed, "Both", "To", &[Push, UnavailableToContact, Route]),
    ];

    #[test]
    fn appendix_a2_outbound() {
        check("out", APPENDIX_A2);
    }

    /// Appendix A.3: each subscription stanza from the contact reaches the user in each
    /// state.
    pub(crate) const APPENDIX_A3: &[Row] = &[
        // A.3.1 subscribe: kept for the user to answer, not delivered twice while it
        // waits, or answered at once when the contact is already subscribed.
        (Subscribe, "None", "None +In", &[StorePendingIn, DeliverToUser]),
        (Subscribe, "None +Out", "None +Out+In", &[StorePendingIn, DeliverToUser]),
        (Subscribe, "None +In", "None +In", &[]),
        (Subscribe, "None +Out+In", "None +Out+In", &[]),
        (Subscribe, "To", "To +In", &[StorePendingIn, DeliverToUser]),
        (Subscribe, "To +In", "To +In", &[]),
        (Subscribe, "From", "From", &[Reply(Subscribed)]),
        (Subscribe, "From +Out", "From +Out", &[Reply(Subscribed)]),
        (Subscribe, "Both", "Both", &[Reply(Subscribed)]),
        // A.3.2 unsubscribe: the contact no longer wants the user's presence.
        (Unsubscribe, "None", "None", &[]),
        (Unsubscribe, "None +Out", "None +Out", &[]),
        (Unsubscribe, "None +In", "None", &[DeliverToUser]),
        (Unsubscribe, "None +Out+In", "None +Out", &[DeliverToUser]),
        (Unsubscribe, "To", "To", &[]),
        (Unsubscribe, "To +In", "To", &[DeliverToUser]),
        (
            Unsubscribe,
            "From",
            "None",
            &[DeliverToUser, Push, UnavailableToContact],
        ),
        (
            Unsubscribe,
            "From +Out",
            "None +Out",
            &[DeliverToUser, Push, UnavailableToContact],
        ),
        (Unsubscribe, "Both", "To", &[DeliverToUser, Push, UnavailableToContact]),
        // A.3.3 subscribed: only an answer to the user's request counts (§3.1.6:
        // delivered before the push).
        (Subscribed, "None", "None", &[]),
        (Subscribed, "None +Out", "To", &[DeliverToUser, Push]),
        (Subscribed, "None +In", "None +In", &[]),
        (Subscribed, "None +Out+In", "To +In", &[DeliverToUser, Push]),
        (Subscribed, "To", "To", &[]),
        (Subscribed, "To +In", "To +In", &[]),
        (Subscribed, "From", "From", &[]),
        (Subscribed, "From +Out", "Both", &[DeliverToUser, Push]),
        (Subscribed, "Both", "Both", &[]),
        // A.3.4 unsubscribed: the user's subscription (or request) ends (§3.2.3:
        // delivered before the push).
        (Unsubscribed, "None", "None", &[]),
        (Unsubscribed, "None +Out", "None", &[DeliverToUser, Push]),
        (Unsubscribed, "None +In", "None +In", &[]),
        (Unsubscribed, "None +Out+In", "None +In", &[DeliverToUser, Push]),
        (Unsubscribed, "To", "None", &[DeliverToUser, Push]),
        (Unsubscribed, "To +In", "None +In", &[DeliverToUser, Push]),
        (Unsubscribed, "From", "From", &[]),
        (Unsubscribed, "From +Out", "From", &[DeliverToUser, Push]),
        (Unsubscribed, "Both", "From", &[DeliverToUser, Push]),
    ];

    #[test]
    fn appendix_a3_inbound() {
        check("in", APPENDIX_A3);
    }

    fn check(direction: &str, table: &[(SubscriptionType, &str, &str, &[Effect])]) {
        for stanza in SubscriptionType::ALL {
            for from in STATES {
                let row = table.iter().find(|(s, f, _, _)| *s == stanza && *f == from);
                let (_, _, to, effects) = row.unwrap_or_else(|| panic!("no row for {direction} {stanza:?} in {from}"));
                let (got, got_effects) = run(direction, from, stanza);
                assert_eq!(
                    (got.as_str(), got_effects.as_slice()),
                    (*to, *effects),
                    "{direction}bound {} in state {from}",
                    stanza.as_str()
                );
            }
        }
    }

    /// §3.4: a pre-approval makes the contact's later request succeed at once, and the
    /// pre-approval is spent.
    #[test]
    fn a_pre_approved_request_is_answered_for_the_user() {
        let step = outbound(None, "c@x", false, Subscribed);
        let approved = step.item.expect("a pre-approval is written");
        assert!(approved.approved);
        let step = inbound(Some(&approved), false, Subscribe);
        let item = step.item.expect("subscribed at once");
        assert_eq!(item.subscription, Subscription::From);
        assert!(!item.approved);
        assert_eq!(step.effects, [Push, Reply(Subscribed), PresenceToContact]);
        // Unsubscribed cancels a pre-approval without a subscription to end; the contact
        // never knew of it, so nothing is routed (A.2.4, note 1).
        let step = outbound(Some(&approved), "c@x", false, Unsubscribed);
        assert!(!step.item.expect("cancelled").approved);
        assert_eq!(step.effects, [Push]);
    }

    /// Without any item: a request from a stranger is kept; the user's own request
    /// creates the item.
    #[test]
    fn no_item_yet() {
        assert_eq!(inbound(None, false, Subscribe).effects, [StorePendingIn, DeliverToUser]);
        let step = outbound(None, "c@x", false, Subscribe);
        assert!(step.item.expect("created").ask);
        for stanza in [Subscribed, Unsubscribe, Unsubscribed] {
            assert!(inbound(None, false, stanza).item.is_none(), "{stanza:?}");
        }
    }
}
