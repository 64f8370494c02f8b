//! The daemon's configuration: one TOML file, every field defaulted so that no file at all
//! serves `localhost` on 127.0.0.1 from an SQLite database under `./data`.
//! `examples/poolxmpp.toml` documents each field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::stream::Limits;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the SQLite database and generated certificates live.
    pub data_dir: PathBuf,
    /// `"sqlite"` (a file in `data_dir`), `"sqlite:///path/to.db"`, or `"postgres://…"`.
    pub store: String,
    /// Hosted domains.
    #[serde(rename = "domain")]
    pub domains: Vec<DomainConfig>,
    pub listen: ListenConfig,
    pub limits: LimitsConfig,
    pub features: FeaturesConfig,
    pub plugins: PluginsConfig,
    pub log: LogConfig,
    /// Present when this node is one of a pool (DESIGN §4); absent for a single server.
    pub pool: Option<PoolConfig>,
    /// How home nodes are chosen, for pool nodes and the stand-alone redirector.
    pub placement: PlacementConfig,
}

/// `[placement]`: which strategy chooses home nodes and how moves are paced (DESIGN §4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementConfig {
    /// The `placement` plugin that chooses home nodes (e.g. `placement-roster`). Unset, or
    /// when that plugin fails: rendezvous hashing with bounded load, built in.
    pub strategy: Option<String>,
    /// A node is full for new users above this multiple of the mean load (bounded load).
    pub load_factor: f64,
    /// Sessions a draining node moves away per second: empties a node without a storm.
    pub drain_per_second: u32,
    /// Redirects of one user by one node within a minute after which that node serves
    /// the user itself: cuts redirect loops, and lets clients that never follow a
    /// redirect in on their next attempts.
    pub loop_limit: u32,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            strategy: None,
            load_factor: 1.25,
            drain_per_second: 20,
            loop_limit: 2,
        }
    }
}

/// `[pool]`: this node's identity and how it reaches and is reached by its peers. Every
/// node of a pool shares the same PostgreSQL `store` and the same pool CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// This node's id, unique in the pool (a DNS label: a-z, 0-9, '-').
    pub node_id: String,
    /// Where this node accepts pool links from its peers.
    pub listen: SocketAddr,
    /// The address peers dial for links (defaults to `listen`; set it behind NAT).
    pub advertise: Option<SocketAddr>,
    /// Directory holding `ca.crt`, `NODE.crt` and `NODE.key` from `poolxmpp pool init`.
    pub tls_dir: PathBuf,
    /// A node that has not renewed its lease for this long is dead to the pool. A node
    /// that cannot renew within it fences itself first.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// How often the lease is renewed; at most a third of `lease_ms`.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Send authenticated clients whose home node is another one there with
    /// `<see-other-host/>` (DESIGN §4). Off: every node serves every user itself.
    #[serde(default)]
    pub redirect: bool,
}

fn default_lease_ms() -> u64 {
    5_000
}

fn default_heartbeat_ms() -> u64 {
    1_000
}

impl PoolConfig {
    pub fn advertised(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Load WebAssembly plugins at all.
    pub enabled: bool,
    /// Directory of `NAME.wasm` + `NAME.toml` pairs; defaults to `data_dir/plugins`.
    pub dir: Option<PathBuf>,
    /// Reload on changes to the directory.
    pub watch: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            enabled: true,
            dir: None,
            watch: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    pub name: String,
    /// PEM certificate chain; a self-signed certificate is generated into `data_dir` if absent.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Plain TCP listeners that offer STARTTLS (RFC 6120 §5).
    pub starttls: Vec<SocketAddr>,
    /// Direct TLS listeners (XEP-0368).
    pub direct_tls: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_stanza_bytes: usize,
    /// A tighter stanza limit before authentication, so strangers cannot make us buffer much.
    pub max_stanza_bytes_unauthenticated: usize,
    pub max_depth: usize,
    pub max_attributes: usize,
    /// Seconds of silence after which a stream is closed with `<connection-timeout/>`.
    pub idle_timeout_secs: u64,
    /// Seconds a new connection has, from accept, to finish TLS, SASL and binding: one
    /// deadline, not renewed by traffic; then `<connection-timeout/>`.
    pub auth_timeout_secs: u64,
    /// Failed authentications allowed per client IP per minute before refusing more.
    pub auth_failures_per_minute: u32,
    /// Stored offline messages per user; beyond this, senders get `<resource-constraint/>`.
    pub offline_quota: i64,
    /// Roster items per user, however they are added (roster set, subscribe, pre-approval);
    /// beyond this a roster set gets `<not-allowed/>`, a subscription stanza a presence error.
    pub roster_max_items: i64,
    /// Concurrent connections per client IP (0 = unlimited).
    pub connections_per_ip: usize,
    /// Logins doing their expensive steps (credential check, binding) at once. More wait
    /// up to `login_queue_ms`, then get a `<resource-constraint/>` stream error to retry
    /// on, so a reconnect storm is admitted at the pace the node can take. A connection
    /// holds no permit while it idles or waits for its client.
    pub concurrent_logins: usize,
    pub login_queue_ms: u64,
    /// Connections per client address that have not authenticated yet (0 = unlimited).
    /// More are refused before negotiation with `<policy-violation/>` (RFC 6120 §13.12),
    /// so strangers cannot hold sockets and memory while legitimate logins go on.
    pub unauthenticated_per_ip: usize,
    /// XEP-0077 account registrations (attempts) per client address per
    /// `register_window_secs`, besides one per stream (0 = unlimited).
    pub registrations_per_ip: u32,
    /// XEP-0077 password changes per account per `register_window_secs` (0 = unlimited).
    pub password_changes_per_account: u32,
    /// XEP-0077 password changes per client address per `register_window_secs` (0 = unlimited).
    pub password_changes_per_ip: u32,
    /// The window of the registration and password-change rates, in seconds.
    pub register_window_secs: u64,
    /// Addresses the per-address caps above do not apply to: local tooling, or a proxy on
    /// this host through which every client would otherwise share one address.
    pub unthrottled_addresses: Vec<std::net::IpAddr>,
    /// Bytes queued for one client (stanzas at their serialized size) before it counts as
    /// not reading: its stream is closed with `<policy-violation/>` and the queue freed.
    pub send_queue_bytes: usize,
    /// Seconds a write to a client may make no progress before the connection is dropped;
    /// also how long a closing stream gets to write what it has queued.
    pub send_timeout_secs: u64,
    /// Seconds a session with resumable stream management (XEP-0198) is kept after its
    /// connection is lost, for the client to resume it; a client asking for less (`max`)
    /// gets less. What it was sent and never acknowledged then goes to offline storage.
    pub resume_timeout_secs: u64,
    /// Resources bound at once per account, across the pool (0 = unlimited); one more bind
    /// gets `<resource-constraint/>` (RFC 6120 §7.6.2.1).
    pub max_resources_per_account: usize,
    /// Groups one roster item may carry; more are refused with `<not-acceptable/>`
    /// (RFC 6121 §2.3.3 leaves the limit to the server).
    pub roster_max_groups: usize,
    /// Longest roster item name and roster group name, in bytes; longer ones are refused
    /// with `<not-acceptable/>` (RFC 6121 §2.3.3).
    pub roster_max_name_bytes: usize,
    /// Subscription requests waiting for one user's answer; a request from yet another
    /// contact is refused with `<resource-constraint/>` and not stored.
    pub pending_subscriptions_max: i64,
    /// Bytes of a stanza as serialized for a plugin (escaping can make it larger than what
    /// was read); larger ones get `<policy-violation/>` instead of reaching the plugin.
    pub plugin_stanza_bytes: usize,
    /// The parsed tree of one stanza (elements, attributes, text, namespaces) may take at
    /// most this many times the stanza byte limit in memory; past it, `<policy-violation/>`.
    pub stanza_memory_factor: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeaturesConfig {
    /// XEP-0077 in-band registration. Off by default: open registration invites spam.
    pub registration: bool,
    /// XEP-0198 stream management: acknowledgements, and resumption of a session whose
    /// connection was lost within `limits.resume_timeout_secs`.
    pub stream_management: bool,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            registration: false,
            stream_management: true,
        }
    }
}

/// Node ids become DNS labels in the pool's certificates; keep them to what a label allows.
pub fn is_valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && !id.starts_with('-')
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `poolxmpp=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            store: "sqlite".to_string(),
            domains: vec![DomainConfig {
                name: "localhost".to_string(),
                tls_cert: None,
                tls_key: None,
            }],
            listen: ListenConfig::default(),
            limits: LimitsConfig::default(),
            features: FeaturesConfig::default(),
            plugins: PluginsConfig::default(),
            log: LogConfig::default(),
            pool: None,
            placement: PlacementConfig::default(),
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            starttls: vec!["127.0.0.1:5222".parse().expect("literal address")],
            direct_tls: vec!["127.0.0.1:5223".parse().expect("literal address")],
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_bytes: 256 * 1024,
            max_stanza_bytes_unauthenticated: 16 * 1024,
            max_depth: 48,
            max_attributes: 64,
            idle_timeout_secs: 600,
            auth_timeout_secs: 60,
            auth_failures_per_minute: 5,
            offline_quota: 1000,
            roster_max_items: 2000,
            connections_per_ip: 0,
            concurrent_logins: 64,
            login_queue_ms: 5_000,
            unauthenticated_per_ip: 32,
            registrations_per_ip: 5,
            password_changes_per_account: 5,
            password_changes_per_ip: 10,
            register_window_secs: 3600,
            unthrottled_addresses: vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv6Addr::LOCALHOST.into(),
            ],
            send_queue_bytes: 1024 * 1024,
            send_timeout_secs: 30,
            resume_timeout_secs: 300,
            max_resources_per_account: 10,
            roster_max_groups: 16,
            roster_max_name_bytes: 256,
            pending_subscriptions_max: 100,
            plugin_stanza_bytes: 512 * 1024,
            stanza_memory_factor: crate::stream::reader::DEFAULT_MEMORY_FACTOR,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Load from `path`, or defaults when no path is given.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?
            }
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.domains.is_empty() {
            return Err(ConfigError::Invalid("at least one [[domain]] is required".into()));
        }
        for d in &self.domains {
            if jid::BareJid::new(&d.name).map(|j| j.node().is_some()).unwrap_or(true) {
                return Err(ConfigError::Invalid(format!("{:?} is not a valid domain", d.name)));
            }
            if d.tls_cert.is_some() != d.tls_key.is_some() {
                return Err(ConfigError::Invalid(format!(
                    "domain {}: tls_cert and tls_key go together",
                    d.name
                )));
            }
        }
        if self.listen.starttls.is_empty() && self.listen.direct_tls.is_empty() {
            return Err(ConfigError::Invalid("no listeners configured".into()));
        }
        if self.limits.max_stanza_bytes < 10_000 {
            // RFC 6120 §13.12: servers MUST NOT block stanzas under 10,000 bytes.
            return Err(ConfigError::Invalid("max_stanza_bytes must be at least 10000".into()));
        }
        if self.limits.send_queue_bytes == 0 || self.limits.send_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "send_queue_bytes and send_timeout_secs must be positive".into(),
            ));
        }
        if self.limits.stanza_memory_factor < 2 {
            // A text-only stanza's tree already costs about its size; leave room for markup.
            return Err(ConfigError::Invalid("stanza_memory_factor must be at least 2".into()));
        }
        if let Some(pool) = &self.pool {
            if !is_valid_node_id(&pool.node_id) {
                return Err(ConfigError::Invalid(format!(
                    "invalid pool node id {:?}: use 1-63 lowercase letters, digits and '-', not at either end",
                    pool.node_id
                )));
            }
            if !self.store.starts_with("postgres") {
                return Err(ConfigError::Invalid(
                    "[pool] needs the shared PostgreSQL store: set store = \"postgres://...\"".into(),
                ));
            }
            if pool.heartbeat_ms == 0 || pool.heartbeat_ms * 3 > pool.lease_ms {
                return Err(ConfigError::Invalid(
                    "[pool] heartbeat_ms must be positive and at most a third of lease_ms".into(),
                ));
            }
        }
        let placement = &self.placement;
        if !(placement.load_factor >= 1.0 && placement.load_factor.is_finite()) {
            return Err(ConfigError::Invalid(
                "[placement] load_factor must be at least 1.0".into(),
            ));
        }
        if placement.drain_per_second == 0 {
            return Err(ConfigError::Invalid(
                "[placement] drain_per_second must be positive".into(),
            ));
        }
        Ok(())
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }

    pub fn is_hosted(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.name.eq_ignore_ascii_case(domain))
    }

    /// The budget and stall timeout of one client's write queue (a connection's, or the
    /// holding queue of a session waiting for resumption).
    pub fn send_queue(&self) -> crate::stream::writer::QueueLimits {
        crate::stream::writer::QueueLimits {
            max_bytes: self.limits.send_queue_bytes,
            send_timeout: std::time::Duration::from_secs(self.limits.send_timeout_secs),
        }
    }

    pub fn stream_limits(&self, authenticated: bool) -> Limits {
        Limits {
            max_stanza_bytes: if authenticated {
                self.limits.max_stanza_bytes
            } else {
                self.limits
                    .max_stanza_bytes_unauthenticated
                    .min(self.limits.max_stanza_bytes)
            },
            max_depth: self.limits.max_depth,
            max_attributes: self.limits.max_attributes,
            max_tree_bytes: 0,
        }
        .with_memory_factor(self.limits.stanza_memory_factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example must stay a valid config, with its pool section too.
    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/poolxmpp.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let _: Config = toml::from_str(&text).unwrap();
        // The [pool] and [placement] sections are commented out; uncomment and parse them.
        let uncommented = |section: &str| -> String {
            let start = text.find(&format!("\n# [{section}]\n")).unwrap() + 1;
            let body = &text[start..];
            let end = body.find("\n\n").unwrap_or(body.len());
            body[..end]
                .lines()
                .skip(1)
                .map(|l| l.strip_prefix("# ").unwrap_or(l))
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let pool: PoolConfig = toml::from_str(&uncommented("pool")).unwrap();
        assert_eq!(pool.node_id, "n1");
        let placement: PlacementConfig = toml::from_str(&uncommented("placement")).unwrap();
        assert_eq!(placement.strategy.as_deref(), Some("placement-roster"));
    }
}
