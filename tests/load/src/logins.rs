//! `logins`: connection churn. Each item is a complete client lifecycle -
//! connect, TLS, SASL, bind, presence, polite close - which is the most
//! expensive thing a client does and what a server sees in a reconnect storm.
//! Latency covers connect -> presence sent; the close is excluded from the
//! latency but included in logins/s (it is part of the server's work).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};

use crate::runner::{self, Env, MAX_REASONS};
use crate::stats::{round3, CpuMeter, ErrorTally, Latencies};
use crate::xmpp::{self, LoginTimings};

pub async fn run(env: Env, count: usize) -> Result<Value> {
    let mut report = json!({ "scenario": "logins", "target": env.target() });
    if env.args.register {
        report["registration"] = runner::register_users(&env, runner::distinct_users(&env, count)).await;
    }
    let meter = CpuMeter::start(env.args.pid);
    let started = Instant::now();
    let opts = env.opts.clone();
    let names: Arc<Vec<(String, String)>> = Arc::new((0..count).map(|i| (env.user(i), env.resource(i))).collect());
    let deadline = env.deadline;
    let results = runner::run_bounded(count, env.args.concurrency, env.deadline, move |i| {
        let (opts, names) = (opts.clone(), names.clone());
        async move {
            let (user, resource) = &names[i];
            let session = xmpp::login(&opts, user, resource).await?;
            let timings = session.timings;
            let wait = std::time::Duration::from_secs(5).min(deadline.saturating_duration_since(Instant::now()));
            let clean = session.close(wait).await;
            Ok::<(LoginTimings, bool), anyhow::Error>((timings, clean))
        }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();

    let mut total = Latencies::default();
    let mut tcp = Latencies::default();
    let mut tls = Latencies::default();
    let mut auth = Latencies::default();
    let mut bind = Latencies::default();
    let mut errors = ErrorTally::default();
    let mut unclean = 0u64;
    for (_, r) in &results {
        match r {
            Ok((t, clean)) => {
                total.record(t.total);
                tcp.record(t.tcp);
                tls.record(t.tls.saturating_sub(t.tcp));
                auth.record(t.auth.saturating_sub(t.tls));
                bind.record(t.bind.saturating_sub(t.auth));
                if !clean {
                    unclean += 1;
                }
            }
            Err(e) => errors.add(e),
        }
    }
    let ok = total.len();
    report["requested"] = json!(count);
    report["succeeded"] = json!(ok);
    report["failed"] = json!(errors.total());
    report["not_attempted"] = json!(count - results.len());
    report["concurrency"] = json!(env.args.concurrency);
    report["elapsed_s"] = json!(round3(elapsed));
    report["logins_per_s"] = json!(round3(ok as f64 / elapsed.max(1e-9)));
    report["latency"] = total.summary();
    report["phases"] = json!({
        "tcp": tcp.summary(),
        "tls": tls.summary(),
        "stream_and_sasl": auth.summary(),
        "restart_bind_presence": bind.summary(),
    });
    report["unclean_closes"] = json!(unclean);
    report["errors"] = errors.report(MAX_REASONS);
    report["scram_pbkdf2_derivations"] = json!(env.opts.scram.derivations.load(Ordering::Relaxed));
    report["cpu"] = meter.report();
    Ok(report)
}
