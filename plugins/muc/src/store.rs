//! A room's state in the plugin's storage, so the node that takes a room over (its owner
//! died) or an instance that reloaded resumes it as it was.
//!
//! Every write is fenced with the room's [`Ownership`]: once another node holds the room,
//! this node's writes are refused (`StorageError::is_fenced`) and it stops serving the
//! room. What a change sends goes out only after the change is stored: an occupant's
//! presence after its record, a groupchat message after its history entry.
//!
//! Keys (each value JSON):
//! - `room/{room}`: whether it is locked, its subject, configuration, affiliations and salt;
//! - `occupant/{room}/{full jid}`: one occupant (nick, role, presence payload);
//! - `history/{room}/{slot}`: one of the last [`HISTORY`] messages, in slot `seq % HISTORY`
//!   (a message overwrites the one [`HISTORY`] before it: one write per message).

use poolxmpp_sdk::pool::Ownership;
use poolxmpp_sdk::storage;
use poolxmpp_sdk::Element;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::config::Config;
use crate::room::{Affiliation, Bucket, Dirty, Occupant, Role, Room, Said, HISTORY};

#[derive(Serialize, Deserialize)]
struct RoomRecord {
    locked: bool,
    /// The subject message as broadcast, serialized.
    subject: Option<String>,
    #[serde(default)]
    config: Config,
    /// By bare JID; `none` is not kept.
    #[serde(default)]
    affiliations: BTreeMap<String, Affiliation>,
    #[serde(default)]
    salt: String,
    /// Nicknames reserved by registration, by bare JID.
    #[serde(default)]
    reserved: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct OccupantRecord {
    nick: String,
    role: String,
    /// The elements its presence carried, each serialized.
    payload: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct SaidRecord {
    seq: u64,
    stamp: String,
    #[serde(default)]
    at_ms: u64,
    sender: String,
    id: Option<String>,
    message: String,
}

fn room_key(room: &str) -> String {
    format!("room/{room}")
}

fn occupants_prefix(room: &str) -> String {
    format!("occupant/{room}/")
}

fn occupant_key(room: &str, jid: &str) -> String {
    format!("occupant/{room}/{jid}")
}

fn history_prefix(room: &str) -> String {
    format!("history/{room}/")
}

fn history_key(room: &str, seq: u64) -> String {
    format!("history/{room}/{:02}", seq % HISTORY as u64)
}

/// What changed in `room` ([`Room::take_dirty`]): its record, its occupants, its new
/// messages.
pub fn save(owned: &Ownership, room: &Room, dirty: &Dirty) -> storage::Result<()> {
    if dirty.room {
        save_room(owned, room)?;
    }
    for jid in &dirty.occupants {
        save_occupant(owned, room, jid)?;
    }
    for seq in &dirty.said {
        if let Some(said) = room.said(*seq) {
            save_said(owned, &room.jid, said)?;
        }
    }
    Ok(())
}

/// The room's own record.
fn save_room(owned: &Ownership, room: &Room) -> storage::Result<()> {
    let record = RoomRecord {
        locked: room.locked,
        subject: room.subject.as_ref().map(Element::to_xml),
        config: room.config.clone(),
        affiliations: room.affiliations().clone(),
        salt: room.salt.clone(),
        reserved: room.reserved.clone(),
    };
    storage::put_fenced_json(owned, &room_key(&room.jid), &record)
}

/// Occupant `jid` as the room now has it: its record written, or deleted if it left.
fn save_occupant(owned: &Ownership, room: &Room, jid: &str) -> storage::Result<()> {
    let key = occupant_key(&room.jid, jid);
    let Some(o) = room.occupant(jid) else {
        return storage::delete_fenced(owned, &key).map(drop);
    };
    let record = OccupantRecord {
        nick: o.nick.clone(),
        role: o.role.as_str().to_string(),
        payload: o.payload.iter().map(Element::to_xml).collect(),
    };
    storage::put_fenced_json(owned, &key, &record)
}

/// One message into the history, over the one [`HISTORY`] messages older.
fn save_said(owned: &Ownership, room: &str, said: &Said) -> storage::Result<()> {
    let record = SaidRecord {
        seq: said.seq,
        stamp: said.stamp.clone(),
        at_ms: said.at_ms,
        sender: said.sender.clone(),
        id: said.id.clone(),
        message: said.message.to_xml(),
    };
    storage::put_fenced_json(owned, &history_key(room, said.seq), &record)
}

/// Everything stored of a room that ended.
pub fn forget(owned: &Ownership, room: &str) -> storage::Result<()> {
    for prefix in [occupants_prefix(room), history_prefix(room)] {
        let keys: Vec<String> = storage::scan(&prefix)
            .map(|entry| entry.map(|(key, _)| key))
            .collect::<storage::Result<_>>()?;
        for key in keys {
            storage::delete_fenced(owned, &key)?;
        }
    }
    storage::delete_fenced(owned, &room_key(room)).map(drop)
}

/// The room as stored, if it exists. A record that does not decode is skipped (and
/// logged), so one bad entry cannot keep a room from resuming.
pub fn load(room: &str) -> storage::Result<Option<Room>> {
    let Some(record) = storage::get_json::<RoomRecord>(&room_key(room))? else {
        return Ok(None);
    };
    let subject = record.subject.as_deref().and_then(|xml| parsed(xml, "subject"));
    let mut occupants = Vec::new();
    for entry in storage::scan(&occupants_prefix(room)) {
        let (key, value) = entry?;
        let jid = key[occupants_prefix(room).len()..].to_string();
        match decode::<OccupantRecord>(&value).and_then(|r| occupant(jid, r)) {
            Ok(o) => occupants.push(o),
            Err(why) => poolxmpp_sdk::warn!("skipping stored occupant {key}: {why}"),
        }
    }
    let mut history = Vec::new();
    for entry in storage::scan(&history_prefix(room)) {
        let (key, value) = entry?;
        let said = decode::<SaidRecord>(&value).and_then(|r| {
            Ok(Said {
                message: parsed(&r.message, "history").ok_or("its message is not XML")?,
                seq: r.seq,
                stamp: r.stamp,
                at_ms: r.at_ms,
                sender: r.sender,
                id: r.id,
            })
        });
        match said {
            Ok(said) => history.push(said),
            Err(why) => poolxmpp_sdk::warn!("skipping stored message {key}: {why}"),
        }
    }
    let mut restored = Room::restore(
        room,
        record.locked,
        subject,
        record.config,
        record.affiliations,
        record.salt,
        occupants,
        history,
    );
    restored.reserved = record.reserved;
    Ok(Some(restored))
}

/// The most room records one listing reads, so that asking costs the same however many
/// hidden rooms the pool has.
const MAX_SCANNED: usize = 2_000;

/// The public rooms of `service` in the whole pool (the store is shared), up to `limit`,
/// by JID, with their names. Locked rooms are not listed.
pub fn public_rooms(service: &str, limit: usize) -> storage::Result<Vec<(String, String)>> {
    let suffix = format!("@{service}");
    let mut rooms = Vec::new();
    for entry in storage::scan("room/").take(MAX_SCANNED) {
        let (key, value) = entry?;
        let room = &key["room/".len()..];
        if !room.ends_with(&suffix) {
            continue;
        }
        if let Ok(record) = decode::<RoomRecord>(&value) {
            if record.config.public && !record.locked {
                rooms.push((room.to_string(), record.config.name));
                if rooms.len() == limit {
                    break;
                }
            }
        }
    }
    Ok(rooms)
}

fn occupant(jid: String, r: OccupantRecord) -> Result<Occupant, String> {
    Ok(Occupant {
        role: Role::parse(&r.role).ok_or("unknown role")?,
        bucket: Bucket::default(),
        occupant_id: String::new(), // derived by Room::restore
        nick_key: String::new(),    // likewise
        payload: r
            .payload
            .iter()
            .filter_map(|xml| parsed(xml, "presence payload"))
            .collect(),
        nick: r.nick,
        jid,
    })
}

fn decode<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    serde_json::from_slice(value).map_err(|e| e.to_string())
}

fn parsed(xml: &str, what: &str) -> Option<Element> {
    Element::parse(xml)
        .map_err(|e| poolxmpp_sdk::warn!("a stored {what} is not XML: {e}"))
        .ok()
}
