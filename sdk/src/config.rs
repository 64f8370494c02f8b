//! The manifest's `[config]` table as `init` receives it.
//!
//! The host flattens `[config]` to `key = value` strings (non-string TOML values arrive
//! in their TOML spelling), so a plugin's settings need no TOML parser inside the plugin.

use std::str::FromStr;

/// The `[config]` settings of the plugin's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config(pub Vec<(String, String)>);

impl Config {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// `key` parsed as `T` (numbers, booleans); `Ok(None)` when unset.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        self.get(key)
            .map(|v| v.parse().map_err(|_| format!("config {key}: cannot parse {v:?}")))
            .transpose()
    }

    /// `key` as a comma-separated list, items trimmed, empty items skipped.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Config(pairs)
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Config {
    fn from(pairs: [(&str, &str); N]) -> Self {
        Config(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values() {
        let c = Config::from([("words", " spam, ,scam "), ("n", "3")]);
        assert_eq!(c.list("words"), vec!["spam", "scam"]);
        assert_eq!(c.parse::<u32>("n"), Ok(Some(3)));
        assert!(c.parse::<u32>("words").is_err());
        assert_eq!(c.get_or("missing", "d"), "d");
    }
}
