//! TLS termination with rustls, from a PEM certificate chain and private key.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// An acceptor for `cert` and `key`; an error says which file is wrong and how.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let certs = {
        let pem = std::fs::read(cert)
            .map_err(|e| Error::Config(format!("cannot read tls_cert {}: {e}", cert.display())))?;
        rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("tls_cert {} is not PEM: {e}", cert.display())))?
    };
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "tls_cert {} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----`)",
            cert.display()
        )));
    }
    let key = {
        let pem = std::fs::read(key)
            .map_err(|e| Error::Config(format!("cannot read tls_key {}: {e}", key.display())))?;
        rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| Error::Config(format!("tls_key {} is not PEM: {e}", key.display())))?
            .ok_or_else(|| {
                Error::Config(format!("tls_key {} holds no private key", key.display()))
            })?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::Config(format!(
                "tls_cert and tls_key do not make a usable pair: {e}"
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
