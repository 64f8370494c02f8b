//! Who may negotiate, for how long, and when a login may spend the node's resources.
//!
//! - A [`Deadline`] from accept bounds the whole negotiation (TLS, SASL, binding): traffic
//!   does not renew it, so whitespace or repeated `<abort/>`s cannot keep a stranger's
//!   connection open.
//! - An admission permit (`limits.concurrent_logins`) is held only around the expensive
//!   steps — the TLS handshake (for at most [`HANDSHAKE_PERMIT_MAX`]), a credential check
//!   (store lookup, PLAIN's key derivation) and binding — never while we wait for the
//!   client, so idle or slow strangers hold none for long. The handshake's permit is taken
//!   before any TLS work, so a saturated node refuses a reconnect storm cheaply (before
//!   TLS on the STARTTLS port) and each admitted client then spends its handshake at once.
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

/// How long a TLS handshake may hold its admission permit. The server's share of a
/// handshake is done within one round trip; a client slower than this (or stalling on
/// purpose) finishes its handshake without a permit.
pub const HANDSHAKE_PERMIT_MAX: Duration = Duration::from_secs(2);

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

    /// Run a TLS handshake: bounded by the deadline and by [`TLS_HANDSHAKE_MAX`], holding
    /// `permit` for its first [`HANDSHAKE_PERMIT_MAX`] at most.
    pub async fn run_handshake<F: Future>(self, permit: OwnedSemaphorePermit, f: F) -> Result<F::Output, Expired> {
        let at = self.0.min(Instant::now() + TLS_HANDSHAKE_MAX);
        let admitted = async move {
            tokio::pin!(f);
            tokio::select! {
                out = &mut f => out,
                _ = tokio::time::sleep(HANDSHAKE_PERMIT_MAX) => {
                    drop(permit);
                    f.await
                }
            }
        };
        tokio::time::timeout_at(at, admitted).await.map_err(|_| Expired)
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

/// A permit for a step after TLS (a credential check, binding). A connection past its
/// handshake was admitted once already, so it waits for its turn (up to the negotiation
/// deadline) instead of being refused: under a reconnect storm the only refusals come
/// before TLS, where they cost nothing, and no handshake or key derivation is wasted on a
/// login that is then turned away.
pub async fn step_permit(server: &Server, deadline: Deadline) -> Result<OwnedSemaphorePermit, StreamError> {
    match deadline.run(server.logins.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(saturated()),
        Err(Expired) => Err(expired()),
    }
}

/// Wait (up to `limits.login_queue_ms`) for the admission permit of a new login (its TLS
/// handshake); past that, the retryable `<resource-constraint/>`.
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
