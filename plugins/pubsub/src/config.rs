//! A node's configuration (XEP-0060 §8.2, the `pubsub#node_config` form) with PEP's
//! defaults (XEP-0163 §5), and publish-options as preconditions (XEP-0060 §7.1.5).

use poolxmpp_sdk::form::{self, field, flag};
use poolxmpp_sdk::{Element, StanzaError};
use serde::{Deserialize, Serialize};

use crate::ns;

/// Who may retrieve a node's items and be notified of them (XEP-0060 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    Open,
    Presence,
    Roster,
    Whitelist,
}

/// When the last item goes to a subscriber without a publish (XEP-0060 §12.20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLast {
    Never,
    OnSub,
    OnSubAndPresence,
}

/// The `type` of notification messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationType {
    Headline,
    Normal,
}

/// One node's configuration. Only the owner publishes to a PEP node (XEP-0163 §2.2), so
/// `publish_model` is always `publishers` and not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    pub access_model: AccessModel,
    /// The owner's roster groups whose members may see the node (access model `roster`).
    #[serde(default)]
    pub roster_groups_allowed: Vec<String>,
    pub max_items: u32,
    pub persist_items: bool,
    pub deliver_notifications: bool,
    pub deliver_payloads: bool,
    pub notify_config: bool,
    pub notify_delete: bool,
    pub notify_retract: bool,
    pub send_last_published_item: SendLast,
    pub notification_type: NotificationType,
    #[serde(default)]
    pub title: String,
    /// The payload's namespace (`pubsub#type`).
    #[serde(default)]
    pub payload_type: String,
}

impl Default for NodeConfig {
    /// PEP's defaults (XEP-0163 §5): presence access, notifications with payloads, the
    /// last item on subscription and on presence; one item kept, as Prosody and ejabberd
    /// keep for PEP nodes (a client wanting more, e.g. bookmarks, asks with
    /// publish-options).
    fn default() -> Self {
        NodeConfig {
            access_model: AccessModel::Presence,
            roster_groups_allowed: Vec::new(),
            max_items: 1,
            persist_items: true,
            deliver_notifications: true,
            deliver_payloads: true,
            notify_config: false,
            notify_delete: true,
            notify_retract: true,
            send_last_published_item: SendLast::OnSubAndPresence,
            notification_type: NotificationType::Headline,
            title: String::new(),
            payload_type: String::new(),
        }
    }
}

impl AccessModel {
    fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }
}

impl SendLast {
    fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }
}

impl NotificationType {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationType::Headline => "headline",
            NotificationType::Normal => "normal",
        }
    }
}

fn with_options(mut f: Element, choices: &[&str]) -> Element {
    for value in choices {
        f.push(form::choice(value, None));
    }
    f
}

/// One field of a submitted form: its `var` and values.
struct Submitted<'a> {
    var: &'a str,
    values: Vec<String>,
}

impl Submitted<'_> {
    fn one(&self) -> &str {
        self.values.first().map(String::as_str).unwrap_or("")
    }

    fn bad(&self, why: &str) -> StanzaError {
        StanzaError::not_acceptable().with_text(format!("{}: {why}", self.var))
    }

    fn boolean(&self) -> Result<bool, StanzaError> {
        match self.one() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(self.bad("not a boolean")),
        }
    }
}

/// The fields of a `jabber:x:data` form of type `submit`, after checking its FORM_TYPE
/// is `form_type` (a form without FORM_TYPE is taken as one).
fn submitted<'a>(form: &'a Element, form_type: &str) -> Result<Vec<Submitted<'a>>, StanzaError> {
    if !form.is("x", ns::DATA) || form.get_attr("type") != Some("submit") {
        return Err(StanzaError::bad_request().with_text("not a submitted data form"));
    }
    let mut fields = Vec::new();
    for (var, values) in form::fields(form) {
        let s = Submitted { var, values };
        if var == "FORM_TYPE" {
            if s.one() != form_type {
                return Err(StanzaError::bad_request().with_text(format!("not a {form_type} form")));
            }
            continue;
        }
        fields.push(s);
    }
    Ok(fields)
}

impl NodeConfig {
    /// The node's configuration as a form (XEP-0060 §8.2.1): `form` for the owner to
    /// fill in, `result` for disco.
    pub fn form(&self, form_type: &str) -> Element {
        let max = self.max_items.to_string();
        let groups: Vec<&str> = self.roster_groups_allowed.iter().map(String::as_str).collect();
        Element::new("x", ns::DATA)
            .attr("type", form_type)
            .child(field("FORM_TYPE", "hidden", "", &[ns::NODE_CONFIG]))
            .child(field(
                "pubsub#title",
                "text-single",
                "A friendly name for the node",
                &[&self.title],
            ))
            .child(with_options(
                field(
                    "pubsub#access_model",
                    "list-single",
                    "Who may subscribe and retrieve items",
                    &[self.access_model.as_str()],
                ),
                &["open", "presence", "roster", "whitelist"],
            ))
            .child(field(
                "pubsub#roster_groups_allowed",
                "list-multi",
                "Roster groups allowed to subscribe",
                &groups,
            ))
            .child(with_options(
                field(
                    "pubsub#publish_model",
                    "list-single",
                    "Who may publish",
                    &["publishers"],
                ),
                &["publishers"],
            ))
            .child(field("pubsub#max_items", "text-single", "Items to keep", &[&max]))
            .child(field(
                "pubsub#persist_items",
                "boolean",
                "Persist items",
                &[flag(self.persist_items)],
            ))
            .child(field(
                "pubsub#deliver_notifications",
                "boolean",
                "Deliver event notifications",
                &[flag(self.deliver_notifications)],
            ))
            .child(field(
                "pubsub#deliver_payloads",
                "boolean",
                "Deliver payloads with event notifications",
                &[flag(self.deliver_payloads)],
            ))
            .child(field(
                "pubsub#notify_config",
                "boolean",
                "Notify subscribers when the configuration changes",
                &[flag(self.notify_config)],
            ))
            .child(field(
                "pubsub#notify_delete",
                "boolean",
                "Notify subscribers when the node is deleted",
                &[flag(self.notify_delete)],
            ))
            .child(field(
                "pubsub#notify_retract",
                "boolean",
                "Notify subscribers when items are removed",
                &[flag(self.notify_retract)],
            ))
            .child(with_options(
                field(
                    "pubsub#send_last_published_item",
                    "list-single",
                    "When to send the last published item",
                    &[self.send_last_published_item.as_str()],
                ),
                &["never", "on_sub", "on_sub_and_presence"],
            ))
            .child(with_options(
                field(
                    "pubsub#notification_type",
                    "list-single",
                    "Message type of notifications",
                    &[self.notification_type.as_str()],
                ),
                &["headline", "normal"],
            ))
            .child(field(
                "pubsub#type",
                "text-single",
                "The payload's namespace",
                &[&self.payload_type],
            ))
    }

    /// This configuration changed by a submitted `pubsub#node_config` form: fields not in
    /// it keep their value; a value the node cannot take is `not-acceptable`; unknown
    /// fields are left alone. `max_items_limit` is what `max` means and the largest
    /// number accepted.
    pub fn submitted(&self, form: &Element, max_items_limit: u32) -> Result<NodeConfig, StanzaError> {
        let mut c = self.clone();
        for f in submitted(form, ns::NODE_CONFIG)? {
            c.apply(&f, max_items_limit)?;
        }
        Ok(c)
    }

    fn apply(&mut self, f: &Submitted, max_items_limit: u32) -> Result<(), StanzaError> {
        match f.var {
            "pubsub#title" => self.title = bounded(f.one(), 256).map_err(|w| f.bad(w))?,
            "pubsub#type" => self.payload_type = bounded(f.one(), 1024).map_err(|w| f.bad(w))?,
            "pubsub#access_model" => {
                self.access_model = match f.one() {
                    "open" => AccessModel::Open,
                    "presence" => AccessModel::Presence,
                    "roster" => AccessModel::Roster,
                    "whitelist" => AccessModel::Whitelist,
                    _ => return Err(f.bad("open, presence, roster or whitelist")),
                }
            }
            "pubsub#roster_groups_allowed" => {
                if f.values.len() > 100 || f.values.iter().any(|g| g.len() > 1024) {
                    return Err(f.bad("at most 100 groups"));
                }
                self.roster_groups_allowed = f.values.clone();
            }
            "pubsub#publish_model" if f.one() != "publishers" => {
                return Err(f.bad("only the owner publishes to a personal node"))
            }
            "pubsub#max_items" => self.max_items = max_items(f.one(), max_items_limit).map_err(|w| f.bad(&w))?,
            "pubsub#persist_items" => self.persist_items = f.boolean()?,
            "pubsub#deliver_notifications" => self.deliver_notifications = f.boolean()?,
            "pubsub#deliver_payloads" => self.deliver_payloads = f.boolean()?,
            "pubsub#notify_config" => self.notify_config = f.boolean()?,
            "pubsub#notify_delete" => self.notify_delete = f.boolean()?,
            "pubsub#notify_retract" => self.notify_retract = f.boolean()?,
            "pubsub#send_last_published_item" => {
                self.send_last_published_item = match f.one() {
                    "never" => SendLast::Never,
                    "on_sub" => SendLast::OnSub,
                    "on_sub_and_presence" => SendLast::OnSubAndPresence,
                    _ => return Err(f.bad("never, on_sub or on_sub_and_presence")),
                }
            }
            "pubsub#notification_type" => {
                self.notification_type = match f.one() {
                    "headline" => NotificationType::Headline,
                    "normal" => NotificationType::Normal,
                    _ => return Err(f.bad("headline or normal")),
                }
            }
            _ => {} // fields of other services' extensions are left alone
        }
        Ok(())
    }

    /// How many items the node keeps: a node that does not persist items keeps the last
    /// one only (for `send_last_published_item`).
    pub fn kept(&self) -> usize {
        if self.persist_items {
            self.max_items as usize
        } else {
            1
        }
    }
}

fn bounded(value: &str, max: usize) -> Result<String, &'static str> {
    if value.len() > max {
        return Err("too long");
    }
    Ok(value.to_string())
}

fn max_items(value: &str, limit: u32) -> Result<u32, String> {
    match value {
        "max" => Ok(limit),
        n => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=limit).contains(n))
            .ok_or_else(|| format!("a number from 1 to {limit}, or max")),
    }
}

/// Publish-options (XEP-0060 §7.1.5): a node being created takes them as its
/// configuration; an existing node must already have every value they name.
pub struct PublishOptions<'a> {
    form: &'a Element,
}

impl<'a> PublishOptions<'a> {
    pub fn of(form: &'a Element) -> PublishOptions<'a> {
        PublishOptions { form }
    }

    /// The configuration of a node created by this publish.
    pub fn configure(&self, defaults: &NodeConfig, max_items_limit: u32) -> Result<NodeConfig, StanzaError> {
        let mut c = defaults.clone();
        for f in submitted(self.form, ns::PUBLISH_OPTIONS)? {
            c.apply(&f, max_items_limit).map_err(|_| precondition_not_met(f.var))?;
        }
        Ok(c)
    }

    /// Whether `current` already is what the options ask for: each field applied to it
    /// must change nothing. `precondition-not-met` names the first that differs.
    pub fn check(&self, current: &NodeConfig, max_items_limit: u32) -> Result<(), StanzaError> {
        for f in submitted(self.form, ns::PUBLISH_OPTIONS)? {
            let mut c = current.clone();
            c.apply(&f, max_items_limit).map_err(|_| precondition_not_met(f.var))?;
            if c != *current {
                return Err(precondition_not_met(f.var));
            }
        }
        Ok(())
    }
}

/// XEP-0060 §7.1.5: `conflict` with `<precondition-not-met/>`.
pub fn precondition_not_met(var: &str) -> StanzaError {
    StanzaError::conflict()
        .with_text(format!("the node's {var} is not the one asked for"))
        .with_application(&Element::new("precondition-not-met", ns::ERRORS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(form_type: &str, fields: &[(&str, &[&str])]) -> Element {
        let mut x =
            Element::new("x", ns::DATA)
                .attr("type", "submit")
                .child(field("FORM_TYPE", "hidden", "", &[form_type]));
        for (var, values) in fields {
            x.push(field(var, "text-single", "", values));
        }
        x
    }

    #[test]
    fn a_submitted_form_changes_what_it_names() {
        let c = NodeConfig::default();
        let f = form(
            ns::NODE_CONFIG,
            &[
                ("pubsub#access_model", &["open"]),
                ("pubsub#max_items", &["max"]),
                ("x-other", &["?"]),
            ],
        );
        let n = c.submitted(&f, 50).unwrap();
        assert_eq!(n.access_model, AccessModel::Open);
        assert_eq!(n.max_items, 50);
        assert_eq!(n.send_last_published_item, c.send_last_published_item);
        for bad in [
            ("pubsub#access_model", "authorize"),
            ("pubsub#max_items", "51"),
            ("pubsub#max_items", "0"),
            ("pubsub#persist_items", "yes"),
            ("pubsub#publish_model", "open"),
        ] {
            let f = form(ns::NODE_CONFIG, &[(bad.0, &[bad.1])]);
            let e = c.submitted(&f, 50).unwrap_err();
            assert_eq!(e.condition, poolxmpp_sdk::Condition::NotAcceptable, "{bad:?}");
        }
        let other = form(ns::PUBLISH_OPTIONS, &[]);
        assert_eq!(
            c.submitted(&other, 50).unwrap_err().condition,
            poolxmpp_sdk::Condition::BadRequest
        );
    }

    #[test]
    fn the_form_reads_back_as_the_same_configuration() {
        let c = NodeConfig {
            access_model: AccessModel::Roster,
            roster_groups_allowed: vec!["Friends".into(), "Work".into()],
            max_items: 7,
            persist_items: false,
            title: "Mood".into(),
            ..NodeConfig::default()
        };
        let mut x = c.form("submit");
        x.set_attr("type", "submit");
        assert_eq!(NodeConfig::default().submitted(&x, 10).unwrap(), c);
    }

    #[test]
    fn publish_options_configure_a_new_node_and_are_preconditions_for_an_existing_one() {
        let f = form(
            ns::PUBLISH_OPTIONS,
            &[
                ("pubsub#persist_items", &["true"]),
                ("pubsub#access_model", &["whitelist"]),
            ],
        );
        let opts = PublishOptions::of(&f);
        let made = opts.configure(&NodeConfig::default(), 10).unwrap();
        assert_eq!(made.access_model, AccessModel::Whitelist);
        assert!(opts.check(&made, 10).is_ok());
        let e = opts.check(&NodeConfig::default(), 10).unwrap_err();
        assert_eq!(e.condition, poolxmpp_sdk::Condition::Conflict);
        assert!(e.application.unwrap().contains("precondition-not-met"));
        let bad = form(ns::PUBLISH_OPTIONS, &[("pubsub#access_model", &["authorize"])]);
        let e = PublishOptions::of(&bad)
            .configure(&NodeConfig::default(), 10)
            .unwrap_err();
        assert!(e.application.unwrap().contains("precondition-not-met"));
    }
}
