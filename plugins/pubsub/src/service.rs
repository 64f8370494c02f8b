//! The requests a personal pubsub service answers (XEP-0060 §6–8 as XEP-0163 profiles
//! them), each read once into a [`Request`] and served against storage. What a change
//! notifies is returned as an [`After`], sent once the requester has its answer.

use poolxmpp_sdk::{host, Config, Element, IqType, StanzaError};

use crate::access;
use crate::config::{NodeConfig, PublishOptions};
use crate::notify;
use crate::ns;
use crate::store::{self, ItemRef, Meta};

/// Node names and item ids longer than this are refused.
const MAX_NAME_BYTES: usize = 1024;

/// Payload bytes one retrieval answers with, at most: the newest items that fit (at least
/// one), the rest left out as XEP-0060 §6.5.7 allows, with the count of all in an RSM set.
const MAX_REPLY_BYTES: usize = 256 * 1024;

/// How often a compare-and-swap is retried against concurrent writers before giving up.
const RETRIES: usize = 16;

pub struct Pep {
    max_items: u32,
    max_item_bytes: usize,
    max_nodes: usize,
    /// Bytes of payloads a node keeps, at most (the oldest items go first).
    max_node_bytes: usize,
    /// For generated item ids (started at the clock, so ids differ across reloads).
    ids: u64,
}

/// One request, read from the IQ's payload.
pub enum Request {
    Publish {
        node: String,
        id: Option<String>,
        payload: Element,
        options: Option<Element>,
    },
    Retract {
        node: String,
        ids: Vec<String>,
        notify: bool,
    },
    Items {
        node: String,
        max: Option<usize>,
        ids: Vec<String>,
    },
    Create {
        node: String,
        config: Option<Element>,
    },
    Configure {
        node: String,
        form: Option<Element>,
    },
    Default,
    Delete {
        node: String,
    },
    Purge {
        node: String,
    },
}

/// XEP-0060's error with an application condition in `pubsub#errors`.
fn pubsub_error(e: StanzaError, condition: &str) -> StanzaError {
    e.with_application(&Element::new(condition, ns::ERRORS))
}

fn unsupported(feature: &str) -> StanzaError {
    StanzaError::feature_not_implemented()
        .with_application(&Element::new("unsupported", ns::ERRORS).attr("feature", feature))
}

fn node_of(e: &Element) -> Result<String, StanzaError> {
    match e.get_attr("node") {
        None | Some("") => Err(pubsub_error(
            StanzaError::bad_request().with_text("a personal node needs a name"),
            "nodeid-required",
        )),
        Some(n) if n.len() > MAX_NAME_BYTES => Err(StanzaError::bad_request().with_text("node name too long")),
        Some(n) => Ok(n.to_string()),
    }
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "true"))
}

impl Request {
    pub fn read(type_: IqType, payload: &Element) -> Result<Request, StanzaError> {
        let first = |ns: &str| payload.elements().find(|e| e.ns == ns).cloned();
        let owner = payload.is("pubsub", ns::OWNER);
        if !owner && !payload.is("pubsub", ns::PUBSUB) {
            return Err(StanzaError::service_unavailable());
        }
        let Some(verb) = first(payload.ns.as_str()) else {
            return Err(StanzaError::bad_request().with_text("an empty pubsub request"));
        };
        let form_in = |e: &Element| e.get_child("x", ns::DATA).cloned();
        let set = type_ == IqType::Set;
        Ok(match (owner, set, verb.name.as_str()) {
            (false, true, "publish") => {
                let node = node_of(&verb)?;
                let mut items = verb.elements().filter(|e| e.is("item", ns::PUBSUB));
                let Some(item) = items.next() else {
                    return Err(pubsub_error(StanzaError::bad_request(), "item-required"));
                };
                if items.next().is_some() {
                    return Err(pubsub_error(
                        StanzaError::bad_request().with_text("one item per publish"),
                        "invalid-payload",
                    ));
                }
                let mut payloads = item.elements();
                let content = payloads
                    .next()
                    .cloned()
                    .ok_or_else(|| pubsub_error(StanzaError::bad_request(), "payload-required"))?;
                if payloads.next().is_some() {
                    return Err(pubsub_error(StanzaError::bad_request(), "invalid-payload"));
                }
                let id = item.get_attr("id").filter(|i| !i.is_empty()).map(str::to_string);
                if id.as_ref().is_some_and(|i| i.len() > MAX_NAME_BYTES) {
                    return Err(StanzaError::bad_request().with_text("item id too long"));
                }
                Request::Publish {
                    node,
                    id,
                    payload: content,
                    options: payload.get_child("publish-options", ns::PUBSUB).and_then(form_in),
                }
            }
            (false, true, "retract") => {
                let ids: Vec<String> = verb
                    .elements()
                    .filter(|e| e.is("item", ns::PUBSUB))
                    .filter_map(|e| e.get_attr("id").map(str::to_string))
                    .collect();
                if ids.is_empty() {
                    return Err(pubsub_error(StanzaError::bad_request(), "item-required"));
                }
                Request::Retract {
                    node: node_of(&verb)?,
                    ids,
                    notify: truthy(verb.get_attr("notify")),
                }
            }
            (false, false, "items") => Request::Items {
                node: node_of(&verb)?,
                max: match verb.get_attr("max_items") {
                    None => None,
                    Some(m) => Some(
                        m.parse()
                            .map_err(|_| StanzaError::bad_request().with_text("max_items"))?,
                    ),
                },
                ids: verb
                    .elements()
                    .filter(|e| e.is("item", ns::PUBSUB))
                    .filter_map(|e| e.get_attr("id").map(str::to_string))
                    .collect(),
            },
            (false, true, "create") => Request::Create {
                node: node_of(&verb)?,
                config: payload.get_child("configure", ns::PUBSUB).and_then(form_in),
            },
            (true, _, "configure") => Request::Configure {
                node: node_of(&verb)?,
                form: if set {
                    Some(form_in(&verb).ok_or_else(StanzaError::bad_request)?)
                } else {
                    None
                },
            },
            (true, false, "default") => Request::Default,
            (true, true, "delete") => Request::Delete { node: node_of(&verb)? },
            (true, true, "purge") => Request::Purge { node: node_of(&verb)? },
            (false, _, "subscribe" | "unsubscribe" | "options") => return Err(unsupported("subscribe")),
            (false, false, "subscriptions") => return Err(unsupported("retrieve-subscriptions")),
            (false, false, "affiliations") => return Err(unsupported("retrieve-affiliations")),
            (true, _, "subscriptions") => return Err(unsupported("manage-subscriptions")),
            (true, _, "affiliations") => return Err(unsupported("modify-affiliations")),
            _ => return Err(StanzaError::bad_request().with_text("not a pubsub request this service knows")),
        })
    }
}

/// What a served request leaves to do once its answer is sent: notifications.
#[derive(Default)]
pub struct After {
    events: Vec<(String, NodeConfig, Element)>,
}

impl After {
    fn notify(node: &str, config: &NodeConfig, event: Element) -> After {
        After {
            events: vec![(node.to_string(), config.clone(), event)],
        }
    }

    /// [`After::notify`] when `when`, else nothing.
    fn notify_if(when: bool, node: &str, config: &NodeConfig, event: Element) -> After {
        if when {
            After::notify(node, config, event)
        } else {
            After::default()
        }
    }

    pub fn run(self, owner: &str) {
        for (node, config, event) in self.events {
            notify::broadcast(owner, &node, &config, event);
        }
    }
}

type Served = Result<(Option<Element>, After), StanzaError>;

fn answer(payload: Element) -> Served {
    Ok((Some(payload), After::default()))
}

fn pubsub(child: Element) -> Element {
    Element::new("pubsub", ns::PUBSUB).child(child)
}

fn forbidden_unless_owner(owner: &str, requester: &str) -> Result<(), StanzaError> {
    if owner == requester {
        Ok(())
    } else {
        Err(StanzaError::forbidden().with_text("only the account's owner may do this"))
    }
}

fn missing() -> StanzaError {
    StanzaError::item_not_found().with_text("no such node")
}

fn contended() -> StanzaError {
    StanzaError::resource_constraint().with_text("the node is changing too fast; try again")
}

impl Pep {
    pub fn new(config: &Config) -> Result<Pep, String> {
        let max_items = config.parse("max_items")?.unwrap_or(256u32).max(1);
        Ok(Pep {
            max_items,
            max_item_bytes: config.parse("max_item_bytes")?.unwrap_or(256 * 1024),
            max_nodes: config.parse("max_nodes")?.unwrap_or(128),
            max_node_bytes: config.parse("max_node_bytes")?.unwrap_or(1024 * 1024),
            ids: poolxmpp_sdk::now_ms(),
        })
    }

    fn next_id(&mut self) -> String {
        self.ids += 1;
        format!("{:x}", self.ids)
    }

    /// Serve `request` from `requester` (a bare JID) on `owner`'s service.
    pub fn serve(&mut self, owner: &str, requester: &str, request: Request) -> Served {
        match request {
            Request::Publish {
                node,
                id,
                payload,
                options,
            } => {
                forbidden_unless_owner(owner, requester)?;
                self.publish(owner, &node, id, payload, options.as_ref())
            }
            Request::Retract { node, ids, notify } => {
                forbidden_unless_owner(owner, requester)?;
                retract(owner, &node, &ids, notify)
            }
            Request::Items { node, max, ids } => items(owner, requester, &node, max, &ids),
            Request::Create { node, config } => {
                forbidden_unless_owner(owner, requester)?;
                self.create(owner, &node, config.as_ref())
            }
            Request::Configure { node, form } => {
                forbidden_unless_owner(owner, requester)?;
                self.configure(owner, &node, form.as_ref())
            }
            Request::Default => answer(
                Element::new("pubsub", ns::OWNER)
                    .child(Element::new("default", ns::OWNER).child(NodeConfig::default().form("form"))),
            ),
            Request::Delete { node } => {
                forbidden_unless_owner(owner, requester)?;
                delete(owner, &node, self.max_nodes)
            }
            Request::Purge { node } => {
                forbidden_unless_owner(owner, requester)?;
                purge(owner, &node)
            }
        }
    }

    /// XEP-0060 §7.1 with XEP-0163 §3's auto-create: the item is stored before the
    /// publish is acknowledged; republishing an id replaces its item.
    fn publish(
        &mut self,
        owner: &str,
        node: &str,
        id: Option<String>,
        payload: Element,
        options: Option<&Element>,
    ) -> Served {
        let xml = payload.to_xml();
        if xml.len() > self.max_item_bytes {
            return Err(pubsub_error(
                StanzaError::not_acceptable()
                    .with_text(format!("an item's payload is at most {} bytes", self.max_item_bytes)),
                "payload-too-big",
            ));
        }
        let id = id.unwrap_or_else(|| self.next_id());
        let mut item_written = false;
        for _ in 0..RETRIES {
            let read = store::meta(owner, node)?;
            let mut meta = match (&read, options) {
                (Some(r), Some(o)) => {
                    PublishOptions::of(o).check(&r.meta.config, self.max_items)?;
                    r.meta.clone()
                }
                (Some(r), None) => r.meta.clone(),
                (None, o) => {
                    let config = match o {
                        Some(o) => PublishOptions::of(o).configure(&NodeConfig::default(), self.max_items)?,
                        None => NodeConfig::default(),
                    };
                    store::note_node(owner, node, true, self.max_nodes)?;
                    Meta::new(config)
                }
            };
            if !item_written {
                store::put_item(owner, node, &id, &xml)?;
                item_written = true;
            }
            let trimmed = meta.publish(
                ItemRef {
                    id: id.clone(),
                    published_ms: poolxmpp_sdk::now_ms(),
                    bytes: xml.len(),
                },
                self.max_node_bytes,
            );
            if store::swap_meta(owner, node, read.as_ref(), Some(&meta))? {
                store::forget_items(owner, node, &trimmed);
                let reply = pubsub(
                    Element::new("publish", ns::PUBSUB)
                        .attr("node", node)
                        .child(Element::new("item", ns::PUBSUB).attr("id", id.as_str())),
                );
                let event = notify::items(node, &meta.config, [(id.as_str(), Some(payload))]);
                return Ok((Some(reply), After::notify(node, &meta.config, event)));
            }
        }
        Err(contended())
    }

    /// XEP-0060 §8.1.2–8.1.3: a node made empty, optionally configured.
    fn create(&mut self, owner: &str, node: &str, form: Option<&Element>) -> Served {
        let config = match form {
            Some(f) => NodeConfig::default().submitted(f, self.max_items)?,
            None => NodeConfig::default(),
        };
        if store::meta(owner, node)?.is_some() {
            return Err(StanzaError::conflict().with_text("the node exists"));
        }
        store::note_node(owner, node, true, self.max_nodes)?;
        if !store::swap_meta(owner, node, None, Some(&Meta::new(config)))? {
            return Err(StanzaError::conflict().with_text("the node exists"));
        }
        Ok((None, After::default()))
    }

    /// XEP-0060 §8.2: the form, or a submitted one applied (items beyond a smaller
    /// `max_items` go).
    fn configure(&mut self, owner: &str, node: &str, form: Option<&Element>) -> Served {
        let Some(form) = form else {
            let read = store::meta(owner, node)?.ok_or_else(missing)?;
            return answer(
                Element::new("pubsub", ns::OWNER).child(
                    Element::new("configure", ns::OWNER)
                        .attr("node", node)
                        .child(read.meta.config.form("form")),
                ),
            );
        };
        if form.get_attr("type") == Some("cancel") {
            return Ok((None, After::default()));
        }
        let (_, after) = change_node(owner, node, |stored| {
            let mut meta = stored.clone();
            meta.config = meta.config.submitted(form, self.max_items)?;
            let trimmed = meta.trim(self.max_node_bytes);
            Ok((Some(meta), trimmed))
        })?;
        let config = &after.expect("configured, not deleted").config;
        let event = notify::about("configuration", node);
        Ok((None, After::notify_if(config.notify_config, node, config, event)))
    }
}

/// XEP-0060 §7.2: items removed, their subscribers told when asked for or configured.
fn retract(owner: &str, node: &str, ids: &[String], notify: bool) -> Served {
    let (_, after) = change_node(owner, node, |stored| {
        if let Some(absent) = ids.iter().find(|i| !stored.has(i)) {
            return Err(StanzaError::item_not_found().with_text(format!("no item {absent}")));
        }
        let mut meta = stored.clone();
        meta.items.retain(|i| !ids.contains(&i.id));
        Ok((Some(meta), ids.to_vec()))
    })?;
    let config = &after.expect("retracted from, not deleted").config;
    let event = notify::retracted(node, ids);
    Ok((
        None,
        After::notify_if(notify || config.notify_retract, node, config, event),
    ))
}

/// XEP-0060 §6.5: the node's items (the newest `max`, or those asked for by id), oldest
/// first, if the requester may see them.
fn items(owner: &str, requester: &str, node: &str, max: Option<usize>, ids: &[String]) -> Served {
    let read = store::meta(owner, node)?.ok_or_else(missing)?;
    visible(owner, requester, &read.meta.config)?;
    let listed = &read.meta.items;
    let chosen: Vec<&ItemRef> = if ids.is_empty() {
        let from = listed.len().saturating_sub(max.unwrap_or(listed.len()));
        listed[from..].iter().collect()
    } else {
        listed.iter().filter(|i| ids.contains(&i.id)).collect()
    };
    let total = chosen.len();
    let mut budget = MAX_REPLY_BYTES;
    let mut fitting: Vec<&ItemRef> = Vec::new();
    for i in chosen.into_iter().rev() {
        if !fitting.is_empty() && i.bytes > budget {
            break;
        }
        budget = budget.saturating_sub(i.bytes);
        fitting.push(i);
    }
    fitting.reverse();
    let truncated = fitting.len() < total;
    let mut out = Element::new("items", ns::PUBSUB).attr("node", node);
    for i in fitting {
        let Some(xml) = store::item(owner, node, &i.id)? else {
            continue;
        };
        let mut item = Element::new("item", ns::PUBSUB).attr("id", i.id.as_str());
        match Element::parse(&xml) {
            Ok(p) => item.push(p),
            Err(e) => poolxmpp_sdk::log::warn(&format!("pubsub: {owner} {node} {}: {e}", i.id)),
        }
        out.push(item);
    }
    let mut reply = pubsub(out);
    if truncated {
        reply.push(Element::new("set", ns::RSM).child(Element::new("count", ns::RSM).text(total.to_string())));
    }
    answer(reply)
}

/// XEP-0060 §8.4: the node and its items go; subscribers are told.
fn delete(owner: &str, node: &str, max_nodes: usize) -> Served {
    let (before, _) = change_node(owner, node, |stored| {
        Ok((None, stored.items.iter().map(|i| i.id.clone()).collect()))
    })?;
    store::note_node(owner, node, false, max_nodes)?;
    let config = &before.config;
    let event = notify::about("delete", node);
    Ok((None, After::notify_if(config.notify_delete, node, config, event)))
}

/// XEP-0060 §8.5: every item goes; subscribers are told if the node notifies retractions.
fn purge(owner: &str, node: &str) -> Served {
    let (before, _) = change_node(owner, node, |stored| {
        let mut meta = stored.clone();
        let ids = meta.items.drain(..).map(|i| i.id).collect();
        Ok((Some(meta), ids))
    })?;
    let config = &before.config;
    let event = notify::about("purge", node);
    Ok((None, After::notify_if(config.notify_retract, node, config, event)))
}

/// Change an existing node by compare-and-swap, retried against concurrent writers:
/// `change` gets the node as stored and returns it as it is to be (none: deleted) with
/// the ids of the items it drops, whose records go once the swap succeeded. Returns the
/// node before and after.
fn change_node(
    owner: &str,
    node: &str,
    mut change: impl FnMut(&Meta) -> Result<(Option<Meta>, Vec<String>), StanzaError>,
) -> Result<(Meta, Option<Meta>), StanzaError> {
    for _ in 0..RETRIES {
        let read = store::meta(owner, node)?.ok_or_else(missing)?;
        let (after, dropped) = change(&read.meta)?;
        if store::swap_meta(owner, node, Some(&read), after.as_ref())? {
            store::forget_items(owner, node, &dropped);
            return Ok((read.meta, after));
        }
    }
    Err(contended())
}

/// Whether `requester` may see `owner`'s node with this configuration.
fn visible(owner: &str, requester: &str, config: &NodeConfig) -> Result<(), StanzaError> {
    if owner == requester {
        return Ok(());
    }
    let item = host::roster_item(owner, requester);
    access::contact_may_see(config, item.as_ref()).map_err(access::Denied::error)
}

/// Service discovery on a personal service (XEP-0060 §5, XEP-0163 §6.2): disco#items
/// without a node lists the nodes the requester may see, with a node the node's item ids;
/// disco#info about a node describes it (`item-not-found` for one the requester may not
/// see, so hidden nodes stay hidden).
pub fn disco(owner: &str, requester: &str, query: &Element) -> Result<Element, StanzaError> {
    let node = query.get_attr("node");
    let mut out = Element::new("query", query.ns.as_str());
    if let Some(n) = node {
        out.set_attr("node", n);
    }
    match (query.ns == ns::DISCO_ITEMS, node) {
        (true, None) => {
            for name in store::nodes(owner)? {
                let Some(read) = store::meta(owner, &name)? else {
                    continue;
                };
                if visible(owner, requester, &read.meta.config).is_err() {
                    continue;
                }
                let mut item = Element::new("item", ns::DISCO_ITEMS)
                    .attr("jid", owner)
                    .attr("node", name.as_str());
                if !read.meta.config.title.is_empty() {
                    item.set_attr("name", read.meta.config.title.as_str());
                }
                out.push(item);
            }
        }
        (items, Some(n)) => {
            let read = store::meta(owner, n)?.ok_or_else(missing)?;
            visible(owner, requester, &read.meta.config).map_err(|_| missing())?;
            if items {
                for i in &read.meta.items {
                    out.push(
                        Element::new("item", ns::DISCO_ITEMS)
                            .attr("jid", owner)
                            .attr("name", i.id.as_str()),
                    );
                }
            } else {
                out.push(
                    Element::new("identity", ns::DISCO_INFO)
                        .attr("category", "pubsub")
                        .attr("type", "leaf"),
                );
                out.push(Element::new("feature", ns::DISCO_INFO).attr("var", ns::PUBSUB));
            }
        }
        (false, None) => return Err(StanzaError::service_unavailable()),
    }
    Ok(out)
}
