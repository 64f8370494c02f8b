//! Who may see a personal node (XEP-0060 §4.5, XEP-0163 §5): the owner always; others by
//! the node's access model over the owner's roster.

use poolxmpp_sdk::host::{RosterItem, Subscription};
use poolxmpp_sdk::{Condition, Element, StanzaError};

use crate::config::{AccessModel, NodeConfig};
use crate::ns;

/// Why someone may not see a node, as XEP-0060 §6.5.7 and §7.1.3 word it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// `presence`: no subscription to the owner's presence.
    PresenceSubscriptionRequired,
    /// `roster`: not in an allowed roster group.
    NotInRosterGroup,
    /// `whitelist`: not on it (a personal node's whitelist is its owner).
    ClosedNode,
}

impl Denied {
    pub fn error(self) -> StanzaError {
        let (condition, app) = match self {
            Denied::PresenceSubscriptionRequired => (Condition::NotAuthorized, "presence-subscription-required"),
            Denied::NotInRosterGroup => (Condition::NotAuthorized, "not-in-roster-group"),
            Denied::ClosedNode => (Condition::NotAllowed, "closed-node"),
        };
        StanzaError::new(condition).with_application(&Element::new(app, ns::ERRORS))
    }
}

/// Whether `contact` (not the owner), whose item in the owner's roster is `item`, may
/// retrieve the node's items and be notified of them.
pub fn contact_may_see(config: &NodeConfig, item: Option<&RosterItem>) -> Result<(), Denied> {
    let subscribed = item.is_some_and(|i| matches!(i.subscription, Subscription::From | Subscription::Both));
    match config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence if subscribed => Ok(()),
        AccessModel::Presence => Err(Denied::PresenceSubscriptionRequired),
        AccessModel::Roster
            if item.is_some_and(|i| i.groups.iter().any(|g| config.roster_groups_allowed.contains(g))) =>
        {
            Ok(())
        }
        AccessModel::Roster => Err(Denied::NotInRosterGroup),
        AccessModel::Whitelist => Err(Denied::ClosedNode),
    }
}

/// Whether the owner's contact with this roster item gets notifications (XEP-0163 §4.1:
/// a PEP node's subscribers are the contacts subscribed to the owner's presence, as far
/// as the access model lets them see it).
pub fn contact_is_notified(config: &NodeConfig, item: &RosterItem) -> bool {
    matches!(item.subscription, Subscription::From | Subscription::Both) && contact_may_see(config, Some(item)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sub: Subscription, groups: &[&str]) -> RosterItem {
        RosterItem {
            jid: "b@l".into(),
            name: None,
            subscription: sub,
            ask: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn each_access_model_over_the_roster() {
        let with = |access_model| NodeConfig {
            access_model,
            roster_groups_allowed: vec!["Friends".into()],
            ..NodeConfig::default()
        };
        let both = item(Subscription::Both, &[]);
        let to = item(Subscription::To, &["Friends"]);
        let friend = item(Subscription::From, &["Friends"]);
        assert!(contact_may_see(&with(AccessModel::Open), None).is_ok());
        assert!(contact_may_see(&with(AccessModel::Presence), Some(&both)).is_ok());
        assert_eq!(
            contact_may_see(&with(AccessModel::Presence), Some(&to)),
            Err(Denied::PresenceSubscriptionRequired)
        );
        assert_eq!(
            contact_may_see(&with(AccessModel::Presence), None),
            Err(Denied::PresenceSubscriptionRequired)
        );
        assert!(contact_may_see(&with(AccessModel::Roster), Some(&to)).is_ok());
        assert_eq!(
            contact_may_see(&with(AccessModel::Roster), Some(&both)),
            Err(Denied::NotInRosterGroup)
        );
        assert_eq!(
            contact_may_see(&with(AccessModel::Whitelist), Some(&both)),
            Err(Denied::ClosedNode)
        );
        // Notified: subscribed to the owner's presence and allowed to see the node.
        assert!(contact_is_notified(&with(AccessModel::Open), &both));
        assert!(!contact_is_notified(&with(AccessModel::Open), &to));
        assert!(contact_is_notified(&with(AccessModel::Roster), &friend));
        assert!(!contact_is_notified(&with(AccessModel::Whitelist), &both));
    }
}
