//! One stanza to many recipients (a plugin's `router.send-many`): each copy is addressed
//! and delivered by the rules of its kind, as if sent alone, but the copies for another
//! node's sessions are collected and handed over in one batch per node
//! ([`crate::sessions::Peers::forward_many`]), which reads the stanza once there.
//!
//! Messages of type `chat` and `normal` are not batched: each copy goes through
//! [`super::deliver_message`], whose forwards are tracked until the other node confirms
//! them, so that such a message still ends in offline storage if that node dies.

use std::collections::HashMap;
use std::sync::Arc;

use super::rules;
use crate::context::Context;
use crate::sessions::{FanOutTarget, Resource};
use crate::stanza::{Condition, Kind, MessageType};
use crate::xml::Element;

/// The copies of one stanza on their way: local ones sent at once, remote ones collected.
pub struct FanOut {
    kind: Kind,
    /// Copies for each other node, sent by [`FanOut::finish`].
    remote: HashMap<Arc<str>, Vec<FanOutTarget>>,
}

impl FanOut {
    pub fn new(kind: Kind) -> FanOut {
        FanOut {
            kind,
            remote: HashMap::new(),
        }
    }

    /// Deliver the copy `stanza` (its `to` set) for the local account `bare`.
    pub async fn add(&mut self, ctx: &Arc<Context>, bare: &str, resource: Option<&str>, stanza: Element) {
        let message = MessageType::of(&stanza);
        match self.kind {
            Kind::Message if matches!(message, MessageType::Chat | MessageType::Normal) => {
                super::deliver_message(ctx, bare, resource, stanza).await
            }
            Kind::Message => match resource {
                Some(res) => match ctx.sessions.resource(bare, res) {
                    Some(r) => self.send(&r, stanza),
                    None => super::deliver_message(ctx, bare, Some(res), stanza).await,
                },
                None => {
                    let resources = ctx.sessions.resources(bare);
                    match rules::to_bare(message, &super::candidates(&resources)) {
                        rules::ToBare::Deliver(chosen) => {
                            for i in chosen {
                                self.send(&resources[i], stanza.clone());
                            }
                        }
                        // No resource to take it: the account's rules, as for one message.
                        _ => super::deliver_message(ctx, bare, None, stanza).await,
                    }
                }
            },
            Kind::Presence => match resource {
                Some(res) => {
                    if let Some(r) = ctx.sessions.resource(bare, res) {
                        self.send(&r, stanza);
                    }
                }
                // §4.2.3: presence is for the resources that sent initial presence.
                None => {
                    for r in ctx.sessions.resources(bare).iter().filter(|r| r.available()) {
                        self.send(r, stanza.clone());
                    }
                }
            },
            // To a full JID only: the router answers IQs to a bare JID for the account
            // (§8.5.2.1.3) one by one.
            Kind::Iq => match resource.and_then(|res| ctx.sessions.resource(bare, res)) {
                Some(r) => self.send(&r, stanza),
                None => super::bounce(ctx, &stanza, Condition::ServiceUnavailable, None),
            },
        }
    }

    fn send(&mut self, r: &Resource, stanza: Element) {
        match r.node() {
            Some(node) => {
                let to = stanza.get_attr("to").unwrap_or_default().to_string();
                let node: Arc<str> = Arc::from(node);
                self.remote.entry(node).or_default().push(FanOutTarget {
                    bare: r.bare.to_string(),
                    resource: r.resource.clone(),
                    to,
                });
            }
            None => {
                r.send(Arc::new(stanza));
            }
        }
    }

    /// Hand each other node its copies, one batch each, built from `template` (the stanza
    /// without its recipients).
    pub fn finish(self, ctx: &Context, template: &Element) {
        for (node, targets) in self.remote {
            let n = targets.len();
            if !ctx.sessions.forward_many(&node, template, targets) {
                tracing::warn!(%node, copies = n, "a fan-out could not be handed to a node; its copies are lost");
            }
        }
    }
}
