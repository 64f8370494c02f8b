//! XEP-0077 §11 (security considerations): in-band registration and password changes are
//! throttled, so one stranger cannot create accounts in bulk nor make us derive keys
//! without end. One registration per stream; a rate per client address for registrations;
//! a rate per account and per address for password changes.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::LimitsConfig;
use crate::limits::{RateWindow, Unthrottled};
use crate::stanza::ErrorType;

/// Why a registration or password change was refused; each names its stanza error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This stream already registered an account: a new stream may try again.
    OnePerStream,
    /// The address's or the account's window is full: later.
    TooOften,
}

impl Refused {
    /// The stanza error's type and text. `<policy-violation/>` (RFC 6120 §8.3.3.12), as
    /// Prosody's mod_register_limits answers: a local policy, not a malformed request.
    pub fn error(self) -> (ErrorType, &'static str) {
        match self {
            Refused::OnePerStream => (ErrorType::Cancel, "one registration per stream"),
            Refused::TooOften => (
                ErrorType::Wait,
                "too many attempts from your address or for this account; try later",
            ),
        }
    }
}

/// What one unauthenticated stream did so far.
#[derive(Debug, Default)]
pub struct StreamRegistration {
    registered: bool,
}

impl StreamRegistration {
    pub fn succeeded(&mut self) {
        self.registered = true;
    }
}

pub struct RegisterThrottle {
    unthrottled: Unthrottled,
    registrations_by_ip: RateWindow<IpAddr>,
    password_by_ip: RateWindow<IpAddr>,
    password_by_account: RateWindow<String>,
}

impl RegisterThrottle {
    pub fn new(limits: &LimitsConfig, unthrottled: Unthrottled) -> Self {
        let window = Duration::from_secs(limits.register_window_secs.max(1));
        RegisterThrottle {
            unthrottled,
            registrations_by_ip: RateWindow::new(limits.registrations_per_ip, window),
            password_by_ip: RateWindow::new(limits.password_changes_per_ip, window),
            password_by_account: RateWindow::new(limits.password_changes_per_account, window),
        }
    }

    /// May this stream, from `ip`, attempt a registration now? Counts the attempt.
    pub fn registration(&self, stream: &StreamRegistration, ip: IpAddr) -> Result<(), Refused> {
        if stream.registered {
            return Err(Refused::OnePerStream);
        }
        if !self.unthrottled.contains(ip) && !self.registrations_by_ip.take(ip.to_canonical()) {
            return Err(Refused::TooOften);
        }
        Ok(())
    }

    /// May `account`, connected from `ip`, change its password now? Counts the attempt.
    pub fn password_change(&self, account: &str, ip: IpAddr) -> Result<(), Refused> {
        if !self.unthrottled.contains(ip) && !self.password_by_ip.take(ip.to_canonical()) {
            return Err(Refused::TooOften);
        }
        if !self.password_by_account.take(account.to_string()) {
            return Err(Refused::TooOften);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            registrations_per_ip: 2,
            password_changes_per_account: 1,
            password_changes_per_ip: 2,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn one_registration_per_stream_and_a_rate_per_address() {
        let t = RegisterThrottle::new(&limits(), Unthrottled::new(&[]));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut s = StreamRegistration::default();
        assert_eq!(t.registration(&s, ip), Ok(()));
        s.succeeded();
        assert_eq!(t.registration(&s, ip), Err(Refused::OnePerStream));
        let fresh = StreamRegistration::default();
        assert_eq!(t.registration(&fresh, ip), Ok(()));
        assert_eq!(t.registration(&fresh, ip), Err(Refused::TooOften));
    }

    #[test]
    fn password_changes_per_account_and_address() {
        let t = RegisterThrottle::new(&limits(), Unthrottled::new(&[]));
        let ip: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(t.password_change("a@x", ip), Ok(()));
        assert_eq!(t.password_change("a@x", ip), Err(Refused::TooOften));
        assert_eq!(t.password_change("b@x", ip), Err(Refused::TooOften));
    }
}
