//! Decisions of the roster-grouping strategy against the SDK's in-memory host.

use poolxmpp_sdk::placement::{rendezvous_weight, NodeView, Placement, PoolView};
use poolxmpp_sdk::testing::{self, node, set_roster, view};
use poolxmpp_sdk::{storage, Config};

use super::{homes, RosterGrouping};

fn strategy(config: &[(&str, &str)]) -> RosterGrouping {
    let pairs: Vec<(String, String)> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    RosterGrouping::init(&Config::from(pairs)).unwrap()
}

fn place(user: &str, v: &PoolView) -> String {
    strategy(&[]).choose_node(user, v).unwrap_or_default()
}

/// Record `contacts` as living on `node`, as earlier decisions would have.
fn homes_on(node: &str, contacts: &[&str]) {
    for c in contacts {
        homes::record(c, node);
    }
}

/// Of two equally loaded nodes, the one a cold start picks for `user`.
fn heavier(user: &str, a: &'static str, b: &'static str) -> &'static str {
    if rendezvous_weight(user, a) > rendezvous_weight(user, b) {
        a
    } else {
        b
    }
}

#[test]
fn cold_start_takes_the_least_loaded_node_and_records_it() {
    testing::reset();
    let v = view([node("n1", 4), node("n2", 1), node("n3", 1)]);
    let chosen = place("Alice@L", &v);
    assert_eq!(chosen, heavier("alice@l", "n2", "n3"));
    assert_eq!(testing::stored("home/alice@l"), Some(chosen.clone()));
    assert!(testing::logs()
        .iter()
        .any(|(_, l)| l.starts_with(&format!("placing alice@l on {chosen} (no placed contacts"))));
}

#[test]
fn follows_recorded_homes_of_offline_contacts() {
    testing::reset();
    set_roster("alice@l", &["b@l", "c@l", "d@l"]);
    homes_on("n2", &["b@l", "c@l"]);
    homes_on("n1", &["d@l"]);
    // cap = ceil(1.25 * (2 + 2 + 0 + 1) / 3) = 3: all have room, n3 is emptiest.
    let v = view([node("n1", 2), node("n2", 2), node("n3", 0)]);
    assert_eq!(place("alice@l", &v), "n2");
}

#[test]
fn online_contacts_count_from_the_view() {
    testing::reset();
    set_roster("alice@l", &["b@l"]);
    homes_on("n1", &["b@l"]);
    let v = view([
        node("n1", 3),
        NodeView {
            contacts_here: 2,
            ..node("n2", 3)
        },
    ]);
    assert_eq!(place("alice@l", &v), "n2");
}

#[test]
fn the_cap_wins_over_contacts() {
    testing::reset();
    set_roster("alice@l", &["b@l", "c@l", "d@l"]);
    homes_on("n1", &["b@l", "c@l", "d@l"]);
    // cap = ceil(1.25 * (12 + 0 + 1) / 3) = 6: n1 (8) is full, n2 is the best with room.
    let v = view([
        node("n1", 8),
        NodeView {
            contacts_here: 1,
            ..node("n2", 4)
        },
        node("n3", 0),
    ]);
    assert_eq!(place("alice@l", &v), "n2");
    // With no contacts on a node with room, the least loaded one takes her.
    let v = view([node("n1", 8), node("n2", 4), node("n3", 0)]);
    assert_eq!(place("alice@l", &v), "n3");
    // A looser cap lets her join her contacts.
    assert_eq!(
        strategy(&[("load_factor", "3")])
            .choose_node("alice@l", &v)
            .unwrap_or_default(),
        "n1"
    );
}

#[test]
fn homes_on_dead_nodes_do_not_count() {
    testing::reset();
    set_roster("alice@l", &["b@l", "c@l", "d@l"]);
    homes_on("gone", &["b@l", "c@l"]);
    homes_on("n2", &["d@l"]);
    let v = view([node("n1", 0), node("n2", 1)]);
    assert_eq!(place("alice@l", &v), "n2");
    // With every recorded home dead, it is a cold start.
    homes_on("gone", &["d@l"]);
    assert_eq!(place("alice@l", &v), "n1");
}

#[test]
fn draining_nodes_are_never_chosen() {
    testing::reset();
    set_roster("alice@l", &["b@l", "c@l"]);
    homes_on("n1", &["b@l", "c@l"]);
    let v = view([
        NodeView {
            accepting: false,
            contacts_here: 5,
            ..node("n1", 0)
        },
        node("n2", 10),
    ]);
    assert_eq!(place("alice@l", &v), "n2");
    let none = view([NodeView {
        accepting: false,
        ..node("n1", 0)
    }]);
    assert_eq!(place("alice@l", &none), "");
    assert_eq!(testing::stored("home/alice@l").as_deref(), Some("n2"));
}

#[test]
fn ties_between_scores_go_to_the_least_loaded() {
    testing::reset();
    set_roster("alice@l", &["b@l", "c@l"]);
    homes_on("n1", &["b@l"]);
    homes_on("n2", &["c@l"]);
    // cap = ceil(1.25 * 12 / 3) = 5: all have room; n1 and n2 score 1, n2 is less loaded.
    let v = view([node("n1", 4), node("n2", 3), node("n3", 4)]);
    assert_eq!(place("alice@l", &v), "n2");
}

#[test]
fn looks_at_a_bounded_part_of_the_roster() {
    testing::reset();
    set_roster("alice@l", &["b@l", "c@l", "d@l"]);
    homes_on("n1", &["b@l"]);
    homes_on("n2", &["c@l", "d@l"]);
    let v = view([node("n1", 1), node("n2", 1)]);
    assert_eq!(place("alice@l", &v), "n2");
    assert_eq!(
        strategy(&[("max_contacts", "1")])
            .choose_node("alice@l", &v)
            .unwrap_or_default(),
        "n1"
    );
    // No time for lookups at all: only the view counts, a cold start here.
    let cold = heavier("alice@l", "n1", "n2");
    assert_eq!(
        strategy(&[("lookup_budget_ms", "0")])
            .choose_node("alice@l", &v)
            .unwrap_or_default(),
        cold
    );
}

#[test]
fn communities_end_up_together() {
    testing::reset();
    let a = ["a1@l", "a2@l", "a3@l", "a4@l"];
    let b = ["b1@l", "b2@l", "b3@l", "b4@l"];
    for group in [&a, &b] {
        for member in group.iter() {
            let others: Vec<&str> = group.iter().copied().filter(|m| m != member).collect();
            set_roster(member, &others);
        }
    }
    // They log in interleaved; each placement adds a session to its node.
    let mut v = view([node("n1", 0), node("n2", 0)]);
    let mut s = strategy(&[]);
    for (x, y) in a.iter().zip(b.iter()) {
        for user in [x, y] {
            let chosen = s.choose_node(user, &v).unwrap_or_default();
            v.nodes.iter_mut().find(|n| n.id == chosen).unwrap().sessions += 1;
        }
    }
    let home = |u: &str| storage::get_string(&homes::key(u)).unwrap().unwrap();
    assert!(a.iter().all(|u| home(u) == home(a[0])), "community a split");
    assert!(b.iter().all(|u| home(u) == home(b[0])), "community b split");
    assert_ne!(home(a[0]), home(b[0]));
}

#[test]
fn config_is_checked() {
    assert!(RosterGrouping::init(&Config::from([("load_factor", "0.5")])).is_err());
    assert!(RosterGrouping::init(&Config::from([("max_contacts", "-1")])).is_err());
    let s = strategy(&[]);
    assert_eq!(s.lookup.max_contacts, super::DEFAULT_MAX_CONTACTS);
    assert_eq!(s.load_factor, 1.25);
}

#[test]
fn cold_start_follows_contacts_of_contacts() {
    testing::reset();
    // alice knows bob and carol, who are not placed; their contacts dave and erin are, on n3.
    set_roster("alice@l", &["bob@l", "carol@l"]);
    set_roster("bob@l", &["alice@l", "dave@l"]);
    set_roster("carol@l", &["alice@l", "erin@l"]);
    homes_on("n3", &["dave@l", "erin@l"]);
    // cap = ceil(1.25 * (2 + 2 + 3 + 1) / 3) = 4: all have room; least loaded would be n1/n2.
    let v = view([node("n1", 2), node("n2", 2), node("n3", 3)]);
    assert_eq!(place("alice@l", &v), "n3");
    assert!(testing::logs()
        .iter()
        .any(|(_, l)| l.contains("2 contacts of contacts there")));
}
