//! Who may negotiate, for how long, and when a login may spend the node's resources.
//!
//! - A [`Deadline`] from accept bounds the whole negotiation (TLS, SASL, binding): traffic
//!   does not renew it, so whitespace or repeated `<abort/>`s cannot keep a stranger's
//!   connection open.
//! - An admission permit (`limits.concurrent_logins`) is a login's right to spend the
//!   node's resources: taken before any TLS work (so a saturated node refuses a reconnect
//!   storm cheaply, before TLS on the STARTTLS port) and kept while the client keeps
//!   negotiating, through SASL and binding, so an admitted login is never turned away
//!   half-way. It is given back as soon as the client makes us wait longer than
//!   [`IDLE_RELEASE`] (a slow TLS handshake, a pause between SASL steps — whitespace does not
//!   count) and taken again for the client's next step — waiting for its turn rather than
//!   being refused, since the login was admitted once — so idle or stalling strangers hold
//!   none. The permit lives in a task-local slot of the connection's task ([`scope`]).
//! - Not-yet-authenticated connections are capped per address (`limits.unauthenticated_per_ip`,
//!   an [`crate::limits::AddressSlot`] taken at accept and dropped at SASL success).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::Frontend;
use crate::stream::{StreamError, StreamErrorCondition};

/// The most a TLS handshake may take, even early in a long negotiation deadline.
const TLS_HANDSHAKE_MAX: Duration = Duration::from_secs(15);

/// How long a login may keep its admission permit while we wait for the client. A
/// client's next step comes within a round trip; one slower than this (or stalling on
/// purpose) goes on without a permit and takes one again for its next step.
pub const IDLE_RELEASE: Duration = Duration::from_millis(500);

tokio::task_local! {
    /// The admission permit of the connection this task serves, if it holds one.
    static PERMIT: RefCell<Option<OwnedSemaphorePermit>>;
}

/// Run a connection's negotiation with its (empty) admission slot.
///
/// A plain function returning the scoped future: an `async fn` awaiting its argument would
/// keep the whole connection future twice in the task (rustc does not overlap the two;
/// that cost ~20 KiB per idle connection).
pub fn scope<F: Future>(f: F) -> impl Future<Output = F::Output> {
    PERMIT.scope(RefCell::new(None), f)
}

fn holds_permit() -> bool {
    PERMIT.try_with(|p| p.borrow().is_some()).unwrap_or(false)
}

fn keep(permit: OwnedSemaphorePermit) {
    let _ = PERMIT.try_with(|p| *p.borrow_mut() = Some(permit));
}

/// Give the permit back: the client keeps us waiting, or its login is done.
pub fn release() {
    let _ = PERMIT.try_with(|p| p.borrow_mut().take());
}

/// Wait for `f` (the client's next step or the TLS handshake) holding the admission
/// permit for at most [`IDLE_RELEASE`] of it.
pub fn waiting_for_client<F: Future>(f: F) -> WaitingForClient<F> {
    WaitingForClient {
        f,
        release_at: None,
        checked: false,
    }
}

// The wrappers around a connection's negotiation steps are hand-written futures, not
// `async fn`s awaiting their argument: such an `async fn` keeps its argument and the
// awaited future side by side (rustc does not overlap the two), and a TLS handshake
// wrapped three deep cost ~8 KiB in every connection's task for its whole life.
pin_project_lite::pin_project! {
    /// See [`waiting_for_client`].
    pub struct WaitingForClient<F> {
        #[pin]
        f: F,
        #[pin]
        release_at: Option<tokio::time::Sleep>,
        checked: bool,
    }
}

impl<F: Future> Future for WaitingForClient<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if !*this.checked {
            *this.checked = true;
            if holds_permit() {
                this.release_at.set(Some(tokio::time::sleep(IDLE_RELEASE)));
            }
        }
        if let Poll::Ready(out) = this.f.poll(cx) {
            return Poll::Ready(out);
        }
        if let Some(release_at) = this.release_at.as_mut().as_pin_mut() {
            if release_at.poll(cx).is_ready() {
                release();
                this.release_at.set(None);
            }
        }
        Poll::Pending
    }
}

/// The instant by which a connection must be authenticated and bound.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

/// The negotiation deadline passed.
#[derive(Debug)]
pub struct Expired;

pin_project_lite::pin_project! {
    /// A future bounded by a [`Deadline`] (or the TLS handshake's own bound).
    pub struct Bounded<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
    }
}

impl<F: Future> Future for Bounded<F> {
    type Output = Result<F::Output, Expired>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map(|r| r.map_err(|_| Expired))
    }
}

impl Deadline {
    /// `limits.auth_timeout_secs` from now (call at accept).
    pub fn from_accept(front: &Frontend) -> Deadline {
        Deadline(Instant::now() + Duration::from_secs(front.ctx.config.limits.auth_timeout_secs))
    }

    /// Run `f` until it finishes or the deadline passes.
    pub fn run<F: Future>(self, f: F) -> Bounded<F> {
        Bounded {
            inner: tokio::time::timeout_at(self.0, f),
        }
    }

    /// Run a TLS handshake: bounded by the deadline and by [`TLS_HANDSHAKE_MAX`].
    pub fn run_handshake<F: Future>(self, f: F) -> Bounded<WaitingForClient<F>> {
        let at = self.0.min(Instant::now() + TLS_HANDSHAKE_MAX);
        Bounded {
            inner: tokio::time::timeout_at(at, waiting_for_client(f)),
        }
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

/// Hold an admission permit again for a later step of an admitted login (a credential
/// check, binding): kept from the previous step while the client was quick, else waited
/// for (up to the negotiation deadline, never refused for saturation).
pub async fn readmit(front: &Frontend, deadline: Deadline) -> Result<(), StreamError> {
    if holds_permit() {
        return Ok(());
    }
    match deadline.run(front.logins.clone().acquire_owned()).await {
        Ok(Ok(permit)) => {
            keep(permit);
            Ok(())
        }
        Ok(Err(_)) => Err(saturated()),
        Err(Expired) => Err(expired()),
    }
}

/// Admit a new login before its first expensive step (the TLS handshake): wait up to
/// `limits.login_queue_ms` for a permit, then refuse with the retryable
/// `<resource-constraint/>`.
pub async fn admit(front: &Frontend) -> Result<(), StreamError> {
    if holds_permit() {
        return Ok(());
    }
    let wait = Duration::from_millis(front.ctx.config.limits.login_queue_ms);
    match tokio::time::timeout(wait, front.logins.clone().acquire_owned()).await {
        Ok(Ok(permit)) => {
            keep(permit);
            Ok(())
        }
        _ => {
            tracing::info!("login refused: too many in progress (resource-constraint)");
            Err(saturated())
        }
    }
}
