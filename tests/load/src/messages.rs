//! `messages`: one-to-one chat throughput and end-to-end latency.
//!
//! 2K sessions form K sender->receiver pairs. Each sender sends M chat messages
//! to its partner's *full* JID (so routing is direct, no offline storage or
//! resource selection). Bodies carry `seq send_time_us`; the receiver computes
//! latency on arrival and its arrival also acts as the ack that frees a slot in
//! the pair's window (at most W in flight), so we measure a server under
//! sustained but not unbounded pressure. Anything not received within the
//! loss timeout is counted as lost.
//!
//! With `via`, K sessions each send to one address and receive the answer on their
//! own stream: `self` (their own full JID) is native routing, a service address such
//! as `echo.localhost` is a round trip through that plugin. Both on the same server
//! give the plugin overhead.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::runner::{self, Env, SendStats, MAX_REASONS};
use crate::stats::{now_us, round3, CpuMeter, ErrorTally, Latencies};
use crate::xml::{escape, Element};
use crate::xmpp::{self, Session, SessionReader, SessionWriter};

pub struct MsgParams {
    pub pairs: usize,
    pub messages: usize,
    pub window: usize,
    pub loss_timeout: Duration,
    pub body_bytes: usize,
    /// Echo mode target (see the module doc).
    pub via: Option<String>,
}

#[derive(Default)]
struct RecvStats {
    received: u64,
    duplicates: u64,
    latency: Latencies,
    last_arrival: Option<Instant>,
    errors: ErrorTally,
}

impl RecvStats {
    /// Count one of our messages (`seq send_time_us` in the body) and free its slot in
    /// the pair's window.
    fn record(&mut self, el: &Element, seen: &mut [bool], window: &Semaphore) {
        if el.name != "message" {
            return;
        }
        if el.attr("type") == Some("error") {
            self.errors.add_msg(format!("message error: {}", el.describe_error()));
            return;
        }
        let Some(body) = el.child("body") else {
            return;
        };
        let mut it = body.text.split_ascii_whitespace();
        let (Some(Ok(seq)), Some(Ok(sent))) = (it.next().map(str::parse::<usize>), it.next().map(str::parse::<u64>))
        else {
            return;
        };
        if seq >= seen.len() || seen[seq] {
            self.duplicates += 1;
            return;
        }
        seen[seq] = true;
        self.received += 1;
        self.latency.record_micros(now_us().saturating_sub(sent));
        self.last_arrival = Some(Instant::now());
        window.add_permits(1);
    }
}

/// Receive until all `m` messages arrived, or nothing arrived for `loss_timeout`.
async fn receive(
    mut reader: SessionReader,
    mut writer: Option<SessionWriter>,
    m: usize,
    window: Arc<Semaphore>,
    loss_timeout: Duration,
    deadline: Instant,
    mut start: watch::Receiver<bool>,
) -> (RecvStats, SessionReader, Option<SessionWriter>) {
    let mut st = RecvStats::default();
    let mut seen = vec![false; m];
    runner::until_set(&mut start).await;
    let read = runner::read_counted(
        &mut reader,
        writer.as_mut(),
        m,
        (loss_timeout, deadline),
        "receiver",
        |el| {
            st.record(&el, &mut seen, &window);
            st.received as usize
        },
    )
    .await;
    if let Err(e) = read {
        st.errors.add(&e);
    }
    // Unblock the sender if we gave up.
    window.close();
    (st, reader, writer)
}

/// Send `m` messages to `to`, keeping at most `window` permits' worth in flight.
#[allow(clippy::too_many_arguments)]
async fn send(
    writer: SessionWriter,
    to: String,
    m: usize,
    pad: Arc<String>,
    window: Arc<Semaphore>,
    loss_timeout: Duration,
    deadline: Instant,
    start: watch::Receiver<bool>,
) -> (SendStats, SessionWriter) {
    let to = escape(&to).into_owned();
    runner::send_windowed(writer, m, window, loss_timeout, deadline, start, |buf, seq| {
        write!(
            buf,
            "<message to='{to}' type='chat' id='m{seq}'><body>{seq} {}{pad}</body></message>",
            now_us()
        )
    })
    .await
}

/// Read (and discard) whatever arrives on a sender's stream until told to stop,
/// counting bounced messages.
async fn drain(mut reader: SessionReader, mut stop: watch::Receiver<bool>) -> (u64, SessionReader) {
    let mut bounced = 0;
    loop {
        tokio::select! {
            _ = runner::until_set(&mut stop) => break,
            r = reader.next_element() => match r {
                Ok(Some(el)) if el.name == "message" && el.attr("type") == Some("error") => bounced += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
        }
    }
    (bounced, reader)
}

pub async fn run(env: Env, p: MsgParams) -> Result<Value> {
    let mut report = json!({
        "scenario": "messages", "target": env.target(),
        "pairs": p.pairs, "messages_per_pair": p.messages, "window": p.window,
        "body_pad_bytes": p.body_bytes,
    });
    let per_unit = if p.via.is_some() { 1 } else { 2 };
    report["via"] = json!(p.via);
    let n = p.pairs * per_unit;
    if env.args.register {
        report["registration"] = runner::register_users(&env, runner::distinct_users(&env, n)).await;
    }
    let mut logged = runner::login_many(&env, n).await;
    report["logins"] = logged.report();

    let (start_tx, start_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let pad = Arc::new("x".repeat(p.body_bytes));
    let mut tasks = Vec::new();
    let mut sessions = logged.sessions.drain(..);
    let mut incomplete_pairs = 0;
    loop {
        let (sender, receiver) = match &p.via {
            Some(_) => match sessions.next() {
                None => break,
                Some(s) => (s, None),
            },
            None => match (sessions.next(), sessions.next()) {
                (Some(a), Some(b)) => (a, Some(b)),
                _ => break,
            },
        };
        let Some(sender) = sender else {
            incomplete_pairs += 1;
            continue;
        };
        let window = Arc::new(Semaphore::new(p.window.max(1)));
        let Session {
            reader, writer, jid, ..
        } = sender;
        // Pair mode: the partner receives, the sender's own stream is drained for
        // bounces. Echo mode: the sender's own stream receives the answers.
        let (to, rx_reader, rx_writer, drain_reader) = match (&p.via, receiver) {
            (Some(via), _) => (if via == "self" { jid } else { via.clone() }, reader, None, None),
            (None, Some(Some(r))) => (r.jid.clone(), r.reader, Some(r.writer), Some(reader)),
            (None, _) => {
                incomplete_pairs += 1;
                continue;
            }
        };
        let rx = tokio::spawn(receive(
            rx_reader,
            rx_writer,
            p.messages,
            window.clone(),
            p.loss_timeout,
            env.deadline,
            start_rx.clone(),
        ));
        let dr = drain_reader.map(|r| tokio::spawn(drain(r, stop_rx.clone())));
        let tx = tokio::spawn(send(
            writer,
            to,
            p.messages,
            pad.clone(),
            window,
            p.loss_timeout,
            env.deadline,
            start_rx.clone(),
        ));
        tasks.push((tx, rx, dr));
    }
    drop(sessions);
    let active_pairs = tasks.len();

    let meter = CpuMeter::start(env.args.pid);
    let started = Instant::now();
    let _ = start_tx.send(true);

    let mut latency = Latencies::default();
    let mut errors = ErrorTally::default();
    let (mut sent, mut received, mut dups, mut stalls, mut bounced) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut last_arrival = started;
    let mut finished = Vec::new();
    for (tx, rx, dr) in tasks {
        let (ss, writer) = tx.await?;
        let (rs, rreader, rwriter) = rx.await?;
        sent += ss.sent;
        stalls += ss.stalls;
        errors.merge(ss.errors);
        received += rs.received;
        dups += rs.duplicates;
        errors.merge(rs.errors);
        latency.merge(rs.latency);
        if let Some(t) = rs.last_arrival {
            last_arrival = last_arrival.max(t);
        }
        finished.push((writer, rreader, rwriter, dr));
    }
    let elapsed = last_arrival.duration_since(started).as_secs_f64();
    let cpu = meter.report();

    let _ = stop_tx.send(true);
    let wait = env.close_wait();
    let mut closes = Vec::new();
    for (writer, rreader, rwriter, dr) in finished {
        match (dr, rwriter) {
            (Some(dr), Some(rwriter)) => {
                let (b, reader) = dr.await?;
                bounced += b;
                closes.push(tokio::spawn(xmpp::close_halves(reader, writer, wait)));
                closes.push(tokio::spawn(xmpp::close_halves(rreader, rwriter, wait)));
            }
            // Echo mode: one session, its reader was the receiver.
            _ => closes.push(tokio::spawn(xmpp::close_halves(rreader, writer, wait))),
        }
    }
    for c in closes {
        let _ = c.await;
    }

    let expected = (active_pairs * p.messages) as u64;
    report["active_pairs"] = json!(active_pairs);
    report["incomplete_pairs"] = json!(incomplete_pairs);
    report["sent"] = json!(sent);
    report["received"] = json!(received);
    report["lost"] = json!(sent.saturating_sub(received));
    report["not_sent"] = json!(expected.saturating_sub(sent));
    report["duplicates"] = json!(dups);
    report["bounced"] = json!(bounced);
    report["window_stalls"] = json!(stalls);
    report["elapsed_s"] = json!(round3(elapsed));
    report["messages_per_s"] = json!(round3(received as f64 / elapsed.max(1e-9)));
    report["latency"] = latency.summary();
    report["errors"] = errors.report(MAX_REASONS);
    report["cpu"] = cpu;
    report["ok"] = json!(incomplete_pairs == 0 && received == expected && active_pairs == p.pairs);
    Ok(report)
}
