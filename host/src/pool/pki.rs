//! The pool's own certificate authority and the mutual-TLS configurations of pool links.
//!
//! `poolxmpp pool init` creates a CA (`ca.crt`, `ca.key`) and one certificate per node
//! (`NODE.crt`, `NODE.key`) whose only name is [`node_dns_name`]. Links trust nothing
//! but this CA in either direction, and a node is who its certificate says: the link
//! layer checks the node id announced in the handshake against the certificate, so a
//! valid certificate for node `a` cannot pose as node `b`.
//!
//! The CA key never needs to be on a node: copy `ca.crt`, `NODE.crt` and `NODE.key` to
//! each machine and keep `ca.key` with the operator (it is needed only to issue more).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// ALPN of pool links, so a client port can never be mistaken for a pool port.
pub const ALPN: &[u8] = b"poolxmpp-link/1";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}: no certificate or key in the PEM file")]
    EmptyPem(String),
    #[error("node id {0:?} is not valid: use 1-63 of a-z, 0-9 and '-', not starting or ending with '-'")]
    BadNodeId(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("{0} exists; refusing to overwrite a pool CA (remove it to start a new pool)")]
    Exists(String),
}

/// Node ids become DNS labels in certificates (see [`crate::config::is_valid_node_id`]).
pub fn validate_node_id(id: &str) -> Result<(), PkiError> {
    if crate::config::is_valid_node_id(id) {
        Ok(())
    } else {
        Err(PkiError::BadNodeId(id.to_string()))
    }
}

/// The name a node's certificate carries (`.invalid` is reserved: it can never be a real host).
pub fn node_dns_name(node_id: &str) -> String {
    format!("{node_id}.pool.invalid")
}

/// The CA's subject, rebuilt identically whenever the CA signs, so the key alone suffices.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "poolxmpp pool CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(path, contents).map_err(io)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Create a new pool CA in `dir`. Refuses to replace an existing one: every node's
/// certificate hangs on it.
pub fn init_ca(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let key_path = dir.join("ca.key");
    if key_path.exists() {
        return Err(PkiError::Exists(key_path.display().to_string()));
    }
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    write(&key_path, &key.serialize_pem(), true)?;
    write(&dir.join("ca.crt"), &cert.pem(), false)?;
    Ok(())
}

/// Issue (or re-issue) the certificate of one node with the CA in `dir`.
pub fn issue_node(dir: &Path, node_id: &str) -> Result<(PathBuf, PathBuf), PkiError> {
    validate_node_id(node_id)?;
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)?;
    let ca = ca_params().self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![node_dns_name(node_id)])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("poolxmpp node {node_id}"));
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    let (crt_path, key_path) = (dir.join(format!("{node_id}.crt")), dir.join(format!("{node_id}.key")));
    write(&key_path, &key.serialize_pem(), true)?;
    write(&crt_path, &cert.pem(), false)?;
    Ok((crt_path, key_path))
}

/// Both sides of a node's pool-link TLS: accept only peers with a certificate from the
/// pool CA, and present our own certificate when dialing.
pub struct LinkTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl LinkTls {
    /// Load `ca.crt`, `NODE.crt` and `NODE.key` from `dir`.
    pub fn load(dir: &Path, node_id: &str) -> Result<LinkTls, PkiError> {
        let ca_path = dir.join("ca.crt");
        let mut roots = RootCertStore::empty();
        for cert in certs(&ca_path)? {
            roots.add(cert)?;
        }
        let roots = Arc::new(roots);
        let chain = certs(&dir.join(format!("{node_id}.crt")))?;
        let key = private_key(&dir.join(format!("{node_id}.key")))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| PkiError::Verifier(e.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.alpn_protocols = vec![ALPN.to_vec()];

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(LinkTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// The server name to dial a node by: its certificate's only name.
pub fn server_name(node_id: &str) -> Result<ServerName<'static>, PkiError> {
    ServerName::try_from(node_dns_name(node_id)).map_err(|_| PkiError::BadNodeId(node_id.to_string()))
}

/// Does this (already chain-verified) certificate belong to `node_id`?
pub fn cert_names_node(cert: &CertificateDer<'_>, node_id: &str) -> bool {
    let Ok(name) = server_name(node_id) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert).is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|source| PkiError::Io {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(PkiError::EmptyPem(path.display().to_string()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|source| PkiError::Io {
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| PkiError::EmptyPem(path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_their_node_only() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path()).unwrap();
        assert!(matches!(init_ca(dir.path()), Err(PkiError::Exists(_))));
        issue_node(dir.path(), "n1").unwrap();
        issue_node(dir.path(), "n2").unwrap();
        let n1 = certs(&dir.path().join("n1.crt")).unwrap();
        assert!(cert_names_node(&n1[0], "n1"));
        assert!(!cert_names_node(&n1[0], "n2"));
        LinkTls::load(dir.path(), "n1").unwrap();
        assert!(issue_node(dir.path(), "Bad_Id").is_err());
    }
}
