//! `block`: give a fraction of the users a XEP-0191 blocking rule before a run, so a
//! filter plugin with `interest = "declared"` (the blocklist example) has rules for them
//! and is asked about their stanzas, while every other user's stanzas take the fast path.
//!
//! Every `round(1/fraction)`-th user from `{prefix}0` on logs in, blocks one JID that
//! takes no part in the run (`nobody@{domain}` by default, so every later message still
//! passes), waits for the result and logs out. Not timed: the rules stay in the server's
//! store for the `messages` runs that follow.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use serde_json::{json, Value};

use crate::runner::{self, Env, MAX_REASONS};
use crate::stats::{round3, ErrorTally};
use crate::xml::escape;
use crate::xmpp::{self, ClientOpts};

pub struct BlockParams {
    /// Users `{prefix}0..{prefix}count-1` take part in the run.
    pub count: usize,
    pub fraction: f64,
    /// The blocked JID; `None`: `nobody@{domain}`.
    pub jid: Option<String>,
}

/// Every how many users one blocks: `fraction` 0.1 is every 10th.
fn step(fraction: f64) -> Result<usize> {
    ensure!(
        fraction > 0.0 && fraction <= 1.0,
        "--fraction must be in (0, 1], got {fraction}"
    );
    Ok((1.0 / fraction).round() as usize)
}

/// Log `user` in, block `jid`, wait for the server's answer, log out.
async fn block_one(
    opts: &ClientOpts,
    user: &str,
    resource: &str,
    jid: &str,
    close_wait: std::time::Duration,
) -> Result<()> {
    let s = xmpp::login(opts, user, resource).await?;
    let (mut reader, mut writer) = (s.reader, s.writer);
    let iq = format!(
        "<iq type='set' id='block1'><block xmlns='urn:xmpp:blocking'><item jid='{}'/></block></iq>",
        escape(jid)
    );
    xmpp::send(&mut writer, &iq).await?;
    let mut answer = None;
    let read = runner::read_stanzas(
        &mut reader,
        Some(&mut writer),
        opts.op_timeout,
        opts.deadline,
        "block",
        |el| match el.name == "iq" && el.attr("id") == Some("block1") {
            true => {
                answer = Some(el);
                ControlFlow::Break(())
            }
            false => ControlFlow::Continue(()),
        },
    )
    .await;
    xmpp::close_halves(reader, writer, close_wait).await;
    read?;
    match answer {
        Some(el) if el.attr("type") == Some("result") => Ok(()),
        Some(el) => bail!("block refused: {}", el.describe_error()),
        None => bail!("block: no answer"),
    }
}

pub async fn run(env: Env, p: BlockParams) -> Result<Value> {
    let every = step(p.fraction)?;
    let jid = Arc::new(p.jid.unwrap_or_else(|| format!("nobody@{}", env.args.domain)));
    let users: Arc<Vec<(String, String)>> = Arc::new(
        (0..p.count)
            .step_by(every)
            .map(|i| (env.user(i), env.resource(i)))
            .collect(),
    );
    let mut report = json!({
        "scenario": "block", "target": env.target(), "users": p.count, "every": every,
        "jid": *jid, "blocking": users.len(),
    });
    let started = Instant::now();
    let (opts, wait) = (env.opts.clone(), env.close_wait());
    let list = users.clone();
    let results = runner::run_bounded(users.len(), env.args.concurrency, env.deadline, move |i| {
        let (opts, list, jid) = (opts.clone(), list.clone(), jid.clone());
        async move { block_one(&opts, &list[i].0, &list[i].1, &jid, wait).await }
    })
    .await;
    let mut errors = ErrorTally::default();
    for (_, r) in &results {
        if let Err(e) = r {
            errors.add(e);
        }
    }
    report["blocked"] = json!(results.len() as u64 - errors.total());
    report["failed"] = json!(errors.total());
    report["not_attempted"] = json!(users.len() - results.len());
    report["elapsed_s"] = json!(round3(started.elapsed().as_secs_f64()));
    report["errors"] = errors.report(MAX_REASONS);
    Ok(report)
}
