//! `poolxmpp-load`'s command line: one subcommand per scenario of the library.

use poolxmpp_load::{accounts, block, fanout, graph, idle, logins, messages, muc, placement, runner, ConnectArgs};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "poolxmpp-load",
    version,
    about = "Standard-XMPP load generator (benchmark tool; TLS certs NOT verified; loopback only)"
)]
struct Cli {
    /// Print the result as one JSON object instead of indented text.
    #[arg(long, global = true)]
    json: bool,
    /// Hard upper bound for the whole run, in seconds.
    #[arg(long, global = true, default_value_t = 120)]
    timeout_secs: u64,
    /// Tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Connection churn: N full logins (connect, TLS, SASL, bind, presence, close).
    Logins {
        #[command(flatten)]
        conn: ConnectArgs,
        /// Number of logins to perform.
        #[arg(long, default_value_t = 200)]
        count: usize,
    },
    /// Server memory per idle logged-in connection (reads /proc/PID/status).
    Idle {
        #[command(flatten)]
        conn: ConnectArgs,
        /// Number of connections to open and hold.
        #[arg(long, default_value_t = 200)]
        connections: usize,
        /// Wait after the last login before sampling RSS.
        #[arg(long, default_value_t = 3)]
        settle_secs: u64,
        /// Keep the connections open this long after sampling.
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
    },
    /// One-to-one chat throughput and latency between K sender/receiver pairs.
    Messages {
        #[command(flatten)]
        conn: ConnectArgs,
        /// Number of sender->receiver pairs (2K sessions).
        #[arg(long, default_value_t = 20)]
        pairs: usize,
        /// Messages each sender sends.
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Max un-acked (not yet received) messages per pair.
        #[arg(long, default_value_t = 10)]
        window: usize,
        /// A message not received this long after the previous one is lost.
        #[arg(long, default_value_t = 10)]
        loss_timeout_secs: u64,
        /// Extra filler bytes per message body.
        #[arg(long, default_value_t = 0)]
        body_bytes: usize,
        /// Echo mode: each of K sessions sends to this address and receives the reply on
        /// its own stream (`self` = its own full JID, i.e. native routing; a service such
        /// as `echo.localhost` = a round trip through that plugin).
        #[arg(long)]
        via: Option<String>,
    },
    /// Plugin fan-out (issue 12): N receivers bound to /r0, one sender whose commands make
    /// the event-probe plugin send a headline to all of them, in one send-many call
    /// (`--mode many`) or one send per recipient (`--mode each`): copies delivered per
    /// second, answer latency, lost copies, server CPU per copy.
    Fanout {
        #[command(flatten)]
        conn: ConnectArgs,
        /// Receiver sessions: users {prefix}0..{prefix}N-1; the sender is {prefix}N.
        #[arg(long, default_value_t = 100)]
        recipients: usize,
        /// Commands the sender sends (each makes N copies).
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Max unanswered commands.
        #[arg(long, default_value_t = 10)]
        window: usize,
        #[arg(long, value_enum, default_value = "many")]
        mode: fanout::Mode,
        /// The event-probe plugin's address (default probe.{domain}).
        #[arg(long)]
        via: Option<String>,
        /// A copy or answer not arrived this long after the previous one is lost.
        #[arg(long, default_value_t = 10)]
        loss_timeout_secs: u64,
    },
    /// Multi-user chat (issue 13, plain XEP-0045): N occupants enter one room one after
    /// another (the first creates and configures it), then the first S of them each send M
    /// groupchat messages (at most W of their own unreflected): deliveries per second,
    /// delivery latency, lost copies, the time of each entry (the Nth's reported), server
    /// CPU per delivery.
    Muc {
        #[command(flatten)]
        conn: ConnectArgs,
        /// Occupants: users {prefix}0..{prefix}N-1, nicknames o0..
        #[arg(long, default_value_t = 100)]
        occupants: usize,
        /// How many of them send (the first ones); default all.
        #[arg(long)]
        senders: Option<usize>,
        /// Messages each sender sends.
        #[arg(long, default_value_t = 20)]
        messages: usize,
        /// Max unreflected messages per sender.
        #[arg(long, default_value_t = 5)]
        window: usize,
        /// The room (default bench@conference.{domain}).
        #[arg(long)]
        room: Option<String>,
        /// A copy or answer not arrived this long after the previous one is lost.
        #[arg(long, default_value_t = 20)]
        loss_timeout_secs: u64,
    },
    /// Give every round(1/F)-th of users {prefix}0..{prefix}N-1 a XEP-0191 blocking rule
    /// (for a JID not in the run), so a declared-interest filter has rules for them.
    Block {
        #[command(flatten)]
        conn: ConnectArgs,
        /// Users in the run.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// Share of them that block (0.1: every 10th, from {prefix}0 on).
        #[arg(long, default_value_t = 0.1)]
        fraction: f64,
        /// The JID they block (default nobody@{domain}).
        #[arg(long)]
        jid: Option<String>,
    },
    /// Only create users {prefix}0..{prefix}N-1 by XEP-0077 in-band registration.
    Register {
        #[command(flatten)]
        conn: ConnectArgs,
        #[arg(long, default_value_t = 200)]
        count: usize,
    },
    /// Placement strategies (issue 5): log a clustered social graph in through a pool's
    /// redirector, replay chats between roster contacts, and report the fraction of
    /// stanzas that crossed a pool link and the sessions' balance over the nodes.
    /// --host/--port name the redirector. Accounts and rosters must exist (`register`,
    /// `graph --sql`, same --users/--seed/graph options).
    Placement {
        #[command(flatten)]
        conn: ConnectArgs,
        #[command(flatten)]
        graph: graph::GraphArgs,
        /// Name of this run in the report (e.g. the strategy).
        #[arg(long, default_value = "")]
        label: String,
        /// Chat messages each user sends, each to a random roster contact.
        #[arg(long, default_value_t = 4)]
        messages_per_user: usize,
        /// Messages per second over all users (0 = unpaced).
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Stop waiting for messages when none arrived for this long.
        #[arg(long, default_value_t = 10)]
        loss_timeout_secs: u64,
        /// Further attempts per login after a transient refusal (e.g. resource-constraint).
        #[arg(long, default_value_t = 8)]
        retries: u32,
        /// The poolxmpp binary, for `poolxmpp stats --config F`.
        #[arg(long, default_value = "poolxmpp")]
        server_bin: std::path::PathBuf,
        /// Config file of each pool node (repeat, or comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        node_config: Vec<std::path::PathBuf>,
        /// Config file of the redirector, to report its placement counters.
        #[arg(long)]
        redirector_config: Option<std::path::PathBuf>,
        /// Longest wait for the nodes' stanza counters to settle before each reading.
        #[arg(long, default_value_t = 30)]
        settle_secs: u64,
    },
    /// Print the seeded social graph of `placement`: its shape as JSON, or with --sql a
    /// psql script storing every roster (pipe into psql on the pool's database).
    Graph {
        #[command(flatten)]
        graph: graph::GraphArgs,
        #[arg(long, visible_alias = "users-prefix", default_value = "load")]
        prefix: String,
        #[arg(long, default_value = "localhost")]
        domain: String,
        /// Print SQL (COPY into `roster`) instead of the summary.
        #[arg(long)]
        sql: bool,
    },
    /// Print shell commands that create the benchmark accounts.
    Accounts {
        #[arg(long, visible_alias = "users-prefix", default_value = "load")]
        prefix: String,
        #[arg(long, default_value_t = 200)]
        count: usize,
        #[arg(long, default_value = "pw")]
        password: String,
        #[arg(long, default_value = "localhost")]
        domain: String,
        #[arg(long, value_enum, default_value = "poolxmpp")]
        format: accounts::Format,
        /// poolxmpp config file passed to `poolxmpp user add`.
        #[arg(long, default_value = "poolxmpp.toml")]
        config: String,
    },
}

/// Allow many sockets: raise the soft open-file limit to the hard limit.
fn raise_nofile() {
    // SAFETY: plain libc calls on a zeroed, correctly typed struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

/// Indented "key: value" rendering of the JSON report for humans.
fn print_human(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::Object(_) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        print_human(v, indent + 1, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        for item in a {
                            out.push_str(&format!("{pad}  - {item}\n"));
                        }
                    }
                    _ => out.push_str(&format!("{pad}{k}: {v}\n")),
                }
            }
        }
        other => out.push_str(&format!("{pad}{other}\n")),
    }
}

/// Exit status: 0 all good, 1 the scenario saw failures/losses, 2 fatal error.
fn exit_code(report: &Value) -> i32 {
    let failed = report["failed"].as_u64().unwrap_or(0) > 0
        || report["not_attempted"].as_u64().unwrap_or(0) > 0
        || report["logins"]["failed"].as_u64().unwrap_or(0) > 0
        || report["ok"] == Value::Bool(false);
    i32::from(failed)
}

async fn run(cmd: Cmd, deadline: Instant) -> Result<Value> {
    match cmd {
        Cmd::Logins { conn, count } => logins::run(runner::Env::new(&conn, deadline)?, count).await,
        Cmd::Idle {
            conn,
            connections,
            settle_secs,
            hold_secs,
        } => {
            let params = idle::IdleParams {
                connections,
                settle: Duration::from_secs(settle_secs),
                hold: Duration::from_secs(hold_secs),
            };
            idle::run(runner::Env::new(&conn, deadline)?, params).await
        }
        Cmd::Messages {
            conn,
            pairs,
            messages,
            window,
            loss_timeout_secs,
            body_bytes,
            via,
        } => {
            let params = messages::MsgParams {
                pairs,
                messages,
                window,
                loss_timeout: Duration::from_secs(loss_timeout_secs),
                body_bytes,
                via,
            };
            messages::run(runner::Env::new(&conn, deadline)?, params).await
        }
        Cmd::Muc {
            conn,
            occupants,
            senders,
            messages,
            window,
            room,
            loss_timeout_secs,
        } => {
            let params = muc::MucParams {
                occupants,
                senders: senders.unwrap_or(occupants),
                messages,
                window,
                room,
                loss_timeout: Duration::from_secs(loss_timeout_secs),
            };
            muc::run(runner::Env::new(&conn, deadline)?, params).await
        }
        Cmd::Fanout {
            conn,
            recipients,
            messages,
            window,
            mode,
            via,
            loss_timeout_secs,
        } => {
            let params = fanout::FanoutParams {
                recipients,
                messages,
                window,
                mode,
                via,
                loss_timeout: Duration::from_secs(loss_timeout_secs),
            };
            fanout::run(runner::Env::new(&conn, deadline)?, params).await
        }
        Cmd::Block {
            conn,
            count,
            fraction,
            jid,
        } => {
            let params = block::BlockParams { count, fraction, jid };
            block::run(runner::Env::new(&conn, deadline)?, params).await
        }
        Cmd::Register { conn, count } => {
            let env = runner::Env::new(&conn, deadline)?;
            let mut report = serde_json::json!({ "scenario": "register", "target": env.target() });
            let reg = runner::register_users(&env, count).await;
            report["failed"] = reg["failed"].clone();
            report["not_attempted"] = reg["not_attempted"].clone();
            report["registration"] = reg;
            Ok(report)
        }
        Cmd::Placement {
            conn,
            graph,
            label,
            messages_per_user,
            rate,
            loss_timeout_secs,
            retries,
            server_bin,
            node_config,
            redirector_config,
            settle_secs,
        } => {
            let params = placement::PlacementParams {
                graph,
                label,
                messages_per_user,
                rate,
                loss_timeout: Duration::from_secs(loss_timeout_secs),
                retries,
                server_bin,
                node_configs: node_config,
                redirector_config,
                settle: Duration::from_secs(settle_secs),
            };
            placement::run(runner::Env::new(&conn, deadline)?, params).await
        }
        Cmd::Accounts { .. } | Cmd::Graph { .. } => unreachable!("handled without a runtime"),
    }
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Accounts {
        prefix,
        count,
        password,
        domain,
        format,
        config,
    } = &cli.cmd
    {
        for line in accounts::lines(*format, prefix, *count, domain, password, config) {
            println!("{line}");
        }
        return;
    }
    if let Cmd::Graph {
        graph,
        prefix,
        domain,
        sql,
    } = &cli.cmd
    {
        if let Err(e) = graph.check() {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
        let g = graph::generate(graph);
        let text = if *sql {
            g.roster_sql(prefix, domain)
        } else {
            format!("{}\n", g.summary())
        };
        // A closed pipe (e.g. `| head`) is not an error worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
        return;
    }
    raise_nofile();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = cli.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    let total = Duration::from_secs(cli.timeout_secs);
    let deadline = Instant::now() + total;
    // Scenarios respect the deadline themselves; the outer timeout (with a grace
    // period for polite closes) guarantees the process ends regardless.
    let result = rt.block_on(async {
        match tokio::time::timeout(total + Duration::from_secs(15), run(cli.cmd, deadline)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("global timeout of {}s exceeded", cli.timeout_secs)),
        }
    });
    let code = match result {
        Ok(report) => {
            if cli.json {
                println!("{report}");
            } else {
                let mut out = String::new();
                print_human(&report, 0, &mut out);
                print!("{out}");
            }
            exit_code(&report)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    rt.shutdown_timeout(Duration::from_secs(1));
    std::process::exit(code);
}
