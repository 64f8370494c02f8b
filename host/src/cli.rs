//! The `poolxmpp` command line (clap): `serve` and account administration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::store::pool::PoolDb;
use crate::store::StoreError;

#[derive(Parser)]
#[command(name = "poolxmpp", version, about = "An XMPP server built as a pool of nodes")]
struct Cli {
    /// The TOML configuration file (defaults serve `localhost` from ./data).
    #[arg(long, short, global = true, env = "POOLXMPP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve,
    /// Run the stand-alone redirector: it authenticates each client and sends it to its
    /// home node with <see-other-host/>, using the pool's store and `[placement]`.
    Redirect,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect and reload the running daemon's plugins, or build the bundled ones.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// This running node's counters: sessions, links, stanzas delivered and forwarded.
    Stats,
    /// Set up and inspect a pool of nodes.
    #[command(subcommand)]
    Pool(PoolCommand),
}

#[derive(Subcommand)]
enum PoolCommand {
    /// Create a pool CA in DIR and a certificate for each node: ca.crt, NODE.crt, NODE.key
    /// go to every node (`[pool] tls_dir`); keep ca.key with the operator.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Node ids, comma-separated (a-z, 0-9, '-').
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
    },
    /// Issue (or re-issue) one node's certificate with the CA in DIR.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        node: String,
    },
    /// Which node serves each session of an account (the shared session directory).
    Where { jid: String },
    /// Nodes, their leases, sessions and load, as the shared store sees them.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list users: their home node, the strategy that chose it and why, and
        /// where they are connected.
        #[arg(long)]
        users: bool,
    },
    /// Move a node's users to other nodes for maintenance: it takes no new users, and its
    /// sessions get <see-other-host/> to their new homes at `[placement] drain_per_second`.
    Drain { node: String },
    /// Let a drained node take users again (moved sessions stay where they are).
    Undrain { node: String },
    /// Even out the load: every node above the mean moves that many users to the homes
    /// the strategy chooses now, at `[placement] drain_per_second`.
    Rebalance,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show loaded plugins with their state and statistics (asks the running daemon).
    List,
    /// Reload one plugin from its files now (asks the running daemon).
    Reload { name: String },
    /// Build the plugins in this source tree for wasm32-wasip2 and install each as
    /// NAME.wasm + NAME.toml into the plugins directory (or --out).
    Build {
        /// The workspace to build from.
        #[arg(long, default_value = ".")]
        source: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also build and install `examples/plugins/` (including the deliberately broken
        /// ones the containment tests use): for development, never for a real deployment.
        #[arg(long)]
        examples: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account: `user add alice@example.org PASSWORD`.
    Add { jid: String, password: String },
    /// Change an account's password.
    Passwd { jid: String, password: String },
    /// Delete an account with its roster, stored messages and plugin records, and remove it
    /// from its contacts' rosters; a running daemon on this data directory also closes its
    /// sessions and tells its contacts.
    Del { jid: String },
    /// List accounts, optionally of one domain.
    List { domain: Option<String> },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("poolxmpp: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("poolxmpp: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => crate::daemon::serve(config, crate::daemon::Role::Node).await,
            Command::Redirect => crate::daemon::serve(config, crate::daemon::Role::Redirector).await,
            Command::User(cmd) => user(config, cmd).await,
            Command::Plugin(cmd) => plugin(config, cmd).await,
            Command::Pool(cmd) => pool(config, cmd).await,
            Command::Stats => {
                let answer = crate::plugins::admin::request(&config.data_dir, "stats").await?;
                println!("{}", serde_json::to_string_pretty(&answer["stats"])?);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poolxmpp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_directives(&config.log.level)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The tracing directives for `[log] level`. A bare level (`debug`) is the server's own: the
/// libraries under it (wasmtime and cranelift compiling plugins, sqlx, rustls…) log at
/// `warn` at most, so debugging the server is not drowned in compiler lines. Anything else
/// (`info,poolxmpp::xml=trace`) is a full filter, taken as written.
fn log_directives(level: &str) -> String {
    use tracing_subscriber::filter::LevelFilter;
    match level.trim().parse::<LevelFilter>() {
        Ok(ours) if !level.contains(['=', ',']) => {
            let libraries = ours.min(LevelFilter::WARN);
            format!("{libraries},poolxmpp={ours}")
        }
        _ => level.to_string(),
    }
}

/// Parse a JID for an account on a hosted domain.
fn account_jid(config: &Config, jid: &str) -> anyhow::Result<jid::BareJid> {
    let parsed = jid::BareJid::new(jid).map_err(|e| anyhow::anyhow!("invalid JID {jid:?}: {e}"))?;
    if parsed.node().is_none() {
        anyhow::bail!("{jid:?} has no local part");
    }
    if !config.is_hosted(parsed.domain().as_str()) {
        anyhow::bail!("{} is not a hosted domain in this configuration", parsed.domain());
    }
    Ok(parsed)
}

async fn user(config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let store = crate::daemon::open_store(&config).await?;
    match cmd {
        UserCommand::Add { jid, password } => {
            let jid = account_jid(&config, &jid)?;
            let creds = crate::auth::derive_credentials(&password)?;
            match store
                .create_account(&jid.to_string(), jid.domain().as_str(), &creds)
                .await
            {
                Err(StoreError::AccountExists) => anyhow::bail!("{jid} already exists"),
                r => r?,
            }
            println!("created {jid}");
        }
        UserCommand::Passwd { jid, password } => {
            let jid = account_jid(&config, &jid)?;
            store
                .set_credentials(&jid.to_string(), &crate::auth::derive_credentials(&password)?)
                .await?;
            println!("password changed for {jid}");
        }
        UserCommand::Del { jid } => {
            let jid = account_jid(&config, &jid)?.to_string();
            // A daemon on this data directory removes it itself: it closes the account's
            // sessions and tells its online contacts. With none, the store side is all.
            let command = format!("remove-account {jid}");
            match crate::plugins::admin::request_if_running(&config.data_dir, &command).await? {
                Some(reply) if reply["ok"] == serde_json::Value::Bool(true) => {
                    println!("deleted {jid} (its sessions on the running server are closed)");
                }
                Some(reply) => anyhow::bail!("cannot delete {jid}: {}", reply["error"]),
                None => {
                    crate::account::remove_stored(&store, &jid).await?;
                    println!("deleted {jid}");
                }
            }
        }
        UserCommand::List { domain } => {
            for jid in store.list_accounts(domain.as_deref()).await? {
                println!("{jid}");
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn plugin(config: Config, cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::List => {
            let reply = crate::plugins::admin::request(&config.data_dir, "list").await?;
            println!("{}", serde_json::to_string_pretty(&reply["plugins"])?);
        }
        PluginCommand::Reload { name } => {
            let reply = crate::plugins::admin::request(&config.data_dir, &format!("reload {name}")).await?;
            if reply["ok"] != serde_json::Value::Bool(true) {
                anyhow::bail!("reload failed: {}", reply["error"]);
            }
            println!("reloaded {name}");
        }
        PluginCommand::Build { source, out, examples } => {
            let out = out.unwrap_or_else(|| config.plugins_dir());
            for installed in crate::plugins::build::build_all(&source, &out, examples)? {
                println!("installed {}", installed.display());
            }
        }
    }
    Ok(())
}

/// The pool's shared store, migrated to this binary's schema.
async fn pool_store(config: &Config) -> anyhow::Result<PoolDb> {
    if !config.store.starts_with("postgres") {
        anyhow::bail!(
            "pool commands read the pool's PostgreSQL store; this config's store is {:?}",
            config.store
        );
    }
    let store = crate::daemon::open_store(config).await?;
    store.close().await;
    // One connection, waiting as long as sqlx does by default.
    Ok(PoolDb::connect(&config.store, 1, Duration::from_secs(30)).await?)
}

/// One user's placement, for `pool status --users`.
#[derive(serde::Serialize)]
struct UserHome {
    user: String,
    home: String,
    /// Whether the home node is live under the epoch it was chosen at.
    home_live: bool,
    strategy: String,
    reason: String,
    /// Nodes the user's sessions are on.
    connected_at: Vec<String>,
}

async fn user_homes(db: &PoolDb) -> anyhow::Result<Vec<UserHome>> {
    Ok(db
        .user_homes()
        .await?
        .into_iter()
        .map(|h| UserHome {
            user: h.bare,
            home: h.node_id,
            home_live: h.home_live,
            strategy: h.strategy,
            reason: h.reason,
            connected_at: h.connected_at,
        })
        .collect())
}

async fn pool(config: Config, cmd: PoolCommand) -> anyhow::Result<()> {
    use crate::pool::pki;
    match cmd {
        PoolCommand::Init { dir, nodes } => {
            for node in &nodes {
                pki::validate_node_id(node)?;
            }
            pki::init_ca(&dir)?;
            println!("created the pool CA in {}", dir.display());
            for node in &nodes {
                let (crt, _) = pki::issue_node(&dir, node)?;
                println!("issued {}", crt.display());
            }
        }
        PoolCommand::Issue { dir, node } => {
            let (crt, _) = pki::issue_node(&dir, &node)?;
            println!("issued {}", crt.display());
        }
        PoolCommand::Where { jid } => {
            let bare = account_jid(&config, &jid)?.to_string();
            let db = pool_store(&config).await?;
            for s in db.sessions_of(&bare).await? {
                println!("{bare}/{} {} epoch {}", s.resource, s.node_id, s.epoch);
            }
        }
        PoolCommand::Status { json, users } => {
            let db = pool_store(&config).await?;
            let nodes = db.nodes().await?;
            let drained = db.draining_nodes().await?;
            let homes = if users { user_homes(&db).await? } else { Vec::new() };
            if json {
                let out = serde_json::json!({ "nodes": nodes, "draining": drained, "users": homes });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            println!(
                "{:<16} {:>6} {:<8} {:>10} {:>9} {:<22} clients",
                "node", "epoch", "state", "lease age", "sessions", "link"
            );
            for n in nodes {
                let state = match (n.state.as_str(), n.lease_valid) {
                    ("live", false) => "expired",
                    ("live", true) if drained.contains(&n.node_id) => "draining",
                    (s, _) => s,
                };
                println!(
                    "{:<16} {:>6} {:<8} {:>8}ms {:>9} {:<22} {}",
                    n.node_id, n.epoch, state, n.lease_age_ms, n.sessions, n.link_addr, n.client_addrs
                );
            }
            if users {
                println!(
                    "\n{:<32} {:<12} {:<24} {:<16} why",
                    "user", "home", "strategy", "connected at"
                );
                for h in homes {
                    println!(
                        "{:<32} {:<12} {:<24} {:<16} {}",
                        h.user,
                        if h.home_live {
                            h.home.clone()
                        } else {
                            format!("({})", h.home)
                        },
                        h.strategy,
                        if h.connected_at.is_empty() {
                            "-".to_string()
                        } else {
                            h.connected_at.join(",")
                        },
                        h.reason
                    );
                }
            }
        }
        PoolCommand::Drain { node } => {
            let db = pool_store(&config).await?;
            db.set_draining(&node, true).await?;
            println!("{node} is draining: it takes no new users and moves its sessions away");
        }
        PoolCommand::Undrain { node } => {
            let db = pool_store(&config).await?;
            db.set_draining(&node, false).await?;
            println!("{node} takes users again");
        }
        PoolCommand::Rebalance => {
            let db = pool_store(&config).await?;
            db.request_rebalance().await?;
            println!("rebalance requested: nodes above the mean load move users at the drain rate");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_is_the_servers_own() {
        assert_eq!(log_directives("debug"), "warn,poolxmpp=debug");
        assert_eq!(log_directives("info"), "warn,poolxmpp=info");
        assert_eq!(log_directives("error"), "error,poolxmpp=error");
        assert_eq!(log_directives("info,poolxmpp::xml=trace"), "info,poolxmpp::xml=trace");
    }
}
