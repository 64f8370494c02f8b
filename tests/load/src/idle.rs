//! `idle`: memory cost of an idle, logged-in connection on the server.
//!
//! RSS of the server process is sampled before any connection is opened and
//! again once all N sessions are up and a settle time has passed (so lazy
//! allocations and GC, e.g. Lua's, can catch up). (after - before) / N is the
//! per-connection figure that determines how many users fit in a given box.
//! Sessions answer server pings while held so they stay alive.

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::runner::{self, Env};
use crate::stats::{proc_rss_kib, round3, CpuMeter};
use crate::xmpp::{self, Session};

pub struct IdleParams {
    pub connections: usize,
    pub settle: Duration,
    pub hold: Duration,
}

/// Keep one session alive until `stop` flips; answer IQ gets. Returns whether
/// the session was still up at stop time.
async fn hold(session: Session, mut stop: watch::Receiver<bool>, wait: Duration) -> bool {
    let Session {
        mut reader, mut writer, ..
    } = session;
    let mut alive = true;
    loop {
        tokio::select! {
            _ = runner::until_set(&mut stop) => break,
            r = reader.next_element() => match r {
                Ok(Some(el)) => {
                    if let Some(reply) = xmpp::iq_reply(&el) {
                        if xmpp::send(&mut writer, &reply).await.is_err() {
                            alive = false;
                            break;
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    alive = false;
                    break;
                }
            },
        }
    }
    if alive {
        xmpp::close_halves(reader, writer, wait).await;
    }
    alive
}

pub async fn run(env: Env, p: IdleParams) -> Result<Value> {
    let Some(pid) = env.args.pid else {
        bail!("idle needs --pid <server pid> to read its VmRSS");
    };
    let mut report = json!({ "scenario": "idle", "target": env.target(), "pid": pid });
    if env.args.register {
        report["registration"] = runner::register_users(&env, runner::distinct_users(&env, p.connections)).await;
    }
    let Some(rss_before) = proc_rss_kib(pid) else {
        bail!("cannot read /proc/{pid}/status");
    };
    let meter = CpuMeter::start(Some(pid));
    let mut logged = runner::login_many(&env, p.connections).await;
    report["logins"] = logged.report();
    let established = logged.established();

    let (stop_tx, stop_rx) = watch::channel(false);
    let wait = env.close_wait();
    let holders: Vec<_> = logged
        .sessions
        .drain(..)
        .flatten()
        .map(|s| tokio::spawn(hold(s, stop_rx.clone(), wait)))
        .collect();

    tokio::time::sleep(p.settle.min(env.remaining())).await;
    let rss_after = proc_rss_kib(pid).unwrap_or(0);
    let delta = rss_after as i64 - rss_before as i64;
    report["rss_before_kib"] = json!(rss_before);
    report["rss_after_kib"] = json!(rss_after);
    report["rss_delta_kib"] = json!(delta);
    report["kib_per_connection"] = json!(round3(delta as f64 / established.max(1) as f64));
    report["kib_per_requested_connection"] = json!(round3(delta as f64 / p.connections.max(1) as f64));
    report["cpu_during_connect_and_settle"] = meter.report();

    // Hold, leaving enough of the global budget for the polite closes.
    let hold_for = p.hold.min(env.remaining().saturating_sub(Duration::from_secs(6)));
    tokio::time::sleep(hold_for).await;
    let _ = stop_tx.send(true);
    let mut alive = 0;
    for h in holders {
        if matches!(h.await, Ok(true)) {
            alive += 1;
        }
    }
    report["held_s"] = json!(round3(hold_for.as_secs_f64()));
    report["alive_at_end"] = json!(alive);
    report["dropped_while_idle"] = json!(established - alive);
    tokio::time::sleep(Duration::from_secs(1).min(env.remaining())).await;
    report["rss_after_close_kib"] = json!(proc_rss_kib(pid));
    report["ok"] = json!(established == p.connections && alive == established);
    Ok(report)
}
