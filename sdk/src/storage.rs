//! Typed access to the plugin's key/value storage.
//!
//! The host stores opaque bytes per plugin (keys are private to the plugin and survive
//! reloads, restarts and failover). Most plugins store text or small JSON records, so
//! these helpers do the encoding. A [`StorageError`] converts into an
//! `internal-server-error` stanza error, so `?` works inside `handle_stanza`.

use std::fmt;

pub use crate::host::StorageError as HostError;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::host;
use crate::stanza::StanzaError;

/// The store failed, or a value did not decode.
#[derive(Debug, Clone)]
pub enum StorageError {
    /// What the host said (unreachable store, value too large, shutting down).
    Host(HostError),
    /// The value under the key is not what the caller expected (not UTF-8, bad JSON).
    Decode(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Host(HostError::Unavailable(why)) => write!(f, "storage: {why}"),
            StorageError::Host(HostError::TooLarge(limit)) => write!(f, "storage: value over {limit} bytes"),
            StorageError::Host(HostError::ShuttingDown) => f.write_str("storage: the server is shutting down"),
            StorageError::Host(HostError::Fenced) => f.write_str("storage: this node no longer owns the key"),
            StorageError::Decode(why) => write!(f, "storage: {why}"),
        }
    }
}

impl From<HostError> for StorageError {
    fn from(e: HostError) -> Self {
        StorageError::Host(e)
    }
}

impl std::error::Error for StorageError {}

impl From<StorageError> for StanzaError {
    fn from(e: StorageError) -> Self {
        crate::log::error(&e.to_string());
        StanzaError::internal_server_error()
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// How many entries [`scan`] fetches per host call.
const PAGE: u32 = 100;

pub fn get_bytes(key: &str) -> Result<Option<Vec<u8>>> {
    Ok(host::get(key)?)
}

pub fn put_bytes(key: &str, value: &[u8]) -> Result<()> {
    Ok(host::put(key, value)?)
}

/// [`put_bytes`] only while this node still owns `owned.key` under `owned.fence` (see
/// [`crate::pool`]): a deposed owner's late write fails with `HostError::Fenced` instead
/// of overwriting the new owner's state.
pub fn put_fenced_bytes(owned: &crate::pool::Ownership, key: &str, value: &[u8]) -> Result<()> {
    Ok(host::put_fenced(owned, key, value)?)
}

/// [`put_fenced_bytes`] of JSON.
pub fn put_fenced_json<T: Serialize>(owned: &crate::pool::Ownership, key: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| StorageError::Decode(format!("{key}: {e}")))?;
    put_fenced_bytes(owned, key, &bytes)
}

/// Delete `key` under the same condition as [`put_fenced_bytes`]; whether it existed.
pub fn delete_fenced(owned: &crate::pool::Ownership, key: &str) -> Result<bool> {
    Ok(host::delete_fenced(owned, key)?)
}

/// Whether this failure means the node no longer owns the key it wrote under.
impl StorageError {
    pub fn is_fenced(&self) -> bool {
        matches!(self, StorageError::Host(HostError::Fenced))
    }
}

/// The value under `key` as UTF-8 text.
pub fn get_string(key: &str) -> Result<Option<String>> {
    get_bytes(key)?
        .map(|v| String::from_utf8(v).map_err(|_| StorageError::Decode(format!("{key}: not UTF-8"))))
        .transpose()
}

pub fn put_string(key: &str, value: &str) -> Result<()> {
    put_bytes(key, value.as_bytes())
}

/// The value under `key` decoded from JSON.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    get_bytes(key)?
        .map(|v| serde_json::from_slice(&v).map_err(|e| StorageError::Decode(format!("{key}: {e}"))))
        .transpose()
}

/// Store `value` under `key` as JSON.
pub fn put_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| StorageError::Decode(format!("{key}: {e}")))?;
    put_bytes(key, &bytes)
}

/// Remove `key`; returns whether it existed.
pub fn delete(key: &str) -> Result<bool> {
    Ok(host::delete(key)?)
}

/// Replace the value under `key` with `new` (`None` deletes) only if it currently equals
/// `expected` (`None`: absent). Returns whether the swap happened; build counters and
/// claims on it instead of get-then-put, which races across nodes.
pub fn compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool> {
    Ok(host::compare_and_swap(key, expected, new)?)
}

/// Every entry whose key starts with `prefix`, in key order, fetched page by page.
pub fn scan(prefix: &str) -> Scan {
    Scan {
        prefix: prefix.to_string(),
        after: None,
        page: Vec::new().into_iter(),
        done: false,
    }
}

/// The iterator [`scan`] returns; each item is a page fetch away at most.
pub struct Scan {
    prefix: String,
    after: Option<String>,
    page: std::vec::IntoIter<(String, Vec<u8>)>,
    done: bool,
}

impl Iterator for Scan {
    type Item = Result<(String, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.page.next() {
                self.after = Some(entry.0.clone());
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            match host::scan(&self.prefix, self.after.as_deref(), PAGE) {
                Ok(page) => {
                    self.done = page.len() < PAGE as usize;
                    self.page = page.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn typed_values_and_paged_scans() {
        crate::testing::reset();
        put_string("a", "x").unwrap();
        put_json("b", &vec![1, 2]).unwrap();
        assert_eq!(get_string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(get_json::<Vec<u32>>("b").unwrap(), Some(vec![1, 2]));
        assert!(get_json::<Vec<u32>>("a").is_err());
        for i in 0..250 {
            put_string(&format!("p/{i:03}"), "v").unwrap();
        }
        let keys: Vec<String> = scan("p/").map(|e| e.unwrap().0).collect();
        assert_eq!(keys.len(), 250);
        assert_eq!(keys[0], "p/000");
        assert_eq!(keys[249], "p/249");
        assert!(compare_and_swap("c", None, Some(b"1")).unwrap());
        assert!(!compare_and_swap("c", None, Some(b"2")).unwrap());
        assert!(delete("c").unwrap());
    }
}
