//! Server certificates: leaves minted on first use per name and signed by the confdir CA (one
//! leaf key for all of them, so minting costs one signature), cached per worker, and the user's
//! own certificates (`--certs [DOMAIN=]FILE`) matched by name as mitmproxy's `CertStore` does.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ahash::AHashMap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::ca::{random_serial, time_now, CertAuthority, VALIDITY_OFFSET_DAYS};
use super::TlsSetupError;

/// mitmproxy's `CERT_EXPIRY`: minted leaves are valid 199 days (from two days ago).
const LEAF_EXPIRY_DAYS: i64 = 199;

/// Minted leaves one worker keeps; the cache is emptied when it is full (a replay serves few names).
pub const LEAF_CACHE_CAP: usize = 1024;

/// The name a certificate is for: the SNI, or without one the CONNECT authority, the reverse
/// target or the address the client connected to; it becomes a SAN of its type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A DNS name (lower-cased), a `dNSName` SAN.
    Dns(String),
    /// An IP address, an `iPAddress` SAN.
    Ip(IpAddr),
}

impl Identity {
    /// The identity for a host as written in an authority or SNI: an IP literal (IPv6 with or
    /// without brackets) or a DNS name; `None` if it is neither.
    pub fn from_host(host: &str) -> Option<Identity> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Some(Identity::Ip(ip));
        }
        DnsName::try_from(host).ok()?;
        Some(Identity::Dns(host.to_ascii_lowercase()))
    }
}

/// Signs leaf certificates for identities with the CA, all with one key generated at start-up.
pub struct Minter {
    ca: Arc<CertAuthority>,
    leaf_key: rcgen::KeyPair,
    signing_key: Arc<dyn rustls::sign::SigningKey>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// A minter for `ca` with a new ECDSA P-256 leaf key.
    pub fn new(ca: Arc<CertAuthority>, provider: &CryptoProvider) -> Result<Minter, TlsSetupError> {
        let create = |reason: String| TlsSetupError::Create { reason };
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| create(e.to_string()))?;
        let signing_key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()))
            .map_err(|e| create(e.to_string()))?;
        Ok(Minter {
            ca,
            leaf_key,
            signing_key,
        })
    }

    /// The CA the leaves are signed by.
    pub fn ca(&self) -> &CertAuthority {
        &self.ca
    }

    /// A new leaf for `identity`, as mitmproxy's `dummy_cert`: subject CN = the name (if shorter
    /// than 64 characters), one SAN of the identity's type, EKU serverAuth, the CA's key
    /// identifier as AKI, a random serial, valid 199 days from two days ago. The chain sent is the
    /// leaf alone, as mitmproxy sends it.
    pub fn mint(&self, identity: &Identity) -> Result<Arc<CertifiedKey>, rcgen::Error> {
        let mut params = rcgen::CertificateParams::default();
        let (cn, san) = match identity {
            Identity::Dns(name) => (
                name.clone(),
                rcgen::SanType::DnsName(name.clone().try_into()?),
            ),
            Identity::Ip(ip) => (ip.to_string(), rcgen::SanType::IpAddress(*ip)),
        };
        let mut dn = rcgen::DistinguishedName::new();
        if cn.len() < 64 {
            dn.push(rcgen::DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = vec![san];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let start = time_now() - time::Duration::days(VALIDITY_OFFSET_DAYS);
        params.not_before = start;
        params.not_after = start + time::Duration::days(LEAF_EXPIRY_DAYS);
        let cert = params.signed_by(&self.leaf_key, &self.ca.issuer, &self.ca.key)?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            self.signing_key.clone(),
        )))
    }
}

/// One worker's minted leaves by identity, bounded by [`LEAF_CACHE_CAP`].
#[derive(Debug, Default)]
pub struct LeafCache {
    leaves: AHashMap<Identity, Arc<CertifiedKey>>,
}

impl LeafCache {
    /// The cached leaf for `identity`, minting (and caching) it on first use.
    pub fn get_or_mint(
        &mut self,
        identity: &Identity,
        minter: &Minter,
    ) -> Result<Arc<CertifiedKey>, rcgen::Error> {
        if let Some(leaf) = self.leaves.get(identity) {
            return Ok(leaf.clone());
        }
        let leaf = minter.mint(identity)?;
        if self.leaves.len() >= LEAF_CACHE_CAP {
            self.leaves.clear();
        }
        self.leaves.insert(identity.clone(), leaf.clone());
        Ok(leaf)
    }

    /// How many leaves are cached.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether no leaf is cached.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }
}

/// One `--certs` value: `[DOMAIN=]FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// The name it is registered for besides its certificate's CN and SANs (`*` for every name).
    pub domain: Option<String>,
    /// The PEM file: certificate chain and private key.
    pub file: PathBuf,
}

impl CertSpec {
    /// Parses `[DOMAIN=]FILE` as mitmproxy does (split at the first `=`; no `=`: the file alone).
    pub fn parse(spec: &str) -> CertSpec {
        match spec.split_once('=') {
            Some((domain, file)) => CertSpec {
                domain: Some(domain.to_owned()),
                file: file.into(),
            },
            None => CertSpec {
                domain: None,
                file: spec.into(),
            },
        }
    }
}

/// The user's certificates (`--certs`) by the names mitmproxy registers them under: the
/// certificate's CN, each SAN, and the spec's domain (names may be `*.example.com` or `*`).
#[derive(Debug, Default)]
pub struct UserCerts {
    by_name: AHashMap<String, Arc<CertifiedKey>>,
}

impl UserCerts {
    /// Adds the certificate chain and key in `pem` (the contents of `spec.file`).
    pub fn add(
        &mut self,
        spec: &CertSpec,
        pem: &[u8],
        provider: &CryptoProvider,
    ) -> Result<(), TlsSetupError> {
        let bad = |reason: String| TlsSetupError::BadFile {
            file: spec.file.clone(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("it is not valid PEM ({e})")))?;
        let Some(leaf) = chain.first() else {
            return Err(bad("it holds no certificate (BEGIN CERTIFICATE)".into()));
        };
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                bad("it holds no private key (BEGIN PRIVATE KEY)".into())
            }
            e => bad(format!("its private key cannot be read ({e})")),
        })?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| bad(format!("its private key cannot be used ({e})")))?;
        let certified = CertifiedKey::new(chain.clone(), signing);
        certified
            .keys_match()
            .map_err(|_| bad("its private key does not belong to its first certificate".into()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| bad(format!("its certificate cannot be read ({e})")))?;
        let certified = Arc::new(certified);
        let mut names = Vec::new();
        for cn in parsed.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_owned());
            }
        }
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => names.push((*d).to_owned()),
                    x509_parser::extensions::GeneralName::IPAddress(raw) => {
                        if let Some(ip) = ip_from_bytes(raw) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        names.extend(spec.domain.clone());
        for name in names {
            self.by_name
                .insert(name.to_ascii_lowercase(), certified.clone());
        }
        Ok(())
    }

    /// The user certificate for `identity`: the name itself, then its asterisk forms
    /// (`www.example.com`, `*.example.com`, `*.com`), then `*`, as mitmproxy's `get_cert` looks.
    pub fn find(&self, identity: &Identity) -> Option<&Arc<CertifiedKey>> {
        if self.by_name.is_empty() {
            return None;
        }
        match identity {
            Identity::Ip(ip) => self.by_name.get(ip.to_string().as_str()),
            Identity::Dns(name) => {
                let mut found = self.by_name.get(name.as_str());
                let mut rest = name.as_str();
                while found.is_none() {
                    let Some((_, tail)) = rest.split_once('.') else {
                        break;
                    };
                    found = self.by_name.get(format!("*.{tail}").as_str());
                    rest = tail;
                }
                found
            }
        }
        .or_else(|| self.by_name.get("*"))
    }

    /// Whether no certificate was given.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// An IP address from a SAN's 4 or 16 bytes.
fn ip_from_bytes(raw: &[u8]) -> Option<IpAddr> {
    match raw.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(raw).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(raw).ok()?)),
        _ => None,
    }
}

/// The certificate chooser of one worker: a `--certs` certificate for the name if one matches,
/// else the worker's minted leaf for it (minted on first use).
///
/// The cache sits behind a mutex only because rustls wants resolvers `Sync`: each worker has its
/// own resolver, so the lock is never contended, and it is taken once per handshake, not per
/// request.
#[derive(Debug)]
pub struct Resolver {
    minter: Arc<Minter>,
    user: Arc<UserCerts>,
    cache: Mutex<LeafCache>,
}

impl Resolver {
    /// A resolver with an empty cache.
    pub fn new(minter: Arc<Minter>, user: Arc<UserCerts>) -> Resolver {
        Resolver {
            minter,
            user,
            cache: Mutex::new(LeafCache::default()),
        }
    }

    /// The certificate for `identity`; `None` only if minting fails.
    pub fn certificate_for(&self, identity: &Identity) -> Option<Arc<CertifiedKey>> {
        if let Some(user) = self.user.find(identity) {
            return Some(user.clone());
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get_or_mint(identity, &self.minter).ok()
    }

    /// How many minted leaves this worker has cached.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let identity = Identity::from_host(hello.server_name()?)?;
        self.certificate_for(&identity)
    }
}

/// A resolver that always answers one certificate (a connection without SNI, whose identity the
/// engine knew: the CONNECT authority, the reverse target or the local address).
#[derive(Debug)]
pub(crate) struct Fixed(pub(crate) Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
