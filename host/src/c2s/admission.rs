//! Who may negotiate, for how long, and when a login may spend the node's resources.
//!
//! - A [`Deadline`] from accept bounds the whole negotiation (TLS, SASL, binding): traffic
//!   does not renew it, so whitespace or repeated `<abort/>`s cannot keep a stranger's
//!   connection open.
//! - An admission permit (`limits.concurrent_logins`) is held only around the expensive
//!   steps — a credential check (store lookup, PLAIN's key derivation) and binding — never
//!   while we wait for the client, so idle or slow strangers hold none.
//! - Not-yet-authenticated connections are capped per address (`limits.unauthenticated_per_ip`,
//!   an [`crate::limits::AddressSlot`] taken at accept and dropped at SASL success).

use std::future::Future;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::server::Server;
use crate::stream::{StreamError, StreamErrorCondition};

/// The most a TLS handshake may take, even early in a long negotiation deadline.
const TLS_HANDSHAKE_MAX: Duration = Duration::from_secs(15);

/// The instant by which a connection must be authenticated and bound.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

/// The negotiation deadline passed.
#[derive(Debug)]
pub struct Expired;

impl Deadline {
    /// `limits.auth_timeout_secs` from now (call at accept).
    pub fn from_accept(server: &Server) -> Deadline {
        Deadline(Instant::now() + Duration::from_secs(server.config.limits.auth_timeout_secs))
    }

    /// Run `f` until it finishes or the deadline passes.
    pub async fn run<F: Future>(self, f: F) -> Result<F::Output, Expired> {
        tokio::time::timeout_at(self.0, f).await.map_err(|_| Expired)
    }

    /// Run a TLS handshake: bounded by the deadline and by [`TLS_HANDSHAKE_MAX`].
    pub async fn run_handshake<F: Future>(self, f: F) -> Result<F::Output, Expired> {
        let at = self.0.min(Instant::now() + TLS_HANDSHAKE_MAX);
        tokio::time::timeout_at(at, f).await.map_err(|_| Expired)
    }
}

/// The stream error for a negotiation that ran out of time (RFC 6120 §4.9.3.4).
pub fn expired() -> StreamError {
    StreamError::new(
        StreamErrorCondition::ConnectionTimeout,
        "authentication and binding took too long",
    )
}

/// The retryable refusal when the node is saturated with logins (RFC 6120 §4.9.3.17).
pub fn saturated() -> StreamError {
    StreamError::new(
        StreamErrorCondition::ResourceConstraint,
        "too many logins in progress; please retry in a few seconds",
    )
}

/// The refusal of a connection over its address's unauthenticated cap. RFC 6120 §13.12
/// says such a connection must not proceed; `<policy-violation/>` (§4.9.3.14) names a local
/// policy applied to this client, where `<resource-constraint/>` would claim the whole node
/// is out of resources (our retry-soon signal for admission control).
pub fn too_many_from_address() -> StreamError {
    StreamError::new(
        StreamErrorCondition::PolicyViolation,
        "too many connections from your address are still negotiating; finish or close them first",
    )
}

/// Wait (up to `limits.login_queue_ms`) for an admission permit for one expensive step.
pub async fn permit(server: &Server) -> Result<OwnedSemaphorePermit, StreamError> {
    let wait = Duration::from_millis(server.config.limits.login_queue_ms);
    match tokio::time::timeout(wait, server.logins.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => {
            tracing::info!("login refused: too many in progress (resource-constraint)");
            Err(saturated())
        }
    }
}
