//! TLS towards clients: mitmproxy's CA from the confdir, leaf certificates minted per name and
//! cached per worker, the user's `--certs`, the rustls server configuration (ALPN, session
//! tickets and cache), ClientHello detection and a sans-IO server session; `pump` is the buffer
//! pump shared with the upstream client side (`server::upstream_tls`).
//!
//! Start-up reads and writes the confdir (`ca`, `--certs` files); everything per connection
//! (`detect`, `session`, the resolver) is sans-IO.

pub mod ca;
pub mod certs;
pub mod detect;
pub mod pump;
pub mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{
    ProducesTickets, ServerConfig, ServerSessionMemoryCache, StoresServerSessions,
};

pub use ca::{CaOrigin, CertAuthority};
pub use certs::{CertSpec, Identity, Minter, Resolver, UserCerts};
pub use detect::{detect, Detected};
pub use session::{TlsSession, TlsSessionError, RECORD_PLAINTEXT};

/// Sessions the shared server-side session cache keeps (TLS 1.2 session IDs; TLS 1.3 and
/// ticket resumption need no server state).
const SESSION_CACHE_SIZE: usize = 16 * 1024;

/// A TLS setup that cannot be built: each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file cannot be read.
    #[error("cannot read {}: {reason}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The system's reason.
        reason: String,
    },
    /// A file cannot be written (creating the CA).
    #[error("cannot write {}: {reason}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// The system's reason.
        reason: String,
    },
    /// A file's contents are unusable.
    #[error("{} cannot be used: {reason}", file.display())]
    BadFile {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating a key or certificate failed.
    #[error("cannot create a TLS key or certificate: {reason}")]
    Create {
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What the listener's TLS is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// mitmproxy's `confdir` (`--set confdir=DIR`); `None`: `~/.mitmproxy`.
    pub confdir: Option<PathBuf>,
    /// mitmproxy's `certs` (`--certs [DOMAIN=]FILE`).
    pub certs: Vec<CertSpec>,
}

/// mitmproxy's default confdir, `~/.mitmproxy` (`$HOME`; the current directory without one).
pub fn default_confdir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".mitmproxy")
}

/// The listener's TLS, built once at start-up and shared: the CA, the leaf key, the user's
/// certificates, the session ticketer and cache. Each worker takes its own [`WorkerTls`].
pub struct TlsServer {
    minter: Arc<Minter>,
    user: Arc<UserCerts>,
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions + Send + Sync>,
    alpn: Vec<Vec<u8>>,
    provider: Arc<CryptoProvider>,
    origin: CaOrigin,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("ca", self.minter.ca())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Loads (or creates) the CA in the confdir and reads every `--certs` file; `offer_h2`:
    /// ALPN offers `h2` before `http/1.1` (HTTP/2 is served).
    pub fn new(options: &TlsOptions, offer_h2: bool) -> Result<TlsServer, TlsSetupError> {
        let dir = options.confdir.clone().unwrap_or_else(default_confdir);
        let (ca, origin) = CertAuthority::load_or_create(&dir)?;
        let mut pems = Vec::new();
        for spec in &options.certs {
            #[allow(clippy::disallowed_methods)] // start-up: each --certs file is read once
            let pem = std::fs::read(&spec.file).map_err(|e| TlsSetupError::Read {
                file: spec.file.clone(),
                reason: e.to_string(),
            })?;
            pems.push((spec.clone(), pem));
        }
        let mut server = TlsServer::from_parts(ca, &pems, offer_h2)?;
        server.origin = origin;
        Ok(server)
    }

    /// From a loaded CA and the contents of the `--certs` files.
    pub fn from_parts(
        ca: CertAuthority,
        certs: &[(CertSpec, Vec<u8>)],
        offer_h2: bool,
    ) -> Result<TlsServer, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let minter = Arc::new(Minter::new(Arc::new(ca), &provider)?);
        let mut user = UserCerts::default();
        for (spec, pem) in certs {
            user.add(spec, pem, &provider)?;
        }
        let mut alpn = Vec::new();
        if offer_h2 {
            alpn.push(b"h2".to_vec());
        }
        alpn.push(b"http/1.1".to_vec());
        Ok(TlsServer {
            minter,
            user: Arc::new(user),
            ticketer: rustls::crypto::ring::Ticketer::new()?,
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            alpn,
            provider,
            origin: CaOrigin::Loaded,
        })
    }

    /// Whether the CA was loaded from the confdir or created there.
    pub fn ca_origin(&self) -> CaOrigin {
        self.origin
    }

    /// The CA file (for the start-up line: where the CA was found or created).
    pub fn ca_file(&self) -> &Path {
        &self.minter.ca().file
    }

    /// The start-up line about the CA: where it was found, or that it was created and where, so
    /// the user knows which certificate clients must trust.
    pub fn ca_line(&self) -> String {
        let file = self.ca_file();
        let cert = file.with_file_name(format!("{}-ca-cert.pem", ca::BASENAME));
        match self.origin {
            CaOrigin::Loaded => format!(
                "TLS: leaf certificates signed by mitmproxy's CA from {}",
                file.display()
            ),
            CaOrigin::Created => format!(
                "TLS: no mitmproxy CA in {dir}: created one there ({key}); clients must trust {cert}",
                dir = file.parent().unwrap_or(Path::new(".")).display(),
                key = file.display(),
                cert = cert.display()
            ),
        }
    }

    /// One worker's TLS: its own resolver and leaf cache; tickets and the session cache are
    /// shared by all workers, so a client resumes on whichever core its next connection lands.
    pub fn worker(&self) -> Result<WorkerTls, TlsSetupError> {
        let resolver = Arc::new(Resolver::new(self.minter.clone(), self.user.clone()));
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = self.alpn.clone();
        config.ticketer = self.ticketer.clone();
        config.session_storage = self.sessions.clone();
        config.send_tls13_tickets = 2;
        Ok(WorkerTls {
            config: Arc::new(config),
            resolver,
        })
    }
}

/// One worker's TLS: the rustls configuration and its certificate resolver (with its leaf cache).
#[derive(Debug, Clone)]
pub struct WorkerTls {
    /// The rustls server configuration (resolver, ALPN, tickets, session cache).
    pub config: Arc<ServerConfig>,
    /// The worker's certificate chooser.
    pub resolver: Arc<Resolver>,
}

#[cfg(test)]
mod tests;
