//! The breaker: whom a failing plugin stops serving, and for how long.
//!
//! Failures (traps, timeouts) are counted per sender as well as overall, so that one
//! sender's bad input cannot switch a plugin off for everyone (issue 10 item 6):
//!
//! - a sender whose last `max_failures` calls failed is refused for `sender_cooldown`
//!   (only that sender; everyone else is still served);
//! - the plugin as a whole is switched off when the last `max_failures` calls failed *and*
//!   those failures came from at least `breaker_senders` distinct senders, or any of them
//!   had no sender at all (events, pool changes, a failed re-instantiation): then the
//!   fault is the plugin's, not one input's;
//! - a switched-off plugin half-opens after `breaker_cooldown`: the next call is tried, and
//!   a success closes the breaker while a failure opens it for another cool-down. A
//!   cool-down of zero keeps it off until an operator reloads the plugin.
//!
//! Memory is bounded: only senders with recent failures are remembered, a success forgets
//! the sender, failures older than `sender_cooldown` are forgotten, and at most
//! `tracked_senders` are kept (the stalest is evicted first).
//!
//! Plain state with the clock passed in, so the rules are tested without wasm or sleeps.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::manifest::PluginLimits;

/// The breaker's settings, from the plugin's `[limits]`.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failures that block a sender, and (with enough senders) the plugin.
    pub max_failures: u32,
    /// Distinct senders among the consecutive failures before the plugin is switched off.
    pub breaker_senders: usize,
    /// How long a sender whose calls keep failing is refused.
    pub sender_cooldown: Duration,
    /// How long the plugin stays off before one call is tried again; zero means until a reload.
    pub breaker_cooldown: Duration,
    /// At most this many senders' failure counts are kept.
    pub tracked_senders: usize,
}

impl From<&PluginLimits> for BreakerConfig {
    fn from(l: &PluginLimits) -> Self {
        BreakerConfig {
            max_failures: l.max_failures.max(1),
            breaker_senders: l.breaker_senders.max(1),
            sender_cooldown: Duration::from_secs(l.sender_cooldown_secs),
            breaker_cooldown: Duration::from_secs(l.breaker_cooldown_secs),
            tracked_senders: l.tracked_senders.max(1),
        }
    }
}

/// Whether a call may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Run,
    /// This sender's calls keep failing; refuse it (only it) for now.
    SenderBlocked,
    /// The plugin is switched off.
    Open(String),
}

/// What a failure changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tripped {
    Nothing,
    /// The sender is now refused for the sender cool-down.
    Sender(String),
    /// The plugin is now switched off, with the reason.
    Plugin(String),
}

#[derive(Debug, Clone)]
struct SenderRecord {
    consecutive: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Debug)]
enum State {
    Closed,
    /// Off; `until` is when one call may be tried (`None`: until a reload).
    Open {
        reason: String,
        until: Option<Instant>,
    },
    /// One trial call is running; its outcome closes or reopens the breaker.
    HalfOpen {
        reason: String,
    },
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    senders: HashMap<String, SenderRecord>,
    /// Consecutive failures overall (any sender), and who caused them: distinct senders,
    /// `None` for a failure without one. Holds at most `max_failures` distinct entries
    /// plus one.
    consecutive: u32,
    culprits: Vec<Option<String>>,
    state: State,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            senders: HashMap::new(),
            consecutive: 0,
            culprits: Vec::new(),
            state: State::Closed,
        }
    }

    /// Whether a call from `sender` may run now. When the plugin's cool-down is over this
    /// lets one call through as the half-open trial.
    pub fn admit(&mut self, sender: Option<&str>, now: Instant) -> Admission {
        match &self.state {
            State::Closed => {}
            State::Open { reason, until } => match until {
                Some(until) if now >= *until => {
                    self.state = State::HalfOpen { reason: reason.clone() };
                }
                _ => return Admission::Open(reason.clone()),
            },
            // The actor runs one call at a time, so a trial's outcome is always recorded
            // before the next admission; be total anyway.
            State::HalfOpen { reason } => return Admission::Open(reason.clone()),
        }
        if let Some(record) = sender.and_then(|s| self.senders.get(s)) {
            if record.blocked_until.is_some_and(|until| now < until) {
                return Admission::SenderBlocked;
            }
        }
        Admission::Run
    }

    /// The call from `sender` succeeded: it and the plugin are in good standing again.
    pub fn success(&mut self, sender: Option<&str>) {
        if let Some(s) = sender {
            self.senders.remove(s);
        }
        self.consecutive = 0;
        self.culprits.clear();
        self.state = State::Closed;
    }

    /// The call from `sender` failed (a trap or a timeout, or an instance that cannot be
    /// recreated). `fault` is kept as the reason if this switches the plugin off.
    pub fn failure(&mut self, sender: Option<&str>, fault: &str, now: Instant) -> Tripped {
        self.consecutive = self.consecutive.saturating_add(1);
        let culprit = sender.map(str::to_string);
        if !self.culprits.contains(&culprit) && self.culprits.len() <= self.config.max_failures as usize {
            self.culprits.push(culprit);
        }
        if let State::HalfOpen { .. } = self.state {
            return self.open(format!("the trial call after the cool-down failed: {fault}"), now);
        }
        let mut tripped = Tripped::Nothing;
        if let Some(s) = sender {
            if self.record_sender_failure(s, now) {
                tripped = Tripped::Sender(s.to_string());
            }
        }
        let senders = self.culprits.iter().filter(|c| c.is_some()).count();
        let anonymous = self.culprits.iter().any(Option::is_none);
        if self.consecutive >= self.config.max_failures && (anonymous || senders >= self.config.breaker_senders) {
            let who = if anonymous {
                "including calls without a sender".to_string()
            } else {
                format!("from {senders} senders")
            };
            return self.open(
                format!("{} consecutive failures {who}, last: {fault}", self.consecutive),
                now,
            );
        }
        tripped
    }

    /// Switch the plugin off now, whoever sent the call: for faults that are the plugin's
    /// alone (an instance that cannot be recreated).
    pub fn trip(&mut self, reason: String, now: Instant) -> Tripped {
        self.open(reason, now)
    }

    /// Whether the plugin is switched off now (and why), for the registry's fast refusal.
    /// `until` is when a trial call will be let through.
    pub fn open_state(&self) -> Option<(String, Option<Instant>)> {
        match &self.state {
            State::Closed => None,
            State::Open { reason, until } => Some((reason.clone(), *until)),
            State::HalfOpen { reason } => Some((reason.clone(), None)),
        }
    }

    /// How many senders' failure counts are held (bounded by `tracked_senders`).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.senders.len()
    }

    fn open(&mut self, reason: String, now: Instant) -> Tripped {
        let cooldown = self.config.breaker_cooldown;
        let until = (!cooldown.is_zero()).then(|| now + cooldown);
        self.state = State::Open {
            reason: reason.clone(),
            until,
        };
        // The next trial starts a fresh count.
        self.consecutive = 0;
        self.culprits.clear();
        Tripped::Plugin(reason)
    }

    /// Count a failure against one sender; returns whether it is now blocked.
    fn record_sender_failure(&mut self, sender: &str, now: Instant) -> bool {
        let window = self.config.sender_cooldown;
        if !self.senders.contains_key(sender) && self.senders.len() >= self.config.tracked_senders {
            self.evict(now);
        }
        let record = self.senders.entry(sender.to_string()).or_insert(SenderRecord {
            consecutive: 0,
            last_failure: now,
            blocked_until: None,
        });
        // Failures spread thinly over time are not a pattern: forget stale ones.
        if now.saturating_duration_since(record.last_failure) > window {
            record.consecutive = 0;
        }
        record.consecutive = record.consecutive.saturating_add(1);
        record.last_failure = now;
        if record.consecutive >= self.config.max_failures {
            record.consecutive = 0;
            record.blocked_until = Some(now + window);
            return true;
        }
        false
    }

    /// Make room for one more sender: drop everything stale, else the stalest record.
    fn evict(&mut self, now: Instant) {
        let window = self.config.sender_cooldown;
        self.senders.retain(|_, r| {
            let blocked = r.blocked_until.is_some_and(|until| now < until);
            blocked || now.saturating_duration_since(r.last_failure) <= window
        });
        if self.senders.len() >= self.config.tracked_senders {
            if let Some(stalest) = self
                .senders
                .iter()
                .min_by_key(|(_, r)| r.last_failure)
                .map(|(k, _)| k.clone())
            {
                self.senders.remove(&stalest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            max_failures: 3,
            breaker_senders: 2,
            sender_cooldown: Duration::from_secs(60),
            breaker_cooldown: Duration::from_secs(300),
            tracked_senders: 4,
        })
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn one_sender_is_blocked_alone_and_the_plugin_stays_on() {
        let mut b = breaker();
        let t0 = Instant::now();
        let alice = Some("alice@l");
        for i in 0..2 {
            assert_eq!(b.admit(alice, t0), Admission::Run);
            assert_eq!(b.failure(alice, "trap", secs(t0, i)), Tripped::Nothing);
        }
        assert_eq!(b.failure(alice, "trap", secs(t0, 2)), Tripped::Sender("alice@l".into()));
        assert_eq!(b.admit(alice, secs(t0, 3)), Admission::SenderBlocked);
        // Everyone else is served, and the plugin is not switched off.
        assert_eq!(b.admit(Some("bob@l"), secs(t0, 3)), Admission::Run);
        assert!(b.open_state().is_none());
        // Many more attempts by the same sender do not switch the plugin off either.
        for i in 0..20 {
            assert_eq!(b.admit(alice, secs(t0, 4 + i)), Admission::SenderBlocked);
        }
        assert!(b.open_state().is_none());
        // The cool-down ends.
        assert_eq!(b.admit(alice, secs(t0, 63)), Admission::Run);
    }

    #[test]
    fn failures_from_several_senders_switch_the_plugin_off_then_it_half_opens() {
        let mut b = breaker();
        let t0 = Instant::now();
        b.failure(Some("alice@l"), "trap", t0);
        b.failure(Some("alice@l"), "trap", t0);
        match b.failure(Some("bob@l"), "trap", t0) {
            Tripped::Plugin(reason) => assert!(reason.contains("2 senders"), "{reason}"),
            other => panic!("expected the breaker to open, got {other:?}"),
        }
        assert!(matches!(b.admit(Some("carol@l"), secs(t0, 299)), Admission::Open(_)));
        // Half-open after the cool-down: one trial; a failure reopens it at once.
        assert_eq!(b.admit(Some("carol@l"), secs(t0, 300)), Admission::Run);
        assert!(matches!(
            b.failure(Some("carol@l"), "trap", secs(t0, 300)),
            Tripped::Plugin(_)
        ));
        assert!(matches!(b.admit(Some("carol@l"), secs(t0, 301)), Admission::Open(_)));
        // The next trial succeeds: closed again.
        assert_eq!(b.admit(Some("carol@l"), secs(t0, 600)), Admission::Run);
        b.success(Some("carol@l"));
        assert!(b.open_state().is_none());
        assert_eq!(b.admit(Some("dave@l"), secs(t0, 601)), Admission::Run);
    }

    #[test]
    fn a_success_resets_the_run_and_failures_without_a_sender_count_as_the_plugins() {
        let mut b = breaker();
        let t0 = Instant::now();
        b.failure(Some("alice@l"), "trap", t0);
        b.failure(Some("bob@l"), "trap", t0);
        b.success(Some("carol@l"));
        b.failure(Some("alice@l"), "trap", t0);
        b.failure(Some("bob@l"), "trap", t0);
        assert!(b.open_state().is_none());
        // An event (no sender) fails too: three in a row, the plugin's fault.
        assert!(matches!(b.failure(None, "timeout", t0), Tripped::Plugin(_)));
    }

    #[test]
    fn zero_cooldown_waits_for_an_operator() {
        let mut b = breaker();
        b.config.breaker_cooldown = Duration::ZERO;
        let t0 = Instant::now();
        for _ in 0..3 {
            b.failure(None, "trap", t0);
        }
        assert!(matches!(b.admit(None, secs(t0, 100_000)), Admission::Open(_)));
    }

    #[test]
    fn sender_records_are_bounded_and_stale_failures_forgotten() {
        let mut b = breaker();
        let t0 = Instant::now();
        for i in 0..1000u64 {
            b.failure(Some(&format!("user{i}@l")), "trap", secs(t0, i));
            assert!(b.tracked() <= 4);
            // Interleaved successes keep the plugin on.
            b.success(Some("witness@l"));
        }
        // Two failures long apart do not add up to a block.
        b.failure(Some("slow@l"), "trap", t0);
        b.failure(Some("slow@l"), "trap", t0);
        b.success(None);
        assert_eq!(b.failure(Some("slow@l"), "trap", secs(t0, 120)), Tripped::Nothing);
    }
}
