//! `poolxmpp-load`: a load generator that speaks plain, standard XMPP
//! (RFC 6120 / 6121) so the very same client workload can be pointed at
//! poolxmpp, Prosody or ejabberd and the figures compared side by side.
//!
//! BENCHMARK TOOL ONLY: TLS certificates are not verified (see `tls.rs`), and
//! it refuses to connect anywhere but loopback.
//!
//! Module map: `xmpp` (client connection), `xml` (stream parser), `tls`,
//! `sasl` (rsasl glue), `stats` (percentiles, CPU, RSS), `runner` (bounded
//! concurrency helpers), `graph` (the seeded social graph of `placement`) and one
//! module per scenario.
//!
//! A library too, so the integration tests drive the same scenarios in-process (the
//! 1,000-occupant room of `tests/plugins.rs`); `main.rs` is only the command line.

pub mod accounts;
pub mod block;
pub mod fanout;
pub mod graph;
pub mod idle;
pub mod logins;
pub mod messages;
pub mod muc;
pub mod placement;
pub mod runner;
pub mod sasl;
pub mod stats;
pub mod tls;
pub mod xml;
pub mod xmpp;

use anyhow::Result;
use clap::{Args, Parser};

/// Connection options shared by every scenario that logs in.
#[derive(Args, Clone, Debug)]
pub struct ConnectArgs {
    /// Server address (must be loopback).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 5222)]
    pub port: u16,
    /// XMPP domain (stream `to`, JID domain, TLS SNI).
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Users are {prefix}{i}@{domain}.
    #[arg(long, visible_alias = "prefix", default_value = "load")]
    pub users_prefix: String,
    #[arg(long, default_value = "pw")]
    pub password: String,
    /// Only this many distinct users exist: connection i uses user i % user-count.
    #[arg(long)]
    pub user_count: Option<usize>,
    /// Max logins in flight at once.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Use STARTTLS on the plain port (the default).
    #[arg(long, conflicts_with_all = ["direct_tls", "no_tls"])]
    pub starttls: bool,
    /// XEP-0368 direct TLS (e.g. port 5223).
    #[arg(long, conflicts_with = "no_tls")]
    pub direct_tls: bool,
    /// No TLS at all (only if the server permits it).
    #[arg(long)]
    pub no_tls: bool,
    #[arg(long, default_value = "SCRAM-SHA-1",
          value_parser = ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"], ignore_case = true)]
    pub mechanism: String,
    /// Resource prefix; connection i binds {resource}{i}.
    #[arg(long, default_value = "load")]
    pub resource: String,
    /// Bound for one login (or registration) attempt.
    #[arg(long, default_value_t = 30)]
    pub op_timeout_secs: u64,
    /// Create the users first with XEP-0077 in-band registration (not timed).
    #[arg(long)]
    pub register: bool,
    /// Allow TLS session resumption (off: every login is a full handshake).
    #[arg(long)]
    pub tls_resume: bool,
    /// Re-run PBKDF2 on every SCRAM login instead of caching SaltedPassword.
    #[arg(long)]
    pub no_scram_cache: bool,
    /// Server PID: report its CPU use too (required by `idle` for VmRSS).
    #[arg(long)]
    pub pid: Option<u32>,
    /// The client ports (HOST:PORT) of every node of a pool, comma-separated: each user
    /// connects to one of them by a hash of its name (overrides --host/--port).
    #[arg(long, value_delimiter = ',')]
    pub spread: Vec<String>,
}

impl ConnectArgs {
    /// The options as the command line would give them: its defaults plus `args`
    /// (`["--port", "5222", "--domain", "example.org"]`).
    pub fn from_args(args: &[&str]) -> Result<ConnectArgs> {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            conn: ConnectArgs,
        }
        Ok(Only::try_parse_from(std::iter::once("poolxmpp-load").chain(args.iter().copied()))?.conn)
    }
}
