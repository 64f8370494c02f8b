//! Cost of one `handle-stanza` call into a feature plugin, measured in-process so nothing
//! but the runtime is timed: queue the call, the plugin's actor task runs it under the
//! epoch deadline and memory limit, the answer comes back over a oneshot channel.
//!
//!   cargo bench -p poolxmpp --bench plugin_call -- PLUGINS_DIR [CALLS]
//!
//! PLUGINS_DIR must hold the `echo` example (`poolxmpp plugin build --examples --out DIR`).
//! A presence stanza is the trivial call: the echo plugin parses nothing and returns.
//! Sequential calls give the round-trip latency; a window of calls in flight gives the
//! throughput of one plugin instance. docs/benchmarks.md records the figures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use poolxmpp::plugins::{PluginHandle, Plugins, StanzaReply};
use poolxmpp::xml::Element;

const NS_CLIENT: &str = "jabber:client";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Wait for one answer and turn both failure layers (fault, stanza error) into errors.
async fn answered(rx: StanzaReply) -> anyhow::Result<()> {
    rx.await?
        .map_err(|fault| anyhow::anyhow!("{fault}"))?
        .map_err(|e| anyhow::anyhow!("stanza error {:?}", e.condition))
}

fn submit(plugin: &PluginHandle, stanza: &Element) -> anyhow::Result<StanzaReply> {
    plugin.submit_stanza(stanza).map_err(|fault| anyhow::anyhow!("{fault}"))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/bench-plugins".into()));
    let calls: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        // Never drained: the instance tasks end with the runtime.
        let (tasks, _drain) = poolxmpp::tasks::Tasks::new();
        let plugins = Plugins::new(
            dir.clone(),
            vec!["localhost".into()],
            poolxmpp::config::LimitsConfig::default().plugin_stanza_bytes,
            tasks,
        )?;
        let errors = plugins.sync_dir().await;
        anyhow::ensure!(errors.is_empty(), "loading {}: {errors:?}", dir.display());
        let active = plugins.active();
        let echo = active
            .for_address("echo.localhost")
            .ok_or_else(|| anyhow::anyhow!("no echo plugin in {}", dir.display()))?
            .clone();
        let presence = Element::new("presence", NS_CLIENT)
            .attr("from", "alice@localhost/bench")
            .attr("to", "echo.localhost");

        // Warm up: first calls pay for lazy initialisation inside the guest.
        for _ in 0..1_000 {
            answered(submit(&echo, &presence)?).await?;
        }

        let mut samples = Vec::with_capacity(calls);
        let started = Instant::now();
        for _ in 0..calls {
            let t = Instant::now();
            answered(submit(&echo, &presence)?).await?;
            samples.push(t.elapsed());
        }
        let sequential = started.elapsed();
        samples.sort();

        // Pipelined: keep a window in flight, as the router does under load.
        let window = 64;
        let started = Instant::now();
        let mut pending = std::collections::VecDeque::with_capacity(window);
        for _ in 0..calls {
            if pending.len() == window {
                answered(pending.pop_front().expect("window")).await?;
            }
            pending.push_back(submit(&echo, &presence)?);
        }
        for rx in pending {
            answered(rx).await?;
        }
        let pipelined = started.elapsed();

        let report = serde_json::json!({
            "bench": "plugin_call",
            "plugin": "echo (presence: trivial handle-stanza)",
            "calls": calls,
            "sequential": {
                "calls_per_s": (calls as f64 / sequential.as_secs_f64()).round(),
                "mean_us": sequential.as_secs_f64() * 1e6 / calls as f64,
                "p50_us": percentile(&samples, 0.50).as_secs_f64() * 1e6,
                "p99_us": percentile(&samples, 0.99).as_secs_f64() * 1e6,
                "max_us": samples.last().expect("samples").as_secs_f64() * 1e6,
            },
            "pipelined": {
                "window": window,
                "calls_per_s": (calls as f64 / pipelined.as_secs_f64()).round(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        anyhow::Ok(())
    })
}
