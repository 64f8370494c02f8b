//! `placement`: how well a pool's placement strategy keeps conversations inside one node.
//!
//! 1. Regenerates the clustered social graph of [`crate::graph`] from its seed (the
//!    accounts and rosters must already be in the store: `register`, then `graph --sql`).
//! 2. Logs every user in through the pool's redirector (`poolxmpp redirect`), in a seeded
//!    random order at bounded concurrency, following `<see-other-host/>` to the home node
//!    and retrying (with backoff) on `<resource-constraint/>` and other transient refusals.
//!    Every session stays open; a reader task per session drains presence, answers pings
//!    and counts workload messages from the moment it is bound.
//! 3. Once the nodes' counters have settled, reads `poolxmpp stats` of every node, has
//!    each user send K chat messages to random roster contacts (bare JIDs; every contact
//!    is online), waits until all have arrived (or nothing arrives for the loss timeout),
//!    lets the counters settle again and reads the stats once more.
//!
//! The crossed fraction is Δ`stanzas_forwarded` ÷ Δ`stanzas_to_local_sessions` summed over
//! the nodes (every stanza ends in exactly one local hand-over), so it covers exactly the
//! workload's messages plus whatever else the servers did in that window (reported as
//! `other_local_stanzas`). The client's own view (which node each user ended up on, and
//! whether sender and recipient differ) is reported beside it as a cross-check. Balance is
//! max ÷ mean of the nodes' `sessions`.
//!
//! Sessions are not closed politely at the end (5,000 unavailable-presence broadcasts
//! would only add noise); the connections are dropped when the tool exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Mutex};

use crate::graph::{self, GraphArgs, Rng};
use crate::runner::{self, Env, MAX_REASONS};
use crate::stats::{round3, CpuMeter, ErrorTally, Latencies};
use crate::xmpp::{self, ClientOpts, SessionReader, SessionWriter, StreamError};

/// Redirects one login follows before giving up (redirector → home is one).
const MAX_HOPS: usize = 3;

pub struct PlacementParams {
    pub graph: GraphArgs,
    pub label: String,
    pub messages_per_user: usize,
    /// Messages per second over all senders (0 = as fast as the tool can write).
    pub rate: u64,
    pub loss_timeout: Duration,
    /// Further attempts per login after a transient failure.
    pub retries: u32,
    pub server_bin: PathBuf,
    pub node_configs: Vec<PathBuf>,
    pub redirector_config: Option<PathBuf>,
    /// Longest wait for the nodes' counters to stop moving before each reading.
    pub settle: Duration,
}

/// What the reader tasks count, shared by all of them.
struct Tally {
    /// One flag per workload message (sender × K + k).
    seen: Vec<AtomicBool>,
    received: AtomicU64,
    duplicates: AtomicU64,
    bounced: AtomicU64,
    presences: AtomicU64,
    dropped: AtomicU64,
    last_arrival_us: AtomicU64,
}

struct Online {
    node: SocketAddr,
    writer: Arc<Mutex<SessionWriter>>,
    reader: tokio::task::JoinHandle<()>,
}

/// Result of one user's login (with its redirects and retries).
struct LoginOutcome {
    result: Result<Online>,
    elapsed: Duration,
    retries: u32,
    redirects: u32,
}

fn now_us(base: Instant) -> u64 {
    base.elapsed().as_micros() as u64
}

/// Drain one session until told to stop: answer server IQs, count workload messages.
async fn read_session(
    mut reader: SessionReader,
    writer: Arc<Mutex<SessionWriter>>,
    tally: Arc<Tally>,
    base: Instant,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let el = tokio::select! {
            _ = runner::until_set(&mut stop) => return,
            r = reader.next_element() => match r {
                Ok(Some(el)) => el,
                Ok(None) | Err(_) => {
                    if !*stop.borrow() {
                        tally.dropped.fetch_add(1, Relaxed);
                    }
                    return;
                }
            },
        };
        if let Some(reply) = xmpp::iq_reply(&el) {
            let _ = xmpp::send(&mut *writer.lock().await, &reply).await;
            continue;
        }
        match el.name.as_str() {
            "presence" => {
                tally.presences.fetch_add(1, Relaxed);
            }
            "message" if el.attr("type") == Some("error") => {
                tally.bounced.fetch_add(1, Relaxed);
            }
            "message" => {
                let id = el
                    .child("body")
                    .and_then(|b| b.text.trim().strip_prefix('w'))
                    .and_then(|n| n.parse::<usize>().ok());
                let Some(flag) = id.and_then(|i| tally.seen.get(i)) else {
                    continue;
                };
                if flag.swap(true, Relaxed) {
                    tally.duplicates.fetch_add(1, Relaxed);
                } else {
                    tally.received.fetch_add(1, Relaxed);
                    tally.last_arrival_us.fetch_max(now_us(base), Relaxed);
                }
            }
            _ => {}
        }
    }
}

/// The loopback address named by a `<see-other-host/>`.
fn redirect_target(content: &str) -> Result<SocketAddr> {
    let addr: SocketAddr = content
        .parse()
        .with_context(|| format!("see-other-host names {content:?}, not an IP:port"))?;
    if !addr.ip().is_loopback() {
        bail!("see-other-host names {addr}; this load tool only targets loopback");
    }
    Ok(addr)
}

/// Log `user` in through `entry`, following redirects, retrying transient refusals.
async fn login_user(
    opts: Arc<ClientOpts>,
    entry: SocketAddr,
    user: String,
    retries: u32,
    mut jitter: Rng,
) -> (Result<(xmpp::Session, SocketAddr)>, u32, u32) {
    let (mut tries, mut redirects) = (0u32, 0u32);
    loop {
        let mut addr = entry;
        let mut attempt: Result<(xmpp::Session, SocketAddr)> = Err(anyhow::anyhow!("no attempt"));
        for _ in 0..MAX_HOPS {
            match xmpp::login_at(&opts, addr, &user, "placement").await {
                Ok(s) => {
                    attempt = Ok((s, addr));
                    break;
                }
                Err(e) => match StreamError::find(&e).filter(|s| s.condition == "see-other-host") {
                    Some(se) => match redirect_target(&se.content) {
                        Ok(next) => {
                            redirects += 1;
                            addr = next;
                            attempt = Err(e.context(format!("still redirected after {MAX_HOPS} hops")));
                        }
                        Err(bad) => {
                            attempt = Err(bad);
                            break;
                        }
                    },
                    None => {
                        attempt = Err(e);
                        break;
                    }
                },
            }
        }
        let err = match attempt {
            Ok(v) => return (Ok(v), tries, redirects),
            Err(e) => e,
        };
        // Wrong credentials or a redirect loop will not get better by retrying.
        let permanent = format!("{err:#}").contains("sasl failure") || format!("{err:#}").contains("still redirected");
        let left = opts.deadline.saturating_duration_since(Instant::now());
        if permanent || tries >= retries || left < Duration::from_secs(1) {
            return (Err(err), tries, redirects);
        }
        tries += 1;
        let base = 250u64 << tries.min(4); // 0.5 s, 1 s, 2 s, 4 s, 4 s, ...
        let wait = Duration::from_millis(base + (jitter.next_u64() % base));
        tokio::time::sleep(wait.min(left / 2)).await;
    }
}

/// `poolxmpp stats --config F`: the JSON counters of one running node.
async fn node_stats(bin: PathBuf, config: PathBuf) -> Result<Value> {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(&bin)
            .arg("stats")
            .arg("--config")
            .arg(&config)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "{} stats --config {}: {}",
                bin.display(),
                config.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice::<Value>(&out.stdout).context("stats output is not JSON")
    })
    .await?
}

async fn all_stats(p: &PlacementParams) -> Result<Vec<Value>> {
    let mut v = Vec::with_capacity(p.node_configs.len());
    for c in &p.node_configs {
        v.push(node_stats(p.server_bin.clone(), c.clone()).await?);
    }
    Ok(v)
}

fn counter(stats: &[Value], key: &str) -> u64 {
    stats.iter().map(|s| s[key].as_u64().unwrap_or(0)).sum()
}

/// Read the nodes' stats until their stanza counters stop moving (two readings 500 ms
/// apart agree), at most `p.settle`; returns the last reading and whether it settled.
async fn settled_stats(p: &PlacementParams) -> Result<(Vec<Value>, bool)> {
    let until = Instant::now() + p.settle;
    let total = |s: &[Value]| counter(s, "stanzas_to_local_sessions") + counter(s, "stanzas_forwarded");
    let mut last = all_stats(p).await?;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = all_stats(p).await?;
        let same = total(&now) == total(&last);
        last = now;
        if same {
            return Ok((last, true));
        }
    }
    Ok((last, false))
}

fn node_name(stats: &Value, i: usize) -> String {
    stats["node"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("node{i}"))
}

fn max_over_mean(counts: &[u64]) -> f64 {
    let sum: u64 = counts.iter().sum();
    if counts.is_empty() || sum == 0 {
        return 0.0;
    }
    let mean = sum as f64 / counts.len() as f64;
    round3(*counts.iter().max().unwrap_or(&0) as f64 / mean)
}

/// How the communities ended up spread over the nodes: users not on their community's
/// most common node, and how many nodes a community touches (weighted by its size).
fn community_spread(g: &graph::Graph, online: &[Option<Online>]) -> Value {
    let mut per: Vec<std::collections::HashMap<SocketAddr, u64>> = vec![Default::default(); g.sizes.len()];
    for (u, s) in online.iter().enumerate() {
        if let Some(s) = s {
            *per[g.community[u] as usize].entry(s.node).or_default() += 1;
        }
    }
    let (mut users, mut off, mut weighted_nodes, mut whole) = (0u64, 0u64, 0u64, 0u64);
    for counts in &per {
        let total: u64 = counts.values().sum();
        users += total;
        off += total - counts.values().max().copied().unwrap_or(0);
        weighted_nodes += total * counts.len() as u64;
        whole += u64::from(counts.len() == 1);
    }
    json!({
        "count": per.len(),
        "on_one_node": whole,
        "users_off_their_community_majority_node": round3(off as f64 / users.max(1) as f64),
        "nodes_per_community_user_weighted": round3(weighted_nodes as f64 / users.max(1) as f64),
    })
}

pub async fn run(env: Env, p: PlacementParams) -> Result<Value> {
    p.graph.check()?;
    anyhow::ensure!(
        !p.node_configs.is_empty(),
        "give every node's config with --node-config"
    );
    let g = graph::generate(&p.graph);
    let n = g.users();
    let k = p.messages_per_user;
    let entry = env.opts.addr;
    let mut report = json!({
        "scenario": "placement",
        "label": p.label,
        "target": env.target(),
        "graph": g.summary(),
        "seed": p.graph.seed,
        "messages_per_user": k,
    });
    let base = Instant::now();
    let tally = Arc::new(Tally {
        seen: (0..n * k).map(|_| AtomicBool::new(false)).collect(),
        received: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        bounced: AtomicU64::new(0),
        presences: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        last_arrival_us: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    // Logins, in a seeded random order.
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derive(p.graph.seed, 2).shuffle(&mut order);
    let order = Arc::new(order);
    let meter = CpuMeter::start(None);
    let started = Instant::now();
    let (opts, prefix, retries, seed) = (env.opts.clone(), env.args.users_prefix.clone(), p.retries, p.graph.seed);
    let (tally2, stop2) = (tally.clone(), stop_rx.clone());
    let results = runner::run_bounded(n, env.args.concurrency, env.deadline, move |i| {
        let user_idx = order[i];
        let (opts, tally, stop) = (opts.clone(), tally2.clone(), stop2.clone());
        let user = format!("{prefix}{user_idx}");
        async move {
            let t0 = Instant::now();
            let jitter = Rng::derive(seed, 1000 + user_idx as u64);
            let (res, retries, redirects) = login_user(opts, entry, user, retries, jitter).await;
            let result = res.map(|(s, node)| {
                let writer = Arc::new(Mutex::new(s.writer));
                let reader = tokio::spawn(read_session(s.reader, writer.clone(), tally, base, stop));
                Online { node, writer, reader }
            });
            (
                user_idx,
                LoginOutcome {
                    result,
                    elapsed: t0.elapsed(),
                    retries,
                    redirects,
                },
            )
        }
    })
    .await;
    let login_elapsed = started.elapsed();
    let login_cpu = meter.report();
    let mut online: Vec<Option<Online>> = (0..n).map(|_| None).collect();
    let (mut latency, mut errors) = (Latencies::default(), ErrorTally::default());
    let (mut retried, mut retries_total, mut redirects_total, mut served_at_entry) = (0u64, 0u64, 0u64, 0u64);
    for (_, (u, o)) in results {
        retries_total += u64::from(o.retries);
        retried += u64::from(o.retries > 0);
        redirects_total += u64::from(o.redirects);
        match o.result {
            Ok(s) => {
                latency.record(o.elapsed);
                served_at_entry += u64::from(s.node == entry);
                online[u] = Some(s);
            }
            Err(e) => errors.add(&e),
        }
    }
    let established = online.iter().filter(|s| s.is_some()).count();
    report["logins"] = json!({
        "requested": n,
        "established": established,
        "failed": errors.total(),
        "not_attempted": n as u64 - established as u64 - errors.total(),
        "concurrency": env.args.concurrency,
        "elapsed_s": round3(login_elapsed.as_secs_f64()),
        "logins_per_s": round3(established as f64 / login_elapsed.as_secs_f64().max(1e-9)),
        "latency": latency.summary(),
        "redirects_followed": redirects_total,
        "served_by_entry_without_redirect": served_at_entry,
        "users_retried": retried,
        "retries": retries_total,
        "errors": errors.report(MAX_REASONS),
        "cpu": login_cpu,
    });

    // Where the users are, as the client saw it.
    let mut by_addr: std::collections::BTreeMap<String, u64> = Default::default();
    for s in online.iter().flatten() {
        *by_addr.entry(s.node.to_string()).or_default() += 1;
    }
    let client_counts: Vec<u64> = by_addr.values().copied().collect();

    // Counters before the workload, once the login presence traffic is over.
    let (before, settled_before) = settled_stats(&p).await?;
    let node_sessions: Vec<u64> = before.iter().map(|s| s["sessions"].as_u64().unwrap_or(0)).collect();

    // The workload: user u's k-th message goes to a random contact (seeded), the sends
    // interleaved round-robin over the users in login order, paced at `rate`.
    let mut pick = Rng::derive(p.graph.seed, 3);
    let mut plan: Vec<(usize, usize, usize)> = Vec::with_capacity(n * k); // (sender, recipient, id)
    for round in 0..k {
        for u in 0..n {
            let cs = &g.contacts[u];
            if cs.is_empty() {
                continue;
            }
            let v = cs[pick.below(cs.len())] as usize;
            plan.push((u, v, u * k + round));
        }
    }
    let (mut sent, mut not_sent, mut crossing_planned) = (0u64, 0u64, 0u64);
    // [inside the sender's community?][crossed?]
    let mut by_kind = [[0u64; 2]; 2];
    let mut send_errors = ErrorTally::default();
    let domain = env.opts.domain.clone();
    let prefix = env.args.users_prefix.clone();
    let meter = CpuMeter::start(None);
    let work_started = Instant::now();
    let work_start_us = now_us(base);
    for (i, &(u, v, id)) in plan.iter().enumerate() {
        if Instant::now() >= env.deadline {
            send_errors.add_msg("global timeout while sending".into());
            not_sent += (plan.len() - i) as u64;
            break;
        }
        let (Some(from), Some(to)) = (&online[u], &online[v]) else {
            not_sent += 1;
            continue;
        };
        if p.rate > 0 {
            let due = work_started + Duration::from_secs_f64(i as f64 / p.rate as f64);
            if due > Instant::now() + Duration::from_millis(2) {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let stanza = format!("<message to='{prefix}{v}@{domain}' type='chat' id='w{id}'><body>w{id}</body></message>");
        match xmpp::send(&mut *from.writer.lock().await, &stanza).await {
            Ok(()) => {
                sent += 1;
                let crossed = from.node != to.node;
                crossing_planned += u64::from(crossed);
                by_kind[usize::from(g.community[u] == g.community[v])][usize::from(crossed)] += 1;
            }
            Err(e) => send_errors.add(&e.context("send")),
        }
    }
    let send_elapsed = work_started.elapsed();
    // Wait until every sent message has arrived, or nothing has for the loss timeout.
    let mut last = (tally.received.load(Relaxed), Instant::now());
    loop {
        let got = tally.received.load(Relaxed);
        if got >= sent || Instant::now() >= env.deadline {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() >= p.loss_timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = tally.received.load(Relaxed);
    let last_arrival = tally.last_arrival_us.load(Relaxed).saturating_sub(work_start_us);
    let work_cpu = meter.report();
    let (after, settled_after) = settled_stats(&p).await?;

    let d = |key: &str| counter(&after, key).saturating_sub(counter(&before, key));
    let (forwarded, local) = (d("stanzas_forwarded"), d("stanzas_to_local_sessions"));
    let crossed = if local > 0 {
        round3(forwarded as f64 / local as f64)
    } else {
        0.0
    };
    let mut nodes = Map::new();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        nodes.insert(node_name(b, i), json!({ "before": b, "after": a }));
    }
    let lost = sent.saturating_sub(received);
    report["workload"] = json!({
        "planned": plan.len(),
        "sent": sent,
        "not_sent": not_sent,
        "received": received,
        "lost": lost,
        "duplicates": tally.duplicates.load(Relaxed),
        "bounced": tally.bounced.load(Relaxed),
        "send_elapsed_s": round3(send_elapsed.as_secs_f64()),
        "last_arrival_s": round3(last_arrival as f64 / 1e6),
        "rate_limit_per_s": p.rate,
        "errors": send_errors.report(MAX_REASONS),
        "cpu": work_cpu,
    });
    report["sessions_per_node"] = before
        .iter()
        .enumerate()
        .map(|(i, s)| (node_name(s, i), json!(s["sessions"])))
        .collect::<Map<String, Value>>()
        .into();
    report["max_over_mean_sessions"] = json!(max_over_mean(&node_sessions));
    report["crossed"] = json!({
        "forwarded": forwarded,
        "local": local,
        "fraction": crossed,
        "other_local_stanzas": local.saturating_sub(received),
        "counters_settled": settled_before && settled_after,
    });
    report["client_view"] = json!({
        "sessions_per_address": by_addr,
        "max_over_mean_sessions": max_over_mean(&client_counts),
        "crossed_fraction": if sent > 0 { round3(crossing_planned as f64 / sent as f64) } else { 0.0 },
        "presences_received": tally.presences.load(Relaxed),
        "sessions_dropped": tally.dropped.load(Relaxed),
    });
    let share = |k: [u64; 2]| round3(k[1] as f64 / (k[0] + k[1]).max(1) as f64);
    report["client_view"]["messages_inside_community"] = json!(by_kind[1][0] + by_kind[1][1]);
    report["client_view"]["crossed_fraction_inside_community"] = json!(share(by_kind[1]));
    report["client_view"]["crossed_fraction_across_communities"] = json!(share(by_kind[0]));
    report["client_view"]["communities"] = community_spread(&g, &online);
    report["nodes"] = Value::Object(nodes);
    if let Some(cfg) = &p.redirector_config {
        report["redirector"] = node_stats(p.server_bin.clone(), cfg.clone())
            .await
            .unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    }
    report["ok"] = json!(
        established == n && lost == 0 && not_sent == 0 && tally.dropped.load(Relaxed) == 0 && send_errors.total() == 0
    );

    // Stop the readers and drop every connection.
    let _ = stop_tx.send(true);
    for s in online.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), s.reader).await;
        drop(s.writer);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_only_to_loopback() {
        assert_eq!(
            redirect_target("127.0.0.3:16222").unwrap(),
            "127.0.0.3:16222".parse().unwrap()
        );
        assert_eq!(redirect_target("[::1]:5222").unwrap(), "[::1]:5222".parse().unwrap());
        assert!(redirect_target("192.0.2.1:5222").is_err());
        assert!(redirect_target("node.example:5222").is_err());
    }

    #[test]
    fn balance() {
        assert_eq!(max_over_mean(&[1250, 1250, 1250, 1250]), 1.0);
        assert_eq!(max_over_mean(&[1000, 1000, 1000, 2000]), 1.6);
        assert_eq!(max_over_mean(&[]), 0.0);
    }
}
