//! SASL client glue around `rsasl`.
//!
//! The SCRAM client has to run PBKDF2 over the password with the server's salt
//! and iteration count (Prosody defaults to 10 000 iterations). The *server*
//! stores the derived keys and does not repeat that work per login, so a naive
//! load generator would burn more CPU than the server it measures. Like real
//! clients (which cache the SaltedPassword), we keep a process-wide cache keyed
//! by (mechanism, user, salt, iterations) and hand rsasl the `SaltedPassword`
//! property. On a miss it is computed with RustCrypto's `pbkdf2_hmac`, which
//! precomputes the HMAC pads and is ~2x cheaper than the `SimpleHmac`-based
//! derivation rsasl would run itself. Everything else (nonces, proofs, server
//! signature verification) is rsasl's code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::scram::properties::{Iterations, Salt, SaltedPassword};
use rsasl::prelude::{Mechname, SASLClient, SASLConfig, Session, SessionError};
use rsasl::property::{AuthId, Password};

type CacheKey = (String, String, Vec<u8>, u32);

/// Process-wide cache of SCRAM salted passwords.
#[derive(Default)]
pub struct ScramCache {
    enabled: bool,
    map: Mutex<HashMap<CacheKey, Vec<u8>>>,
    /// Number of PBKDF2 derivations actually performed (cache misses).
    pub derivations: AtomicU64,
}

impl ScramCache {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    fn salted(&self, mech: &str, user: &str, password: &[u8], salt: &[u8], iters: u32) -> Vec<u8> {
        let key = (mech.to_owned(), user.to_owned(), salt.to_vec(), iters);
        if self.enabled {
            if let Some(v) = self.map.lock().expect("cache poisoned").get(&key) {
                return v.clone();
            }
        }
        self.derivations.fetch_add(1, Ordering::Relaxed);
        let out = if mech.starts_with("SCRAM-SHA-256") {
            pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(password, salt, iters).to_vec()
        } else {
            pbkdf2::pbkdf2_hmac_array::<sha1::Sha1, 20>(password, salt, iters).to_vec()
        };
        if self.enabled {
            self.map.lock().expect("cache poisoned").insert(key, out.clone());
        }
        out
    }
}

struct Credentials {
    user: String,
    password: String,
    cache: Arc<ScramCache>,
}

impl SessionCallback for Credentials {
    fn callback(
        &self,
        session: &SessionData,
        context: &Context,
        request: &mut Request<'_>,
    ) -> Result<(), SessionError> {
        if request.is::<SaltedPassword>() {
            let (Some(salt), Some(iters)) = (context.get_ref::<Salt>(), context.get_ref::<Iterations>()) else {
                // Let rsasl fall back to deriving from the plain password.
                return Ok(());
            };
            let mech = session.mechanism().mechanism.as_str();
            let salted = self
                .cache
                .salted(mech, &self.user, self.password.as_bytes(), salt, *iters);
            request.satisfy::<SaltedPassword>(&salted)?;
            return Ok(());
        }
        request
            .satisfy::<AuthId>(&self.user)?
            .satisfy::<Password>(self.password.as_bytes())?;
        Ok(())
    }
}

/// Start a client session for exactly `mechanism` (which must be in `offered`).
pub fn start(
    mechanism: &str,
    offered: &[String],
    user: &str,
    password: &str,
    cache: Arc<ScramCache>,
) -> Result<Session> {
    if !offered.iter().any(|m| m.eq_ignore_ascii_case(mechanism)) {
        return Err(anyhow!(
            "mechanism {mechanism} not offered (server offers: {})",
            offered.join(" ")
        ));
    }
    let config = SASLConfig::builder()
        .with_default_mechanisms()
        .with_callback(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
            cache,
        })?;
    let mech = Mechname::parse(mechanism.as_bytes())?;
    Ok(SASLClient::new(config).start_suggested([mech].iter())?)
}
