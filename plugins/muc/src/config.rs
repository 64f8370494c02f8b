//! A room's configuration (XEP-0045 §10.2) and the `muc#roomconfig` data form (XEP-0004)
//! that shows and changes it: every standard field, typed, with the rules a submission must
//! meet.

use poolxmpp_sdk::form::{self, field, flag};
use poolxmpp_sdk::{Element, StanzaError};
use serde::{Deserialize, Serialize};

use crate::ns;

const FORM_TYPE: &str = "http://jabber.org/protocol/muc#roomconfig";

/// The most occupants a room may be configured for.
pub const MAX_USERS: usize = 1_000;

/// Who may see occupants' real JIDs (`muc#roomconfig_whois`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Whois {
    /// Semi-anonymous: moderators only.
    Moderators,
    /// Non-anonymous: every occupant.
    Anyone,
}

/// Who may send private messages through the room (`muc#roomconfig_allowpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowPm {
    Anyone,
    Participants,
    Moderators,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub name: String,
    pub description: String,
    pub language: String,
    /// A persistent room stays when its last occupant leaves (§10.1.3); a temporary one ends.
    pub persistent: bool,
    /// Listed in the service's disco#items.
    pub public: bool,
    pub members_only: bool,
    /// Only occupants with voice may speak; newcomers without affiliation are visitors.
    pub moderated: bool,
    /// The room's password, if it is password-protected.
    pub password: Option<String>,
    pub max_users: usize,
    pub whois: Whois,
    /// Whether participants (not only moderators) may change the subject.
    pub change_subject: bool,
    /// Whether participants may invite others (in a members-only room, making them members).
    pub allow_invites: bool,
    pub allow_pm: AllowPm,
    /// Whether any occupant may ask for the member list (§9.5).
    pub get_member_list: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            name: String::new(),
            description: String::new(),
            language: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: None,
            max_users: MAX_USERS,
            whois: Whois::Moderators,
            change_subject: false,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
            get_member_list: true,
        }
    }
}

/// What a submitted form changes, beyond the configuration itself: the owners and
/// admins it names (`muc#roomconfig_roomowners`, `_roomadmins`), when present.
#[derive(Debug, Default, PartialEq)]
pub struct Named {
    pub owners: Option<Vec<String>>,
    pub admins: Option<Vec<String>>,
}

fn options(mut f: Element, choices: &[(&str, &str)]) -> Element {
    for (value, label) in choices {
        f.push(form::choice(value, Some(label)));
    }
    f
}

impl Whois {
    fn as_str(self) -> &'static str {
        match self {
            Whois::Moderators => "moderators",
            Whois::Anyone => "anyone",
        }
    }
}

impl AllowPm {
    fn as_str(self) -> &'static str {
        match self {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::None => "none",
        }
    }
}

impl Config {
    /// The configuration form with the current values (§10.2), the room's owners and
    /// admins among them.
    pub fn form(&self, owners: &[String], admins: &[String]) -> Element {
        let max = self.max_users.to_string();
        let owners: Vec<&str> = owners.iter().map(String::as_str).collect();
        let admins: Vec<&str> = admins.iter().map(String::as_str).collect();
        Element::new("x", ns::DATA)
            .attr("type", "form")
            .child(Element::new("title", ns::DATA).text("Room configuration"))
            .child(field("FORM_TYPE", "hidden", "", &[FORM_TYPE]))
            .child(field("muc#roomconfig_roomname", "text-single", "Name", &[&self.name]))
            .child(field(
                "muc#roomconfig_roomdesc",
                "text-single",
                "Description",
                &[&self.description],
            ))
            .child(field(
                "muc#roomconfig_lang",
                "text-single",
                "Language",
                &[&self.language],
            ))
            .child(field(
                "muc#roomconfig_persistentroom",
                "boolean",
                "Persistent (stays when empty)",
                &[flag(self.persistent)],
            ))
            .child(field(
                "muc#roomconfig_publicroom",
                "boolean",
                "Listed in the directory",
                &[flag(self.public)],
            ))
            .child(field(
                "muc#roomconfig_membersonly",
                "boolean",
                "Members only",
                &[flag(self.members_only)],
            ))
            .child(field(
                "muc#roomconfig_moderatedroom",
                "boolean",
                "Moderated (voice needed to speak)",
                &[flag(self.moderated)],
            ))
            .child(field(
                "muc#roomconfig_passwordprotectedroom",
                "boolean",
                "Password required to enter",
                &[flag(self.password.is_some())],
            ))
            .child(field(
                "muc#roomconfig_roomsecret",
                "text-private",
                "Password",
                &[self.password.as_deref().unwrap_or("")],
            ))
            .child(options(
                field("muc#roomconfig_maxusers", "list-single", "Most occupants", &[&max]),
                &[
                    ("10", "10"),
                    ("20", "20"),
                    ("50", "50"),
                    ("100", "100"),
                    ("200", "200"),
                    ("500", "500"),
                    ("1000", "1000"),
                ],
            ))
            .child(options(
                field(
                    "muc#roomconfig_whois",
                    "list-single",
                    "Who may see real JIDs",
                    &[self.whois.as_str()],
                ),
                &[("moderators", "Moderators only"), ("anyone", "Anyone")],
            ))
            .child(field(
                "muc#roomconfig_changesubject",
                "boolean",
                "Participants may change the subject",
                &[flag(self.change_subject)],
            ))
            .child(field(
                "muc#roomconfig_allowinvites",
                "boolean",
                "Participants may invite",
                &[flag(self.allow_invites)],
            ))
            .child(options(
                field(
                    "muc#roomconfig_allowpm",
                    "list-single",
                    "Who may send private messages",
                    &[self.allow_pm.as_str()],
                ),
                &[
                    ("anyone", "Anyone"),
                    ("participants", "Participants"),
                    ("moderators", "Moderators"),
                    ("none", "Nobody"),
                ],
            ))
            .child(field(
                "muc#roomconfig_getmemberlist",
                "boolean",
                "Anyone may see the member list",
                &[flag(self.get_member_list)],
            ))
            .child(field("muc#roomconfig_enablelogging", "boolean", "Public logs", &["0"]))
            .child(field("muc#roomconfig_roomowners", "jid-multi", "Owners", &owners))
            .child(field("muc#roomconfig_roomadmins", "jid-multi", "Admins", &admins))
    }

    /// This configuration changed by a submitted form (`<x type='submit'/>`): fields not
    /// in it keep their value; a field with a value it cannot take is `not-acceptable`,
    /// a form of another type `bad-request`.
    pub fn submitted(&self, form: &Element) -> Result<(Config, Named), StanzaError> {
        let mut c = self.clone();
        let mut named = Named::default();
        let mut protected = None;
        for (var, values) in form::fields(form) {
            let one = values.first().map(String::as_str).unwrap_or("");
            let bad = |why: &str| StanzaError::not_acceptable().with_text(format!("{var}: {why}"));
            let boolean = || match one {
                "1" | "true" => Ok(true),
                "0" | "false" | "" => Ok(false),
                _ => Err(bad("not a boolean")),
            };
            match var {
                "FORM_TYPE" if one != FORM_TYPE => {
                    return Err(StanzaError::bad_request().with_text("not a muc#roomconfig form"))
                }
                "FORM_TYPE" => {}
                "muc#roomconfig_roomname" => c.name = bounded(one, 256).map_err(&bad)?,
                "muc#roomconfig_roomdesc" => c.description = bounded(one, 1024).map_err(&bad)?,
                "muc#roomconfig_lang" => c.language = bounded(one, 35).map_err(&bad)?,
                "muc#roomconfig_persistentroom" => c.persistent = boolean()?,
                "muc#roomconfig_publicroom" => c.public = boolean()?,
                "muc#roomconfig_membersonly" => c.members_only = boolean()?,
                "muc#roomconfig_moderatedroom" => c.moderated = boolean()?,
                "muc#roomconfig_passwordprotectedroom" => protected = Some(boolean()?),
                "muc#roomconfig_roomsecret" => {
                    c.password = Some(bounded(one, 256).map_err(&bad)?).filter(|p| !p.is_empty())
                }
                "muc#roomconfig_maxusers" => {
                    c.max_users = match one {
                        "" | "none" => MAX_USERS,
                        n => n
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (1..=MAX_USERS).contains(n))
                            .ok_or_else(|| bad("not a number from 1 to 1000"))?,
                    }
                }
                "muc#roomconfig_whois" => {
                    c.whois = match one {
                        "moderators" => Whois::Moderators,
                        "anyone" => Whois::Anyone,
                        _ => return Err(bad("moderators or anyone")),
                    }
                }
                "muc#roomconfig_changesubject" => c.change_subject = boolean()?,
                "muc#roomconfig_allowinvites" => c.allow_invites = boolean()?,
                "muc#roomconfig_allowpm" => {
                    c.allow_pm = match one {
                        "anyone" => AllowPm::Anyone,
                        "participants" => AllowPm::Participants,
                        "moderators" => AllowPm::Moderators,
                        "none" => AllowPm::None,
                        _ => return Err(bad("anyone, participants, moderators or none")),
                    }
                }
                "muc#roomconfig_getmemberlist" => c.get_member_list = boolean()?,
                // Public logs are not kept: asking for them is refused, not ignored.
                "muc#roomconfig_enablelogging" if boolean()? => return Err(bad("this service keeps no public logs")),
                "muc#roomconfig_roomowners" => named.owners = Some(bare_jids(&values).map_err(|e| bad(&e))?),
                "muc#roomconfig_roomadmins" => named.admins = Some(bare_jids(&values).map_err(|e| bad(&e))?),
                _ => {} // fields of other services' extensions are left alone
            }
        }
        match protected {
            Some(false) => c.password = None,
            Some(true) if c.password.is_none() => {
                return Err(StanzaError::not_acceptable().with_text("a password-protected room needs a password"))
            }
            _ => {}
        }
        Ok((c, named))
    }

    /// The room's features in its disco#info (§6.4), as its configuration makes it.
    pub fn features(&self) -> Vec<&'static str> {
        vec![
            if self.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if self.public { "muc_public" } else { "muc_hidden" },
            if self.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if self.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            if self.password.is_some() {
                "muc_passwordprotected"
            } else {
                "muc_unsecured"
            },
            match self.whois {
                Whois::Anyone => "muc_nonanonymous",
                Whois::Moderators => "muc_semianonymous",
            },
        ]
    }

    /// The `muc#roominfo` form of the room's disco#info (§6.4).
    pub fn info_form(&self, occupants: usize, subject: &str) -> Element {
        let count = occupants.to_string();
        Element::new("x", ns::DATA)
            .attr("type", "result")
            .child(field(
                "FORM_TYPE",
                "hidden",
                "",
                &["http://jabber.org/protocol/muc#roominfo"],
            ))
            .child(field(
                "muc#roominfo_description",
                "text-single",
                "Description",
                &[&self.description],
            ))
            .child(field("muc#roominfo_subject", "text-single", "Subject", &[subject]))
            .child(field("muc#roominfo_occupants", "text-single", "Occupants", &[&count]))
            .child(field("muc#roominfo_lang", "text-single", "Language", &[&self.language]))
            .child(field(
                "muc#roomconfig_changesubject",
                "boolean",
                "Participants may change the subject",
                &[flag(self.change_subject)],
            ))
    }
}

fn bounded(value: &str, max: usize) -> Result<String, &'static str> {
    match value.len() <= max {
        true => Ok(value.to_string()),
        false => Err("too long"),
    }
}

/// `jid-multi` values as bare JIDs (normalised: lower case), each checked.
fn bare_jids(values: &[String]) -> Result<Vec<String>, String> {
    values
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| crate::bare_jid(v).ok_or_else(|| format!("{v:?} is not a JID")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(fields: &[(&str, &[&str])]) -> Element {
        let mut x = Element::new("x", ns::DATA).attr("type", "submit");
        for (var, values) in fields {
            x.push(field(var, "text-single", "", values));
        }
        x
    }

    #[test]
    fn a_submitted_form_changes_what_it_names_and_keeps_the_rest() {
        let c = Config::default();
        let (changed, named) = c
            .submitted(&submit(&[
                ("FORM_TYPE", &[FORM_TYPE]),
                ("muc#roomconfig_roomname", &["Lounge"]),
                ("muc#roomconfig_persistentroom", &["1"]),
                ("muc#roomconfig_passwordprotectedroom", &["1"]),
                ("muc#roomconfig_roomsecret", &["s3cret"]),
                ("muc#roomconfig_whois", &["anyone"]),
                ("muc#roomconfig_maxusers", &["50"]),
                ("muc#roomconfig_roomadmins", &["Bob@L"]),
            ]))
            .unwrap();
        assert_eq!(changed.name, "Lounge");
        assert!(changed.persistent && changed.public);
        assert_eq!(changed.password.as_deref(), Some("s3cret"));
        assert_eq!(changed.whois, Whois::Anyone);
        assert_eq!(changed.max_users, 50);
        assert_eq!(named.admins, Some(vec!["bob@l".to_string()]));
        assert_eq!(named.owners, None);
        assert!(changed.features().contains(&"muc_passwordprotected"));
    }

    #[test]
    fn bad_values_are_not_acceptable_and_another_form_a_bad_request() {
        let c = Config::default();
        for fields in [
            &[("muc#roomconfig_maxusers", &["lots"][..])][..],
            &[("muc#roomconfig_whois", &["nobody"][..])],
            &[("muc#roomconfig_persistentroom", &["maybe"][..])],
            &[("muc#roomconfig_passwordprotectedroom", &["1"][..])],
            &[("muc#roomconfig_roomowners", &["not a jid@"][..])],
            &[("muc#roomconfig_enablelogging", &["1"][..])],
        ] {
            let err = c.submitted(&submit(fields)).unwrap_err();
            assert_eq!(err.condition, poolxmpp_sdk::Condition::NotAcceptable, "{fields:?}");
        }
        let err = c.submitted(&submit(&[("FORM_TYPE", &["urn:other"])])).unwrap_err();
        assert_eq!(err.condition, poolxmpp_sdk::Condition::BadRequest);
    }

    #[test]
    fn the_form_shows_the_current_values() {
        let c = Config {
            moderated: true,
            ..Config::default()
        };
        let form = c.form(&["alice@l".into()], &[]);
        let value = |var: &str| {
            form.elements()
                .find(|f| f.get_attr("var") == Some(var))
                .and_then(|f| f.get_child("value", ns::DATA))
                .map(|v| v.text_content())
        };
        assert_eq!(value("muc#roomconfig_moderatedroom").as_deref(), Some("1"));
        assert_eq!(value("muc#roomconfig_roomowners").as_deref(), Some("alice@l"));
        assert_eq!(value("muc#roomconfig_roomadmins"), None);
    }
}
