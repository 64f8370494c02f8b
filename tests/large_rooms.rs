//! Issue 13, "Large rooms": a test binary of its own, because cargo runs test binaries
//! one after another: the run below takes both cores for a couple of minutes and would
//! starve the timed waits of tests running beside it.

mod support;

use std::time::{Duration, Instant};

use anyhow::ensure;
use support::{plugins, with_server, ServerOptions, Store, DOMAIN};

/// Issue 13, "Large rooms": a room of 1,000 occupants, driven by the benchmark client's
/// `muc` scenario in-process (plain XEP-0045 over 1,000 TLS streams): they register, log in
/// and enter one after another (each entry broadcast to everyone already in), 10 of them
/// send 5 messages each to all, every occupant receives every copy, then all leave at once
/// and each is told so. No entry, copy or exit may be refused, lost or late past the
/// scenario's own bounds.
#[test]
fn a_room_of_a_thousand_occupants() {
    const OCCUPANTS: usize = 1_000;
    poolxmpp::daemon::raise_open_file_limit();
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = dir.path().join("plugins");
    if let Err(e) = plugins::install(&plugin_dir, &["muc"]) {
        panic!("{e:#}");
    }
    let mut opts = ServerOptions::new(Store::Sqlite);
    opts.plugins_dir = Some(plugin_dir);
    opts.registration = true;
    // One client address registers and logs in all 1,000: not what the per-address caps
    // are for.
    opts.extra_limits
        .push(r#"unthrottled_addresses = ["127.0.0.1"]"#.into());
    with_server(opts, |srv| {
        let port = srv.starttls.port().to_string();
        let conn = poolxmpp_load::ConnectArgs::from_args(&[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--domain",
            DOMAIN,
            "--users-prefix",
            "big",
            "--password",
            "big-pw",
            "--register",
            "--concurrency",
            "20",
        ])?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let report = rt.block_on(async {
            let env = poolxmpp_load::runner::Env::new(&conn, Instant::now() + Duration::from_secs(600))?;
            let params = poolxmpp_load::muc::MucParams {
                occupants: OCCUPANTS,
                senders: 10,
                messages: 5,
                window: 5,
                room: Some(format!("big@conference.{DOMAIN}")),
                loss_timeout: Duration::from_secs(60),
            };
            poolxmpp_load::muc::run(env, params).await
        })?;
        eprintln!("a room of {OCCUPANTS}: {report}");
        ensure!(report["entered"] == OCCUPANTS, "not everyone entered: {report:#}");
        ensure!(
            report["left"] == OCCUPANTS,
            "not everyone was told they left: {report:#}"
        );
        ensure!(report["lost"] == 0, "copies lost: {report:#}");
        ensure!(report["ok"] == true, "{report:#}");
        Ok(())
    });
}
