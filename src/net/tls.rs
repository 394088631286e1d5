//! HTTPS: the clients' side (witnessing, `audit`, `verify --log`,
//! `backup`, `restore --log`) trusts the system's roots, read from the
//! machine's certificate store (no network), plus an optional CA file; the
//! servers' side (`serve`, `witness serve`) terminates TLS itself with a
//! certificate and key from files, reloaded on SIGHUP.
//!
//! rustls with the ring provider only: one crypto provider in the build,
//! so nothing has to pick one at run time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// An HTTP client for the log's tools: HTTPS with the system's roots and,
/// if given, the CAs in `ca_file` (PEM) as well; plain HTTP too.
pub fn client(
    ca_file: Option<&Path>,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, String> {
    // No redirects: none of sealog's routes redirects, and a redirect
    // is how an answer would move a request (and its token) elsewhere.
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none());
    if let Some(p) = ca_file {
        let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate in it", p.display()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

/// A server certificate and key that can be swapped while serving: new
/// handshakes get the newest, connections already open keep theirs.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().expect("not poisoned").clone())
    }
}

/// A server's TLS: the acceptor the listener wraps each connection in, and
/// the files it reloads from.
pub struct ServerTls {
    current: Arc<Current>,
    acceptor: tokio_rustls::TlsAcceptor,
    cert: PathBuf,
    key: PathBuf,
}

impl ServerTls {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerTls>, String> {
        let ck = load_certified(cert, key)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(ck))));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // The server speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(ServerTls {
            current,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }))
    }

    /// The acceptor for new connections: each handshake takes whatever
    /// certificate the last `reload` installed.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again; on any error the old certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let ck = load_certified(&self.cert, &self.key)?;
        *self.current.0.write().expect("not poisoned") = Arc::new(ck);
        Ok(())
    }

    /// Reloads the certificate on each SIGHUP, for ever (a renewed
    /// certificate needs no restart). Call within the runtime: the
    /// handler is installed before this returns.
    pub fn reload_on_sighup(self: Arc<Self>) -> Result<(), String> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP handler: {e}"))?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match self.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS certificate not reloaded; serving the old one")
                    }
                }
            }
        });
        Ok(())
    }
}

fn load_certified(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(ck)
}
