//! The plugin runtime behind the core's [`Features`]: claims read from the active set, a
//! plugin's faults and stanza errors translated to [`Refusal`]s, and the filter policy.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use jid::Jid;

use super::manifest::{EventKind, Interest, World};
use super::{types, Fault, PluginHandle, Plugins};
use crate::features::{finish, Answer, BoxFuture, Direction, Done, Event, Feature, Features, Refusal, Verdict};
use crate::stanza::PresenceType;
use crate::store::StoredTimer;
use crate::xml::Element;

impl Feature for PluginHandle {
    fn name(&self) -> &str {
        &self.manifest.name
    }

    fn submit(&self, stanza: &Element) -> Result<Answer, Refusal> {
        self.submit_forwarded(stanza, 0)
    }

    fn submit_waiting<'a>(&'a self, stanza: &'a Element, wait: Duration, done: Done) -> BoxFuture<'a, ()> {
        if let Some((router, key)) = self.keyed_route(stanza) {
            finish(router.route(self, key, stanza, 0), done);
            return Box::pin(std::future::ready(()));
        }
        let then = super::instance::Then::new(move |outcome| done(refusal_of(outcome)));
        Box::pin(self.submit_stanza_then(stanza, wait, then))
    }

    fn submit_forwarded(&self, stanza: &Element, hops: u8) -> Result<Answer, Refusal> {
        match self.keyed_route(stanza) {
            Some((router, key)) => router.route(self, key, stanza, hops),
            None => self.submit_here(stanza),
        }
    }
}

impl PluginHandle {
    /// Queue a stanza for this plugin on this node, whatever its key.
    pub fn submit_here(&self, stanza: &Element) -> Result<Answer, Refusal> {
        Ok(answer(self.submit_stanza(stanza)?))
    }

    /// The owner routing a keyed plugin's stanza takes, with its key; none for a plugin
    /// that is not keyed, for a node without a pool, and for the address itself.
    fn keyed_route(&self, stanza: &Element) -> Option<(&Arc<super::keyed::KeyRouter>, String)> {
        let router = self.keyed.as_ref()?;
        Some((router, super::keyed::key_of(stanza)?))
    }
}

fn answer(reply: super::StanzaReply) -> Answer {
    Box::pin(async move {
        match reply.await {
            Ok(outcome) => refusal_of(outcome),
            Err(_) => Err(Refusal::Unavailable), // unloaded with the call queued
        }
    })
}

/// A stanza call's outcome as the core sees it.
fn refusal_of(outcome: super::instance::StanzaOutcome) -> Result<(), Refusal> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.into()),
        Err(fault) => Err(fault.into()),
    }
}

impl Features for Plugins {
    fn for_address(&self, domain: &str) -> Option<Arc<dyn Feature>> {
        if !self.any_address.load(Relaxed) {
            return None;
        }
        self.active().for_address(domain).map(|p| p.clone() as Arc<dyn Feature>)
    }

    fn for_iq_namespace(&self, ns: &str) -> Option<Arc<dyn Feature>> {
        self.active()
            .for_iq_namespace(ns)
            .map(|p| p.clone() as Arc<dyn Feature>)
    }

    fn addresses(&self) -> Vec<String> {
        self.active().addresses().cloned().collect()
    }

    fn disco_features(&self) -> Vec<String> {
        self.active().disco_features.clone()
    }

    fn account_disco(&self) -> (Vec<(String, String)>, Vec<String>) {
        let active = self.active();
        (active.account_identities.clone(), active.account_features.clone())
    }

    fn for_account_items(&self) -> Option<Arc<dyn Feature>> {
        self.active()
            .account_items
            .as_ref()
            .map(|p| p.clone() as Arc<dyn Feature>)
    }

    fn would_filter(&self, direction: Direction, stanza: &Element, sent_by: Option<&str>) -> bool {
        if !self.any_filter.load(Relaxed) {
            return false;
        }
        let active = self.active();
        let judging = |f: &&Arc<PluginHandle>| sent_by != Some(f.name());
        if active
            .filters
            .iter()
            .filter(judging)
            .any(|f| Self::has_rules(f, direction, stanza))
        {
            return true; // `filter` counts what it skips
        }
        for f in active.filters.iter().filter(judging) {
            f.stats.skipped.add(1);
        }
        false
    }

    fn would_filter_for(&self, user: &str) -> bool {
        if !self.any_filter.load(Relaxed) {
            return false;
        }
        self.active().filters.iter().any(|f| match &f.interest {
            None => true,
            Some(set) => set.has(user),
        })
    }

    fn filter<'a>(
        &'a self,
        direction: Direction,
        stanza: &'a Element,
        sent_by: Option<&'a str>,
    ) -> BoxFuture<'a, Verdict> {
        let active = self.active();
        let wit_direction = match direction {
            Direction::Inbound => types::Direction::Inbound,
            Direction::Outbound => types::Direction::Outbound,
        };
        Box::pin(async move {
            for f in &active.filters {
                if sent_by == Some(f.name()) {
                    continue;
                }
                if !Self::has_rules(f, direction, stanza) {
                    f.stats.skipped.add(1);
                    continue;
                }
                match f.check(direction, wit_direction, stanza).await {
                    Ok(types::Verdict::Allow) => {}
                    Ok(types::Verdict::Drop) => return Verdict::Drop,
                    Ok(types::Verdict::Bounce(err)) => return Verdict::Refuse(err.into()),
                    // A stanza too large for the filter to see must not slip past it.
                    Err(fault @ Fault::TooLarge(_)) => return Verdict::Refuse(fault.into()),
                    // A fail-closed filter (privacy) blocks what it could not judge; the sender
                    // learns only that it was not delivered.
                    Err(fault) if f.manifest.fail_closed => {
                        tracing::warn!(plugin = %f.name(), %fault, "fail-closed filter failed; blocking the stanza");
                        return Verdict::Refuse(Refusal::Unavailable);
                    }
                    // Otherwise a broken filter must not take messaging down with it: log and
                    // let it pass.
                    Err(fault) => tracing::warn!(plugin = %f.name(), %fault, "filter failed; allowing the stanza"),
                }
            }
            Verdict::Pass
        })
    }

    fn interest_changed(&self, plugin: &str, user: &str, has_rules: bool) {
        self.interest.apply(plugin, user, has_rules);
        self.rules_changed(plugin, Some(user));
    }

    fn reload_interest(&self) {
        let Some(store) = self.host_caps().ctx.upgrade().map(|c| c.store.clone()) else {
            return;
        };
        let interest = self.interest.clone();
        let plugins = self.host_caps().plugins.clone();
        tokio::spawn(async move {
            for plugin in interest.plugins() {
                if let Err(e) = interest.load(&store, &plugin).await {
                    tracing::warn!(%plugin, error = %e, "cannot read an interest set again; keeping the one in memory");
                }
                // Changes made while the link was down were not announced: all users.
                if let Some(plugins) = plugins.upgrade() {
                    plugins.rules_changed(&plugin, None);
                }
            }
        });
    }

    fn notify(&self, event: Event) {
        if let Event::NodeLeft(node) = &event {
            if let Some(timers) = self.timers().cloned() {
                let node = node.clone();
                tokio::spawn(async move { timers.adopt(&node).await });
            }
            if let Some(keyed) = self.key_router() {
                keyed.node_left(node);
            }
        }
        let kind = match &event {
            Event::UserOnline { .. } => EventKind::UserOnline,
            Event::UserOffline { .. } => EventKind::UserOffline,
            Event::NodeJoined(_) => EventKind::NodeJoined,
            Event::NodeLeft(_) => EventKind::NodeLeft,
            // Told to the keyed plugin of the key only (whatever its `events`).
            Event::OwnershipGained { key, fence } => {
                if let Some(keyed) = self.key_router() {
                    keyed.gained(key, *fence);
                }
                return;
            }
            Event::Fenced => {
                if let Some(keyed) = self.key_router() {
                    keyed.fenced();
                }
                return;
            }
        };
        let active = self.active();
        let mut told = active
            .by_name
            .values()
            .filter(|p| p.manifest.world.is_feature() && p.manifest.events.contains(&kind))
            .peekable();
        if told.peek().is_none() {
            return;
        }
        let Some(wit) = to_wit(event) else { return };
        for plugin in told {
            plugin.send_event(wit.clone());
        }
    }
}

/// A user or node event in the contract's terms (ownership events are the key router's).
fn to_wit(event: Event) -> Option<types::Event> {
    let user = |jid: String, presence: &Element, features: &[String]| types::UserPresence {
        jid,
        presence: presence.to_xml(),
        features: features.to_vec(),
    };
    Some(match event {
        Event::UserOnline {
            jid,
            presence,
            features,
        } => types::Event::UserOnline(user(jid, &presence, &features)),
        Event::UserOffline {
            jid,
            presence,
            features,
        } => types::Event::UserOffline(user(jid, &presence, &features)),
        Event::NodeJoined(node) => types::Event::NodeJoined(node),
        Event::NodeLeft(node) => types::Event::NodeLeft(node),
        Event::OwnershipGained { .. } | Event::Fenced => return None,
    })
}

impl Plugins {
    /// Tell a feature-filter plugin with a declared interest that a user's rules (none:
    /// every user's) changed elsewhere, so it drops what it cached (`rules-changed`).
    fn rules_changed(&self, plugin: &str, user: Option<&str>) {
        let active = self.active();
        let Some(handle) = active.by_name.get(plugin) else {
            return;
        };
        if handle.manifest.world == super::manifest::World::FeatureFilter
            && handle.manifest.interest == Interest::Declared
        {
            handle.send_event(types::Event::RulesChanged(user.map(str::to_string)));
        }
    }

    /// Whether a filter judges a stanza at this point: always without a declared interest;
    /// with one, when it has rules for the user the point concerns — the sender leaving
    /// (outbound), the recipient arriving (inbound; the sender's own account when there is
    /// no `to`).
    fn has_rules(f: &PluginHandle, direction: Direction, stanza: &Element) -> bool {
        let Some(set) = &f.interest else {
            return true; // no declared interest: judges everything
        };
        match super::runners::concerned(direction, stanza).and_then(super::address::bare_jid) {
            Some(user) => set.has(&user),
            None => true, // what cannot be told apart is judged
        }
    }
}

impl super::timers::Deliver for Plugins {
    fn would_take(&self, plugin: &str) -> bool {
        self.active().by_name.contains_key(plugin)
    }

    fn deliver(&self, timer: &StoredTimer) -> bool {
        let Some(plugin) = self.active().by_name.get(&timer.plugin).cloned() else {
            return false;
        };
        plugin.send_event(types::Event::Timer(types::TimerFired {
            name: timer.name.clone(),
            payload: timer.payload.clone(),
        }));
        true
    }
}

impl Plugins {
    /// May this plugin send `stanza` from `from`? A plugin speaks for its component
    /// domains, and — if it answers IQs on users' behalf — for hosted domains and their
    /// accounts' bare JIDs. A plugin that is a feature and a filter (privacy lists,
    /// blocking) may also send presence notifications (available or unavailable) from a
    /// hosted user's resource: how a contact the user just blocked stops seeing the user
    /// online and one just unblocked sees the user again (XEP-0191 §3.3, §3.4); nothing
    /// else in a resource's name.
    pub fn may_send_as(&self, plugin: &str, from: &Jid, stanza: &Element, hosted: impl Fn(&str) -> bool) -> bool {
        let active = self.active();
        let Some(handle) = active.by_name.get(plugin) else {
            return false;
        };
        let domain = from.domain().as_str();
        if active.for_address(domain).is_some_and(|p| p.name() == plugin) {
            return true;
        }
        if handle.manifest.iq_namespaces.is_empty() || !hosted(domain) {
            return false;
        }
        from.resource().is_none()
            || (handle.manifest.world == World::FeatureFilter
                && stanza.name == "presence"
                && matches!(
                    PresenceType::of(stanza),
                    Some(PresenceType::Available | PresenceType::Unavailable)
                ))
    }
}

impl From<Fault> for Refusal {
    fn from(fault: Fault) -> Refusal {
        match fault {
            Fault::Busy => Refusal::Busy,
            Fault::SenderBlocked => Refusal::SenderBlocked,
            Fault::TooLarge(_) => Refusal::TooLarge,
            Fault::Disabled(_) => Refusal::Unavailable,
            Fault::Trap(_) | Fault::Timeout => Refusal::Failed,
        }
    }
}

impl From<types::StanzaError> for Refusal {
    fn from(err: types::StanzaError) -> Refusal {
        let condition = super::bindings::condition_from_wit(err.condition);
        Refusal::Error {
            error_type: err
                .type_
                .map(super::bindings::error_type_from_wit)
                .unwrap_or(condition.error_type()),
            condition,
            text: err.text,
            application: err.application.as_deref().and_then(application_condition),
        }
    }
}

/// An application-specific condition a feature gave (RFC 6120 §8.3.4): one element in a
/// namespace of its own. Anything else is left out of the reply, with a log line.
fn application_condition(xml: &str) -> Option<Box<Element>> {
    use crate::stanza::NS_STANZAS;
    use crate::xml::NS_CLIENT;
    /// A condition is an element and an attribute or two, not a payload.
    const MAX_BYTES: usize = 4096;
    let parsed = (xml.len() <= MAX_BYTES).then(|| Element::parse(xml).ok()).flatten();
    match parsed {
        Some(e) if !e.ns.is_empty() && e.ns != NS_CLIENT && e.ns != NS_STANZAS => Some(Box::new(e)),
        _ => {
            tracing::warn!(condition = %xml.chars().take(200).collect::<String>(), "a plugin's application-specific condition is not one namespaced element; left out");
            None
        }
    }
}
