//! TLS for client streams: one certificate per hosted domain, chosen by SNI.
//!
//! Domains without a configured certificate get a self-signed one generated once into
//! `data_dir/certs/` and reused on later starts, so a client that pinned it keeps working.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::Digest;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}: no certificate or key found in the PEM file")]
    EmptyPem(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("bad key or certificate: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Certificates per domain plus the SHA-256 of each leaf, for `tls-server-end-point`.
#[derive(Debug)]
struct DomainCerts {
    by_domain: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for DomainCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = hello
            .server_name()
            .and_then(|name| self.by_domain.get(&name.to_ascii_lowercase()))
            .unwrap_or(&self.default);
        Some(key.clone())
    }
}

/// The TLS side of the node: the rustls config and each domain's `tls-server-end-point`
/// channel-binding value (RFC 5929 §4), which rustls does not expose per connection.
pub struct TlsSetup {
    pub config: Arc<ServerConfig>,
    end_points: HashMap<String, Vec<u8>>,
    default_end_point: Vec<u8>,
}

impl TlsSetup {
    /// The end-point hash of the certificate served for `sni` (the default one without SNI).
    pub fn end_point(&self, sni: Option<&str>) -> Vec<u8> {
        sni.and_then(|s| self.end_points.get(&s.to_ascii_lowercase()))
            .unwrap_or(&self.default_end_point)
            .clone()
    }
}

/// Build the rustls server config for all hosted domains.
pub fn server_config(config: &Config) -> Result<TlsSetup, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut by_domain = HashMap::new();
    let mut end_points = HashMap::new();
    let mut first = None;
    for domain in &config.domains {
        let (chain, key) = match (&domain.tls_cert, &domain.tls_key) {
            (Some(cert), Some(key)) => load_pem(cert, key)?,
            _ => self_signed(&config.data_dir, &domain.name)?,
        };
        end_points.insert(domain.name.to_ascii_lowercase(), server_end_point(&chain[0]));
        let certified = Arc::new(CertifiedKey::from_der(chain, key, &provider)?);
        first.get_or_insert_with(|| certified.clone());
        by_domain.insert(domain.name.to_ascii_lowercase(), certified);
    }
    let default = first.expect("config validation guarantees a domain");
    let default_end_point = server_end_point(&default.cert[0]);
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(DomainCerts { by_domain, default }));
    // Session tickets let reconnecting clients skip a full handshake.
    tls.send_tls13_tickets = 1;
    // XEP-0368: direct TLS clients may announce the XMPP client protocol.
    tls.alpn_protocols = vec![b"xmpp-client".to_vec()];
    Ok(TlsSetup {
        config: Arc::new(tls),
        end_points,
        default_end_point,
    })
}

/// RFC 5929 `tls-server-end-point` channel binding data: the hash of our leaf certificate.
pub fn server_end_point(cert: &CertificateDer<'_>) -> Vec<u8> {
    sha2::Sha256::digest(cert.as_ref()).to_vec()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn load_pem(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_pem = read(cert)?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Io {
            path: cert.display().to_string(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::EmptyPem(cert.display().to_string()));
    }
    let key_pem = read(key)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Io {
            path: key.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::EmptyPem(key.display().to_string()))?;
    Ok((chain, key))
}

/// A self-signed certificate for `domain` and its subdomains (`conference.`, `upload.`…).
/// The subject names the domain: clients show it when they ask the user to trust the
/// certificate (rcgen's default subject reads "rcgen self signed cert").
fn generate_for(domain: &str) -> Result<rcgen::CertifiedKey, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string(), format!("*.{domain}")])?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, domain);
    params.distinguished_name = subject;
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    Ok(rcgen::CertifiedKey { cert, key_pair })
}

fn self_signed(
    data_dir: &Path,
    domain: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let dir = data_dir.join("certs");
    let cert_path = dir.join(format!("{domain}.crt"));
    let key_path = dir.join(format!("{domain}.key"));
    if cert_path.exists() && key_path.exists() {
        return load_pem(&cert_path, &key_path);
    }
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let generated = generate_for(domain)?;
    let write = |path: &Path, contents: String| {
        std::fs::write(path, contents).map_err(|source| TlsError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    write(&cert_path, generated.cert.pem())?;
    write(&key_path, generated.key_pair.serialize_pem())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600));
    }
    tracing::info!(%domain, path = %cert_path.display(), "generated a self-signed certificate");
    load_pem(&cert_path, &key_path)
}
