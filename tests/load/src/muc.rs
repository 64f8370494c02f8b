//! `muc`: one multi-user chat room under load (issue 13), in plain XEP-0045, so the same
//! workload runs against poolxmpp, Prosody and ejabberd.
//!
//! N occupants (users {prefix}0..{prefix}N-1, nicknames `o0`..) log in, then enter the
//! room one after another: the first creates it and submits the configuration form
//! (an instant room, §10.1.2, with `muc#roomconfig_maxusers` = N), each next one enters
//! once the previous one is in. An entry's time is from sending the join presence to
//! receiving the room's presence for oneself (status 110); the last one's is reported as
//! the time for the Nth occupant to join. Then the first `senders` occupants each send M
//! groupchat messages, at most W of their own unreflected at a time (the room reflects a
//! message to its sender, which frees the sender's window). Every occupant counts the
//! copies it receives; each body carries its send time, so every delivery's latency is
//! measured. Reported: deliveries per second (every copy to every occupant, from the
//! first message to the last copy), delivery latency, lost copies, join times, and the
//! server's CPU time per delivery. Once every occupant has all its copies, all leave at
//! once, each waiting for the room's unavailable presence for itself (status 110):
//! reported are how many left and how long it took them.
//!
//! Every session reads its stream from login on, so the presence broadcasts of the
//! joins never pile up unread in a socket (a server would rightly drop such a client).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::runner::{self, Env, MAX_REASONS};
use crate::stats::{now_us, round3, CpuMeter, ErrorTally, Latencies};
use crate::xml::{escape, Element};
use crate::xmpp::{self, Session, SessionReader, SessionWriter};

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";

pub struct MucParams {
    pub occupants: usize,
    /// How many of the occupants send (the first ones).
    pub senders: usize,
    pub messages: usize,
    pub window: usize,
    /// The room's JID; default `bench@conference.{domain}`.
    pub room: Option<String>,
    pub loss_timeout: Duration,
}

/// What one occupant saw.
#[derive(Default)]
struct Seen {
    /// Time from its join presence to its own presence from the room.
    joined_in: Option<Duration>,
    /// Time from its unavailable presence to the room's for itself.
    left_in: Option<Duration>,
    received: u64,
    last_arrival: Option<Instant>,
    latency: Latencies,
    sent: u64,
    errors: ErrorTally,
}

/// What the coordinator tells every occupant, in order.
struct Plan {
    room: String,
    occupants: usize,
    senders: usize,
    messages: usize,
    window: usize,
    loss_timeout: Duration,
    deadline: Instant,
}

fn nick(i: usize) -> String {
    format!("o{i}")
}

/// Whether `el` is the room's presence for `own` (`room/nick`) with status 110, or its
/// refusal (then the error).
fn own_presence(el: &Element, own: &str) -> Option<Result<(), String>> {
    if el.name != "presence" || el.attr("from") != Some(own) || el.attr("type") == Some("unavailable") {
        return None;
    }
    if el.attr("type") == Some("error") {
        return Some(Err(el.describe_error()));
    }
    has_110(el).then_some(Ok(()))
}

/// Whether `el` is the room's unavailable presence for `own` with status 110: it left.
fn own_exit(el: &Element, own: &str) -> bool {
    el.name == "presence" && el.attr("from") == Some(own) && el.attr("type") == Some("unavailable") && has_110(el)
}

fn has_110(el: &Element) -> bool {
    el.child_ns("x", NS_MUC_USER).is_some_and(|x| {
        x.children
            .iter()
            .any(|c| c.name == "status" && c.attr("code") == Some("110"))
    })
}

/// An occupant's stream, read by its own task into a channel, so the occupant can wait
/// on it and on the run's signals at once (reading an element is not cancel-safe).
struct Inbox {
    rx: mpsc::UnboundedReceiver<Element>,
    reader: tokio::task::JoinHandle<()>,
}

impl Inbox {
    fn spawn(mut reader: SessionReader) -> Inbox {
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Ok(Some(el)) = reader.next_element().await {
                if tx.send(el).is_err() {
                    break;
                }
            }
        });
        Inbox { rx, reader }
    }
}

/// Answer a server ping (so a quiet occupant is not taken for dead); whether `el` was one.
async fn answer_ping(writer: &mut SessionWriter, el: &Element) -> bool {
    match xmpp::iq_reply(el) {
        Some(reply) => {
            let _ = xmpp::send(writer, &reply).await;
            true
        }
        None => false,
    }
}

/// How the coordinator and one occupant pace each other.
#[derive(Clone)]
struct Signals {
    /// Whose turn it is to enter.
    turn: watch::Receiver<usize>,
    /// An occupant's entry is over: whether it is in.
    joined: mpsc::UnboundedSender<bool>,
    /// Everyone is in: send.
    start: watch::Receiver<bool>,
    /// An occupant that entered has all its copies (or gave up waiting).
    finished: mpsc::UnboundedSender<()>,
    /// Everyone has finished: leave.
    leave: watch::Receiver<bool>,
}

/// One occupant's whole run: wait for its turn, enter (the first also configures), say
/// it is in, then count every copy while (if it is a sender) sending its messages, then
/// leave when told.
async fn occupant(
    i: usize,
    session: Session,
    plan: Arc<Plan>,
    signals: Signals,
) -> (Seen, SessionWriter, tokio::task::JoinHandle<()>) {
    let Signals {
        mut turn,
        joined,
        mut start,
        finished,
        mut leave,
    } = signals;
    let Session { reader, mut writer, .. } = session;
    let mut inbox = Inbox::spawn(reader);
    let mut seen = Seen::default();
    let own = format!("{}/{}", plan.room, nick(i));
    // Wait for the turn, reading (and dropping) what comes meanwhile.
    while *turn.borrow() < i {
        tokio::select! {
            changed = turn.changed() => if changed.is_err() { return (seen, writer, inbox.reader) },
            el = inbox.rx.recv() => match el {
                Some(el) => { answer_ping(&mut writer, &el).await; }
                None => { seen.errors.add_msg("stream closed before its turn".into()); let _ = joined.send(false); return (seen, writer, inbox.reader) }
            },
        }
    }
    let join = format!(
        "<presence to='{}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>",
        escape(&own)
    );
    let asked = Instant::now();
    let entered = match xmpp::send(&mut writer, &join).await {
        Err(e) => Err(format!("join: {e}")),
        Ok(()) => loop {
            match tokio::time::timeout(plan.loss_timeout, inbox.rx.recv()).await {
                Err(_) => break Err("no answer to the join".to_string()),
                Ok(None) => break Err("stream closed while joining".to_string()),
                Ok(Some(el)) => {
                    if answer_ping(&mut writer, &el).await {
                        continue;
                    }
                    if let Some(outcome) = own_presence(&el, &own) {
                        break outcome.map_err(|why| format!("entry refused: {why}"));
                    }
                }
            }
        },
    };
    match entered {
        Ok(()) => seen.joined_in = Some(asked.elapsed()),
        Err(why) => seen.errors.add_msg(why),
    }
    if i == 0 && seen.joined_in.is_some() {
        if let Err(why) = configure(&mut inbox, &mut writer, &plan).await {
            seen.errors.add_msg(why);
        }
    }
    let _ = joined.send(seen.joined_in.is_some());
    if seen.joined_in.is_none() {
        return (seen, writer, inbox.reader);
    }
    runner::until_set(&mut start).await;

    // Copies expected: every sender's messages, our own reflected ones included.
    let expected = (plan.senders * plan.messages) as u64;
    let mine = if i < plan.senders { plan.messages } else { 0 };
    let window = Semaphore::new(plan.window.max(1));
    let mut buf = String::with_capacity(256);
    let room = escape(&plan.room).into_owned();
    loop {
        if seen.received >= expected && seen.sent as usize >= mine {
            break;
        }
        if Instant::now() >= plan.deadline {
            seen.errors.add_msg("global timeout".into());
            break;
        }
        tokio::select! {
            permit = window.acquire(), if (seen.sent as usize) < mine => {
                let Ok(permit) = permit else { break };
                permit.forget();
                buf.clear();
                let seq = seen.sent;
                let _ = write!(
                    buf,
                    "<message to='{room}' type='groupchat' id='m{i}-{seq}'><body>{} {i} {seq}</body></message>",
                    now_us()
                );
                if let Err(e) = xmpp::send(&mut writer, &buf).await {
                    seen.errors.add(&e.context("send"));
                    break;
                }
                seen.sent += 1;
            }
            el = tokio::time::timeout(plan.loss_timeout, inbox.rx.recv()) => {
                let el = match el {
                    Err(_) => break, // quiet for the loss timeout: what is missing is lost
                    Ok(None) => { seen.errors.add_msg("stream closed by the server".into()); break }
                    Ok(Some(el)) => el,
                };
                if el.name != "message" {
                    answer_ping(&mut writer, &el).await;
                    continue;
                }
                if el.attr("type") == Some("error") {
                    seen.errors.add_msg(format!("message error: {}", el.describe_error()));
                    window.add_permits(1);
                    continue;
                }
                let Some(sent_us) = el.child("body").and_then(|b| b.text.split(' ').next()?.parse::<u64>().ok()) else {
                    continue;
                };
                seen.received += 1;
                seen.last_arrival = Some(Instant::now());
                seen.latency.record_micros(now_us().saturating_sub(sent_us));
                if el.attr("from") == Some(own.as_str()) {
                    window.add_permits(1);
                }
            }
        }
    }
    let _ = finished.send(());
    // Wait until everyone has finished (so the leaving does not slow anyone's copies),
    // answering pings meanwhile; then leave and wait for the room to say so.
    while !*leave.borrow() {
        tokio::select! {
            changed = leave.changed() => if changed.is_err() { return (seen, writer, inbox.reader) },
            el = inbox.rx.recv() => match el {
                Some(el) => { answer_ping(&mut writer, &el).await; }
                None => { seen.errors.add_msg("stream closed before leaving".into()); return (seen, writer, inbox.reader) }
            },
        }
    }
    let asked = Instant::now();
    let exit = format!("<presence to='{}' type='unavailable'/>", escape(&own));
    if let Err(e) = xmpp::send(&mut writer, &exit).await {
        seen.errors.add(&e.context("leave"));
        return (seen, writer, inbox.reader);
    }
    loop {
        match tokio::time::timeout(plan.loss_timeout, inbox.rx.recv()).await {
            Err(_) => break seen.errors.add_msg("no answer to leaving".into()),
            Ok(None) => break seen.errors.add_msg("stream closed while leaving".into()),
            Ok(Some(el)) if own_exit(&el, &own) => break seen.left_in = Some(asked.elapsed()),
            Ok(Some(el)) => {
                answer_ping(&mut writer, &el).await;
            }
        }
    }
    (seen, writer, inbox.reader)
}

/// The creator's configuration: an instant room for N occupants, submitted and answered.
async fn configure(inbox: &mut Inbox, writer: &mut SessionWriter, plan: &Plan) -> Result<(), String> {
    let form = format!(
        "<iq type='set' id='cfg' to='{}'><query xmlns='{NS_MUC}#owner'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>{NS_MUC}#roomconfig</value></field>\
         <field var='muc#roomconfig_maxusers'><value>{}</value></field></x></query></iq>",
        escape(&plan.room),
        plan.occupants.max(10)
    );
    xmpp::send(writer, &form)
        .await
        .map_err(|e| format!("configuring: {e}"))?;
    loop {
        match tokio::time::timeout(plan.loss_timeout, inbox.rx.recv()).await {
            Ok(Some(el)) if el.name == "iq" && el.attr("id") == Some("cfg") => {
                return match el.attr("type") {
                    Some("result") => Ok(()),
                    _ => Err(format!("the room's configuration was refused: {}", el.describe_error())),
                };
            }
            Ok(Some(el)) => {
                answer_ping(writer, &el).await;
            }
            _ => return Err("no answer to the room's configuration".into()),
        }
    }
}

pub async fn run(env: Env, p: MucParams) -> Result<Value> {
    let room = p
        .room
        .clone()
        .unwrap_or_else(|| format!("bench@conference.{}", env.args.domain));
    let senders = p.senders.min(p.occupants);
    let mut report = json!({
        "scenario": "muc", "target": env.target(), "room": room, "occupants": p.occupants,
        "senders": senders, "messages": p.messages, "window": p.window,
    });
    if env.args.register {
        report["registration"] = runner::register_users(&env, p.occupants).await;
    }
    let mut logged = runner::login_many(&env, p.occupants).await;
    report["logins"] = logged.report();
    let sessions: Vec<Session> = logged.sessions.drain(..).flatten().collect();
    if sessions.len() < p.occupants {
        report["ok"] = json!(false);
        return Ok(report);
    }
    let plan = Arc::new(Plan {
        room,
        occupants: p.occupants,
        senders,
        messages: p.messages,
        window: p.window,
        loss_timeout: p.loss_timeout,
        deadline: env.deadline,
    });
    let (turn_tx, turn) = watch::channel(0usize);
    let (joined, mut joined_rx) = mpsc::unbounded_channel();
    let (start_tx, start) = watch::channel(false);
    let (finished, mut finished_rx) = mpsc::unbounded_channel();
    let (leave_tx, leave) = watch::channel(false);
    let signals = Signals {
        turn,
        joined,
        start,
        finished,
        leave,
    };
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, s)| tokio::spawn(occupant(i, s, plan.clone(), signals.clone())))
        .collect();
    drop(signals);
    let joins_started = Instant::now();
    let mut in_room = 0usize;
    for i in 0..p.occupants {
        let _ = turn_tx.send(i);
        match tokio::time::timeout(plan.loss_timeout * 2, joined_rx.recv()).await {
            Ok(Some(entered)) => in_room += usize::from(entered),
            _ => break,
        }
    }
    let joins_took = joins_started.elapsed();

    let meter = CpuMeter::start(env.args.pid);
    let started = Instant::now();
    let _ = start_tx.send(true);
    // Everyone in the room finishes (each task bounds its own wait), then the CPU of the
    // messages is read and all leave.
    let leaver = tokio::spawn(async move {
        for _ in 0..in_room {
            if finished_rx.recv().await.is_none() {
                break;
            }
        }
        let measured = (meter.server_cpu(), meter.report());
        let _ = leave_tx.send(true);
        (measured, Instant::now())
    });
    let mut errors = ErrorTally::default();
    let (mut received, mut sent, mut last_arrival) = (0u64, 0u64, started);
    let mut latency = Latencies::default();
    let mut join_times = Latencies::default();
    let (mut entered, mut last_join) = (0usize, None);
    let mut streams = Vec::new();
    let mut leave_times = Latencies::default();
    for t in tasks {
        let (seen, writer, reader) = t.await?;
        if let Some(d) = seen.joined_in {
            entered += 1;
            join_times.record(d);
            last_join = Some(d);
        }
        if let Some(d) = seen.left_in {
            leave_times.record(d);
        }
        received += seen.received;
        sent += seen.sent;
        last_arrival = last_arrival.max(seen.last_arrival.unwrap_or(started));
        latency.merge(seen.latency);
        errors.merge(seen.errors);
        streams.push((writer, reader));
    }
    let elapsed = last_arrival.duration_since(started).as_secs_f64();
    let ((server_cpu, cpu), leaving_from) = leaver.await?;
    let leaves_took = leaving_from.elapsed();
    // Close every stream and wait (bounded) for the server to close its side.
    let wait = env.close_wait();
    for (writer, _) in &mut streams {
        let _ = xmpp::send(writer, "</stream:stream>").await;
    }
    for (_, reader) in streams {
        let _ = tokio::time::timeout(wait, reader).await;
    }

    let expected = (entered * senders * p.messages) as u64;
    report["entered"] = json!(entered);
    report["joins_s"] = json!(round3(joins_took.as_secs_f64()));
    report["join_latency"] = join_times.summary();
    report["last_join_ms"] = json!(last_join.map(|d| round3(d.as_secs_f64() * 1e3)));
    report["left"] = json!(leave_times.len());
    report["leaves_s"] = json!(round3(leaves_took.as_secs_f64()));
    report["leave_latency"] = leave_times.summary();
    report["sent"] = json!(sent);
    report["expected_copies"] = json!(expected);
    report["received"] = json!(received);
    report["lost"] = json!(expected.saturating_sub(received));
    report["elapsed_s"] = json!(round3(elapsed));
    report["deliveries_per_s"] = json!(round3(received as f64 / elapsed.max(1e-9)));
    report["delivery_latency"] = latency.summary();
    report["server_cpu_us_per_delivery"] =
        json!(server_cpu.map(|c| round3(c.as_secs_f64() * 1e6 / received.max(1) as f64)));
    report["errors"] = errors.report(MAX_REASONS);
    report["cpu"] = cpu;
    report["ok"] =
        json!(entered == p.occupants && leave_times.len() == entered && received == expected && errors.total() == 0);
    Ok(report)
}
