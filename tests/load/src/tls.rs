//! TLS client configuration for the load generator.
//!
//! **This is a benchmark tool only.** Servers under test use throw-away
//! self-signed certificates, so certificate verification is deliberately
//! DISABLED: [`AcceptAnyCert`] accepts every certificate and every handshake
//! signature. Never reuse this configuration for anything that talks to a
//! server you do not control.
//!
//! We use rustls with the `ring` provider (not aws-lc-rs) to keep the build
//! free of C/cmake toolchains. Session resumption is off by default so every
//! login pays for a full handshake, like a fresh client would; `--tls-resume`
//! turns it on to model reconnecting clients.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

/// Certificate verifier that accepts anything (benchmarks against self-signed servers).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Build a shared connector. `direct` adds the `xmpp-client` ALPN id used by
/// XEP-0368 direct-TLS ports.
pub fn connector(direct: bool, resume: bool) -> Result<TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    if direct {
        config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    }
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// SNI / server name for the XMPP domain.
pub fn server_name(domain: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(domain.to_owned()).with_context(|| format!("invalid TLS name {domain:?}"))
}
