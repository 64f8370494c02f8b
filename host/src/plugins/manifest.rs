//! The manifest beside each plugin: `NAME.wasm` comes with `NAME.toml` saying which world it
//! implements, what it claims, its limits and its configuration.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Feature,
    Filter,
    /// A feature and a filter in one component (contract 0.2 on).
    #[serde(rename = "feature-filter")]
    FeatureFilter,
    /// A strategy choosing users' home nodes (`[placement] strategy` names the one used).
    Placement,
}

impl World {
    /// Whether it claims stanzas and is told events.
    pub fn is_feature(self) -> bool {
        matches!(self, World::Feature | World::FeatureFilter)
    }

    /// Whether it is consulted at the filter points.
    pub fn is_filter(self) -> bool {
        matches!(self, World::Filter | World::FeatureFilter)
    }
}

/// What a plugin may read beyond its own state, granted by its manifest's `grants`: any
/// user's roster (`roster.items`, `roster.item`) and who is online (`presence.resources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    Roster,
    Presence,
}

/// Which stanzas a filter is consulted for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interest {
    /// Every stanza (a word filter).
    #[default]
    All,
    /// Only stanzas whose sender (outbound) or recipient (inbound) is in the set the
    /// plugin declares through the `interest` import (privacy lists: the users with rules).
    Declared,
}

/// The kinds of `event` a manifest may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    UserOnline,
    UserOffline,
    NodeJoined,
    NodeLeft,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique plugin name; also the namespace of its storage keys and metrics.
    pub name: String,
    pub world: World,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Payload namespaces of IQs addressed to a user's bare JID, to no one, or to a hosted
    /// domain, that this plugin answers (e.g. `vcard-temp`).
    #[serde(default)]
    pub iq_namespaces: Vec<String>,
    /// Component addresses this plugin owns entirely; `{domain}` expands to every hosted
    /// domain (e.g. `conference.{domain}`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Whether the plugin's addresses are keyed: a stanza for `key@address` (a room, a
    /// pubsub node) goes to the node of the pool that owns that bare JID, so each key has
    /// one live owner pool-wide, and the plugin is told `ownership-gained`/`-lost`.
    /// Stanzas for the address itself (`conference.example.org`) are served where they
    /// arrive.
    #[serde(default)]
    pub keyed: bool,
    /// Features added to the server's disco#info.
    #[serde(default)]
    pub disco_features: Vec<String>,
    /// Identities added to every account's disco#info, as `category/type` (PEP:
    /// `pubsub/pep`), for a plugin answering IQs on users' behalf.
    #[serde(default)]
    pub account_identities: Vec<String>,
    /// Features added to every account's disco#info.
    #[serde(default)]
    pub account_features: Vec<String>,
    /// Whether disco#items queries to an account, and disco#info queries about one of its
    /// nodes (a `node` attribute), go to this plugin: PEP lists an account's nodes
    /// (XEP-0163 §6.2, XEP-0060 §5.2). One plugin at a time serves them.
    #[serde(default)]
    pub account_items: bool,
    /// The event kinds a feature plugin is told of (its own timers always reach it).
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// Reads of other users' data the plugin may make (none by default).
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// For a filter: when it fails on a stanza (traps, times out, is overloaded or
    /// switched off), block the stanza instead of letting it through. What privacy lists
    /// need: a broken blocking plugin must not deliver what a user blocked.
    #[serde(default)]
    pub fail_closed: bool,
    /// For a filter: consulted for every stanza (`all`), or only for those of the users
    /// it declared rules for (`declared`), so messaging between others never pays for it.
    #[serde(default)]
    pub interest: Interest,
    /// How many instances run side by side (1 to 16). Calls about one key (a room, a
    /// user) always reach the same instance, in order; see `runners`.
    #[serde(default = "one")]
    pub instances: usize,
    #[serde(default)]
    pub limits: PluginLimits,
    /// Free-form settings handed to `init`.
    #[serde(default)]
    pub config: toml::Table,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory per instance.
    pub memory_mib: u64,
    /// Wall-clock budget for one call, including host calls it makes.
    pub timeout_ms: u64,
    /// Budget for `init`.
    pub init_timeout_ms: u64,
    /// Consecutive failures (traps, timeouts) after which a sender is refused for
    /// `sender_cooldown_secs`, and the breaker switches the plugin off if they came from
    /// `breaker_senders` distinct senders (see `breaker`).
    pub max_failures: u32,
    /// Calls queued for the plugin before new ones are refused with `resource-constraint`.
    pub queue: usize,
    /// Distinct senders among `max_failures` consecutive failures before the plugin is
    /// switched off for everyone (failures without a sender count as the plugin's own).
    pub breaker_senders: usize,
    /// How long a sender whose calls keep failing gets `resource-constraint` (that sender only).
    pub sender_cooldown_secs: u64,
    /// How long a switched-off plugin waits before trying one call again (0: until a reload).
    pub breaker_cooldown_secs: u64,
    /// Senders whose recent failures are remembered; the stalest are forgotten first.
    pub tracked_senders: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_mib: 64,
            timeout_ms: 1000,
            init_timeout_ms: 5000,
            max_failures: 5,
            queue: 1024,
            breaker_senders: 3,
            sender_cooldown_secs: 60,
            breaker_cooldown_secs: 60,
            tracked_senders: 4096,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid manifest {0}: {1}")]
    Parse(String, toml::de::Error),
    #[error("manifest {0}: {1}")]
    Invalid(String, String),
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Read(shown.clone(), e))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| ManifestError::Parse(shown.clone(), e))?;
        if manifest.name.is_empty()
            || !manifest
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ManifestError::Invalid(shown, "name must be [A-Za-z0-9_-]+".into()));
        }
        if manifest.limits.memory_mib == 0 || manifest.limits.timeout_ms == 0 {
            return Err(ManifestError::Invalid(shown, "limits must be positive".into()));
        }
        if !(1..=super::runners::MAX_INSTANCES).contains(&manifest.instances) {
            let max = super::runners::MAX_INSTANCES;
            return Err(ManifestError::Invalid(shown, format!("instances must be 1 to {max}")));
        }
        let identity = |i: &String| i.split_once('/').is_some_and(|(c, t)| !c.is_empty() && !t.is_empty());
        if !manifest.account_identities.iter().all(identity) {
            return Err(ManifestError::Invalid(
                shown,
                "account_identities are category/type".into(),
            ));
        }
        if manifest.iq_namespaces.is_empty()
            && !(manifest.account_identities.is_empty()
                && manifest.account_features.is_empty()
                && !manifest.account_items)
        {
            return Err(ManifestError::Invalid(
                shown,
                "account_identities, account_features and account_items need iq_namespaces to answer for".into(),
            ));
        }
        Ok(manifest)
    }

    /// The `[config]` table as the flat `key = value` strings `init` receives.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}
