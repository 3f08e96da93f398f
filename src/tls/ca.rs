//! mitmproxy's certificate authority in a confdir (`--set confdir=DIR`, default `~/.mitmproxy`):
//! loads `mitmproxy-ca.pem` (key and certificate), or creates the CA there as mitmproxy's
//! `CertStore.create_store` does when it is missing.
//!
//! This module reads and writes files (at start-up only); the rest of `tls` does not.

use std::io::Write;
use std::path::{Path, PathBuf};

use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::EncodePrivateKey;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::CertificateDer;

use super::TlsSetupError;

/// mitmproxy's file name base (`CONF_BASENAME`): `mitmproxy-ca.pem`, `mitmproxy-ca-cert.pem`, ….
pub const BASENAME: &str = "mitmproxy";

/// mitmproxy's default `key_size` for the CA's RSA key.
const CA_KEY_BITS: usize = 2048;

/// mitmproxy's `CA_EXPIRY` (ten years of 365 days).
const CA_EXPIRY_DAYS: i64 = 10 * 365;

/// mitmproxy's `CERT_VALIDITY_OFFSET`: certificates start two days in the past.
pub(crate) const VALIDITY_OFFSET_DAYS: i64 = 2;

/// mitmproxy's `mitmproxy-dhparam.pem` (its `DEFAULT_DHPARAM`), written with a new CA as mitmproxy
/// writes it; uringreplay itself does not use it (rustls has no finite-field DH).
const DEFAULT_DHPARAM: &str = include_str!("mitmproxy-dhparam.pem");

/// The CA that signs the leaf certificates: its key and certificate as found in the confdir.
pub struct CertAuthority {
    /// The CA's private key (mitmproxy's: RSA 2048), for signing leaves.
    pub(crate) key: rcgen::KeyPair,
    /// The CA as rcgen's issuer: its subject and key identifier taken from the certificate on disk.
    pub(crate) issuer: rcgen::Certificate,
    /// The CA certificate exactly as on disk (what clients trust).
    pub cert: CertificateDer<'static>,
    /// The file it was read from.
    pub file: PathBuf,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Whether the CA was found in the confdir or created there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaOrigin {
    /// `mitmproxy-ca.pem` was there and was loaded.
    Loaded,
    /// The confdir had no `mitmproxy-ca.pem`: a new CA was written there.
    Created,
}

impl CertAuthority {
    /// Loads `DIR/mitmproxy-ca.pem`, creating the CA in `dir` first (as mitmproxy does) if that
    /// file does not exist.
    pub fn load_or_create(dir: &Path) -> Result<(CertAuthority, CaOrigin), TlsSetupError> {
        let file = dir.join(format!("{BASENAME}-ca.pem"));
        let origin = if file.exists() {
            CaOrigin::Loaded
        } else {
            create_store(dir)?;
            CaOrigin::Created
        };
        #[allow(clippy::disallowed_methods)] // start-up: the confdir is read once
        let pem = std::fs::read(&file).map_err(|e| TlsSetupError::Read {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        Ok((CertAuthority::from_pem(&pem, file)?, origin))
    }

    /// Reads a CA from the contents of a `mitmproxy-ca.pem` (private key and certificate, in any
    /// order); `file` names it in errors.
    pub fn from_pem(pem: &[u8], file: PathBuf) -> Result<CertAuthority, TlsSetupError> {
        let bad = |reason: String| TlsSetupError::BadFile {
            file: file.clone(),
            reason,
        };
        let cert = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or_else(|| bad("it holds no certificate (BEGIN CERTIFICATE)".into()))?
            .map_err(|e| bad(format!("it is not valid PEM ({e})")))?;
        let key = key_pair_from_pem(pem).map_err(bad)?;
        let params = rcgen::CertificateParams::from_ca_cert_der(&cert)
            .map_err(|e| bad(format!("its certificate cannot be read ({e})")))?;
        if !matches!(params.is_ca, rcgen::IsCa::Ca(_)) {
            return Err(bad("its certificate is not a CA (no CA:TRUE)".into()));
        }
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| bad(format!("its certificate cannot be read ({e})")))?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(bad(
                "its private key does not belong to its certificate".into()
            ));
        }
        let issuer = params
            .self_signed(&key)
            .map_err(|e| bad(format!("its key cannot sign ({e})")))?;
        Ok(CertAuthority {
            key,
            issuer,
            cert,
            file,
        })
    }
}

/// The first private key of `pem` as rcgen's key pair: PKCS#8 (`PRIVATE KEY`) or PKCS#1
/// (`RSA PRIVATE KEY`, what mitmproxy writes), which is converted to PKCS#8 for ring.
fn key_pair_from_pem(pem: &[u8]) -> Result<rcgen::KeyPair, String> {
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| format!("it is not valid PEM ({e})"))?;
        let pkcs8 = match kind {
            SectionKind::PrivateKey => der,
            SectionKind::RsaPrivateKey => rsa::RsaPrivateKey::from_pkcs1_der(&der)
                .and_then(|k| k.to_pkcs8_der().map_err(rsa::pkcs1::Error::from))
                .map_err(|e| format!("its RSA private key cannot be read ({e})"))?
                .as_bytes()
                .to_vec(),
            SectionKind::EcPrivateKey => {
                return Err("its EC private key is in SEC1 form; convert it to PKCS#8 \
                            (openssl pkcs8 -topk8 -nocrypt)"
                    .into())
            }
            _ => continue,
        };
        return rcgen::KeyPair::try_from(pkcs8.as_slice())
            .map_err(|e| format!("its private key cannot be used ({e})"));
    }
    Err("it holds no private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)".into())
}

/// mitmproxy's `CertStore.create_store`: a new RSA 2048 CA (CN and O `mitmproxy`, ten years from
/// two days ago, CA:TRUE critical, EKU serverAuth, key usage keyCertSign + cRLSign critical, SKI)
/// written as `mitmproxy-ca.pem` (key + certificate, mode 0600), `mitmproxy-ca-cert.pem` and
/// `mitmproxy-ca-cert.cer` (the certificate), and `mitmproxy-dhparam.pem`. mitmproxy's two
/// PKCS#12 files (`mitmproxy-ca.p12`, `mitmproxy-ca-cert.p12`) are not written.
fn create_store(dir: &Path) -> Result<(), TlsSetupError> {
    let write_err = |file: &Path, e: std::io::Error| TlsSetupError::Write {
        file: file.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let rsa_key =
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, CA_KEY_BITS).map_err(|e| {
            TlsSetupError::Create {
                reason: e.to_string(),
            }
        })?;
    let create = |reason: String| TlsSetupError::Create { reason };
    let pkcs8 = rsa_key.to_pkcs8_der().map_err(|e| create(e.to_string()))?;
    let key = rcgen::KeyPair::try_from(pkcs8.as_bytes()).map_err(|e| create(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, BASENAME);
    dn.push(rcgen::DnType::OrganizationName, BASENAME);
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.serial_number = Some(random_serial());
    let start = time_now() - time::Duration::days(VALIDITY_OFFSET_DAYS);
    params.not_before = start;
    params.not_after = start + time::Duration::days(CA_EXPIRY_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(|e| create(e.to_string()))?;
    let key_pem = rsa_key
        .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
        .map_err(|e| create(e.to_string()))?;
    let cert_pem = cert.pem();
    let ca_file = dir.join(format!("{BASENAME}-ca.pem"));
    write_file(
        &ca_file,
        format!("{}{cert_pem}", &*key_pem).as_bytes(),
        0o600,
    )
    .map_err(|e| write_err(&ca_file, e))?;
    for name in ["ca-cert.pem", "ca-cert.cer"] {
        let file = dir.join(format!("{BASENAME}-{name}"));
        write_file(&file, cert_pem.as_bytes(), 0o644).map_err(|e| write_err(&file, e))?;
    }
    let file = dir.join(format!("{BASENAME}-dhparam.pem"));
    write_file(&file, DEFAULT_DHPARAM.as_bytes(), 0o644).map_err(|e| write_err(&file, e))?;
    Ok(())
}

/// Writes a new file with `mode` (before any byte is written, so a key is never readable by others).
fn write_file(file: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // Written aside and renamed into place, so a second process starting at the same moment
    // never reads half a file.
    let mut aside = file.as_os_str().to_owned();
    aside.push(format!(".{}.tmp", std::process::id()));
    let aside = std::path::PathBuf::from(aside);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&aside)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&aside, file)
}

/// A random positive 20-byte serial number, as `x509.random_serial_number()` makes (160 bits,
/// top bit clear so the DER integer stays positive).
pub(crate) fn random_serial() -> rcgen::SerialNumber {
    let mut serial = [0u8; 20];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut serial)
        .expect("the system random source works");
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    rcgen::SerialNumber::from_slice(&serial)
}

/// The wall clock as rcgen's time type (certificate validity only).
pub(crate) fn time_now() -> time::OffsetDateTime {
    #[allow(clippy::disallowed_methods)] // certificate validity is wall-clock time
    let now = std::time::SystemTime::now();
    time::OffsetDateTime::from(now)
}
