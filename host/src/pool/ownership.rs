//! Who owns a keyed thing (a MUC room, a pubsub node), for plugins that keep one live copy
//! of it on one node (WIT `pool.owner-of`).
//!
//! The *preferred* owner of a key is chosen by rendezvous hashing over the live nodes, so
//! every node computes the same answer without a round trip and a dead node's keys spread
//! evenly over the survivors. The *recorded* owner lives in `pool_ownership` with the
//! owner's epoch and a fencing token that grows whenever the key changes hands: a node
//! takes a key only when the record is absent, already its own, or held by an epoch that is
//! no longer live. So a node that was presumed dead cannot keep acting as owner: its epoch
//! is gone, and its writes can be refused by comparing fencing tokens. The record's
//! queries are in [`crate::store::pool::ownership`].

pub use crate::store::pool::Owner;
use crate::store::pool::PoolDb;
use crate::store::StoreError;

/// Rendezvous (highest random weight) hashing: the live node with the highest
/// `hash(key, node)` is preferred. Stable while membership is, and only keys of a node
/// that leaves move.
pub fn preferred_owner<'a>(key: &str, live_nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    live_nodes.into_iter().max_by_key(|node| weight(key, node))
}

pub(crate) fn weight(key: &str, node: &str) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    h.update(node.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Record `node`/`epoch` as the owner of `key` unless a live node holds it. Returns the
/// owner afterwards: us (with the fencing token to use), or the live holder.
pub async fn claim(db: &PoolDb, key: &str, node: &str, epoch: i64) -> Result<Owner, StoreError> {
    db.claim_key(key, node, epoch).await
}

/// Is `fence` still the current token of `key` for this owner? Plugins (through the host)
/// check it before acting as owner after a pause, so a stale owner stops.
pub async fn still_owner(db: &PoolDb, key: &str, node: &str, epoch: i64, fence: i64) -> Result<bool, StoreError> {
    db.still_owner(key, node, epoch, fence).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_the_dead_nodes_keys() {
        let all = ["n1", "n2", "n3"];
        let survivors = ["n1", "n3"];
        let mut per_node = std::collections::HashMap::new();
        for i in 0..3000 {
            let key = format!("room{i}@conference.example.org");
            let before = preferred_owner(&key, all).unwrap();
            let after = preferred_owner(&key, survivors).unwrap();
            if before != "n2" {
                assert_eq!(before, after, "a key of a surviving node moved");
            }
            *per_node.entry(before).or_insert(0) += 1;
        }
        for n in all {
            let share = per_node[n];
            assert!((800..1200).contains(&share), "{n} owns {share} of 3000 keys");
        }
    }
}
