//! `fanout`: what one plugin call that fans a stanza out to many recipients costs, in
//! one `send-many` call or in one `send` call per recipient (issue 12).
//!
//! N receiver sessions log in as `{prefix}0..{prefix}N-1`, each bound to the resource
//! `r0`, so they are exactly the recipients the event-probe example plugin addresses
//! (`PREFIX{a}@domain/r0`), and one sender session logs in as `{prefix}N`. The sender
//! sends M chat commands to the plugin (`fanout PREFIX N 1` or `each PREFIX N 1`), at
//! most W unanswered; every command makes the plugin send one headline to each receiver
//! and answer `… routed N`. Reported: copies delivered per second (the N×M headlines
//! over the time from the first command to the last copy), the commands' answer
//! latency, lost copies, and the server's CPU time per delivered copy.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::runner::{self, Env, SendStats, MAX_REASONS};
use crate::stats::{now_us, round3, CpuMeter, ErrorTally, Latencies};
use crate::xml::{escape, Element};
use crate::xmpp::{self, Session, SessionReader, SessionWriter};

/// The resource every receiver binds: the plugin addresses `/r0` (one resource each).
const RESOURCE: &str = "r0";

/// How the plugin hands the copies to the host.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Mode {
    /// One `send-many` call per command (the plugin's `fanout` command).
    Many,
    /// One `send` call per recipient (the plugin's `each` command).
    Each,
}

impl Mode {
    fn command(self) -> &'static str {
        match self {
            Mode::Many => "fanout",
            Mode::Each => "each",
        }
    }
}

pub struct FanoutParams {
    pub recipients: usize,
    pub messages: usize,
    pub window: usize,
    pub mode: Mode,
    /// The plugin's address; `None`: `probe.{domain}`.
    pub via: Option<String>,
    pub loss_timeout: Duration,
}

/// One receiver's view: the headlines it got.
#[derive(Default)]
struct Copies {
    received: u64,
    last_arrival: Option<Instant>,
    errors: ErrorTally,
}

/// Count headlines until `expected` arrived or none came for `loss_timeout`.
async fn receive(
    mut reader: SessionReader,
    mut writer: SessionWriter,
    expected: u64,
    loss_timeout: Duration,
    deadline: Instant,
    mut start: watch::Receiver<bool>,
) -> (Copies, SessionReader, SessionWriter) {
    let mut st = Copies::default();
    runner::until_set(&mut start).await;
    let read = runner::read_counted(
        &mut reader,
        Some(&mut writer),
        expected as usize,
        (loss_timeout, deadline),
        "receiver",
        |el| {
            match (el.name.as_str(), el.attr("type")) {
                ("message", Some("headline")) => {
                    st.received += 1;
                    st.last_arrival = Some(Instant::now());
                }
                ("message", Some("error")) => st.errors.add_msg(format!("message error: {}", el.describe_error())),
                _ => {}
            }
            st.received as usize
        },
    )
    .await;
    if let Err(e) = read {
        st.errors.add(&e);
    }
    (st, reader, writer)
}

/// The sender's view of the plugin's answers.
#[derive(Default)]
struct Answers {
    answered: u64,
    /// Sum of the `N` in `… routed N`: the copies the plugin says it routed.
    routed: u64,
    latency: Latencies,
    errors: ErrorTally,
}

impl Answers {
    /// Take one answer to command `f{seq}` (sent at `sent_at[seq]`) and free its slot
    /// in the window. Anything else on the sender's stream is ignored.
    fn record(&mut self, el: &Element, sent_at: &[AtomicU64], window: &Semaphore) {
        if el.name != "message" {
            return;
        }
        let seq = el.attr("id").and_then(|id| id.strip_prefix('f')?.parse::<usize>().ok());
        let Some(sent) = seq.and_then(|s| sent_at.get(s)) else {
            return;
        };
        if el.attr("type") == Some("error") {
            self.errors.add_msg(format!("command refused: {}", el.describe_error()));
        } else {
            let body = el.child("body").map_or("", |b| b.text.as_str());
            match body
                .rsplit_once(" routed ")
                .and_then(|(_, n)| n.trim().parse::<u64>().ok())
            {
                Some(n) => self.routed += n,
                None => self.errors.add_msg(format!("unexpected answer: {body}")),
            }
        }
        self.answered += 1;
        self.latency
            .record_micros(now_us().saturating_sub(sent.load(Ordering::Relaxed)));
        window.add_permits(1);
    }
}

/// Read the plugin's answers on the sender's stream until all `m` came or none came
/// for `loss_timeout`; then close the window so the sending half stops too.
async fn collect_answers(
    mut reader: SessionReader,
    m: usize,
    sent_at: Arc<[AtomicU64]>,
    window: Arc<Semaphore>,
    loss_timeout: Duration,
    deadline: Instant,
    mut start: watch::Receiver<bool>,
) -> (Answers, SessionReader) {
    let mut st = Answers::default();
    runner::until_set(&mut start).await;
    let read = runner::read_counted(&mut reader, None, m, (loss_timeout, deadline), "sender", |el| {
        st.record(&el, &sent_at, &window);
        st.answered as usize
    })
    .await;
    if let Err(e) = read {
        st.errors.add(&e);
    }
    window.close();
    (st, reader)
}

/// The (user, resource) of every session: the receivers, then the sender.
fn accounts(env: &Env, recipients: usize) -> Vec<(String, String)> {
    let prefix = &env.args.users_prefix;
    let mut users: Vec<(String, String)> = (0..recipients)
        .map(|i| (format!("{prefix}{i}"), RESOURCE.to_string()))
        .collect();
    users.push((format!("{prefix}{recipients}"), env.resource(recipients)));
    users
}

pub async fn run(env: Env, p: FanoutParams) -> Result<Value> {
    let via = p.via.clone().unwrap_or_else(|| format!("probe.{}", env.args.domain));
    let command = format!("{} {} {} 1", p.mode.command(), env.args.users_prefix, p.recipients);
    let mut report = json!({
        "scenario": "fanout", "target": env.target(), "mode": p.mode.command(), "via": via,
        "recipients": p.recipients, "messages": p.messages, "window": p.window,
    });
    if env.args.register {
        report["registration"] = runner::register_users(&env, p.recipients + 1).await;
    }
    let mut logged = runner::login_as(&env, accounts(&env, p.recipients)).await;
    report["logins"] = logged.report();
    let Some(Some(sender)) = logged.sessions.pop() else {
        report["ok"] = json!(false);
        return Ok(report);
    };
    // A receiver bound to another resource than the plugin addresses would look lost.
    let mut errors = ErrorTally::default();
    let receivers: Vec<Session> = logged.sessions.into_iter().flatten().collect();
    for s in receivers.iter().filter(|s| !s.jid.ends_with(&format!("/{RESOURCE}"))) {
        errors.add_msg(format!("bound as {}, not /{RESOURCE}", s.jid));
    }

    let (start_tx, start_rx) = watch::channel(false);
    let expected_each = p.messages as u64;
    let rx: Vec<_> = receivers
        .into_iter()
        .map(|s| {
            tokio::spawn(receive(
                s.reader,
                s.writer,
                expected_each,
                p.loss_timeout,
                env.deadline,
                start_rx.clone(),
            ))
        })
        .collect();
    let window = Arc::new(Semaphore::new(p.window.max(1)));
    let sent_at: Arc<[AtomicU64]> = (0..p.messages).map(|_| AtomicU64::new(0)).collect();
    let answers = tokio::spawn(collect_answers(
        sender.reader,
        p.messages,
        sent_at.clone(),
        window.clone(),
        p.loss_timeout,
        env.deadline,
        start_rx.clone(),
    ));
    let (to, body) = (escape(&via).into_owned(), escape(&command).into_owned());
    let commands = tokio::spawn(runner::send_windowed(
        sender.writer,
        p.messages,
        window,
        p.loss_timeout,
        env.deadline,
        start_rx,
        move |buf, seq| {
            sent_at[seq].store(now_us(), Ordering::Relaxed);
            write!(
                buf,
                "<message to='{to}' type='chat' id='f{seq}'><body>{body}</body></message>"
            )
        },
    ));

    let meter = CpuMeter::start(env.args.pid);
    let started = Instant::now();
    let _ = start_tx.send(true);

    let (sent, writer): (SendStats, SessionWriter) = commands.await?;
    let (mut answered, reader) = answers.await?;
    let (mut received, mut last_arrival) = (0u64, started);
    let mut halves = vec![(reader, writer)];
    for r in rx {
        let (c, reader, writer) = r.await?;
        received += c.received;
        last_arrival = last_arrival.max(c.last_arrival.unwrap_or(started));
        errors.merge(c.errors);
        halves.push((reader, writer));
    }
    let elapsed = last_arrival.duration_since(started).as_secs_f64();
    let server_cpu = meter.server_cpu();
    let cpu = meter.report();
    close_all(&env, halves).await;

    let active = report["logins"]["established"].as_u64().unwrap_or(0).saturating_sub(1);
    let expected = active * expected_each;
    errors.merge(sent.errors);
    errors.merge(answered.errors);
    report["commands_sent"] = json!(sent.sent);
    report["window_stalls"] = json!(sent.stalls);
    report["answered"] = json!(answered.answered);
    report["routed"] = json!(answered.routed);
    report["expected_copies"] = json!(expected);
    report["received"] = json!(received);
    report["lost"] = json!(expected.saturating_sub(received));
    report["elapsed_s"] = json!(round3(elapsed));
    report["deliveries_per_s"] = json!(round3(received as f64 / elapsed.max(1e-9)));
    report["commands_per_s"] = json!(round3(answered.answered as f64 / elapsed.max(1e-9)));
    report["answer_latency"] = answered.latency.summary();
    report["server_cpu_us_per_copy"] =
        json!(server_cpu.map(|c| round3(c.as_secs_f64() * 1e6 / received.max(1) as f64)));
    report["errors"] = errors.report(MAX_REASONS);
    report["cpu"] = cpu;
    report["ok"] = json!(
        active as usize == p.recipients
            && received == expected
            && answered.answered == p.messages as u64
            && errors.total() == 0
    );
    Ok(report)
}

/// Close every session politely, all at once (bounded by the close wait).
async fn close_all(env: &Env, halves: Vec<(SessionReader, SessionWriter)>) {
    let wait = env.close_wait();
    let closes: Vec<_> = halves
        .into_iter()
        .map(|(r, w)| tokio::spawn(xmpp::close_halves(r, w, wait)))
        .collect();
    for c in closes {
        let _ = c.await;
    }
}
