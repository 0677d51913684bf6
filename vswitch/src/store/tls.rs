//! TLS to the store: etcd's CA, and this host's client certificate when etcd asks for one
//! (`--client-cert-auth`). rustls with the ring provider: nothing to build beyond Cargo.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct TlsError {
    pub file: String,
    pub reason: String,
}

fn error(file: &Path, reason: impl ToString) -> TlsError {
    TlsError {
        file: file.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut reader =
        std::io::BufReader::new(std::fs::File::open(path).map_err(|e| error(path, e))?);
    let certs: Vec<_> = rustls_pemfile::certs(&mut reader)
        .collect::<Result<_, _>>()
        .map_err(|e| error(path, e))?;
    if certs.is_empty() {
        return Err(error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut reader =
        std::io::BufReader::new(std::fs::File::open(path).map_err(|e| error(path, e))?);
    rustls_pemfile::private_key(&mut reader)
        .map_err(|e| error(path, e))?
        .ok_or_else(|| error(path, "no PEM private key in it"))
}

/// A client configuration trusting `ca`, presenting `cert` and `key` if given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| error(ca, e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error(ca, e))?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| error(key, e))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
