//! TLS for the metrics endpoint, node-cache 1.26's `-tls-*` flags: a rustls server
//! configuration built once at start from PEM files, with Go's client
//! authentication types and a minimum version. A flag missing, a file that cannot
//! be read or parsed, or a key that does not fit its certificate is an error at
//! start naming the flag and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::limits::TLS_PEM_BYTES_MAX;

/// `-tls-client-auth-type`: Go's `tls.ClientAuthType`, by its constant's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    NoClientCert,
    /// One is asked for, neither required nor verified.
    RequestClientCert,
    /// One is required, not verified.
    RequireAnyClientCert,
    /// One is verified against `-tls-client-ca-file` when the client sends one.
    VerifyClientCertIfGiven,
    /// One is required and verified against `-tls-client-ca-file`.
    RequireAndVerifyClientCert,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(text: &str) -> Result<ClientAuth, String> {
        Ok(match text {
            "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => {
                return Err(format!(
                    "{text:?} is not NoClientCert, RequestClientCert, RequireAnyClientCert, \
                     VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ))
            }
        })
    }
}

/// `-tls-min-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<TlsVersion, String> {
        match text {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            _ => Err(format!("{text:?} is not TLS12 or TLS13")),
        }
    }
}

/// The flags, as given.
#[derive(Debug, Clone)]
pub struct TlsFlags {
    pub cert_file: Option<PathBuf>,
    pub private_key_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("-tls-enabled needs -{flag}")]
    Missing { flag: &'static str },
    #[error("-tls-client-auth-type {auth:?} needs -tls-client-ca-file")]
    NoClientCa { auth: ClientAuth },
    #[error("-{flag} {}: {reason}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS set-up: {0}")]
    Setup(String),
}

/// The server configuration the flags describe.
pub fn server_config(flags: &TlsFlags) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert_path = required(&flags.cert_file, "tls-cert-file")?;
    let key_path = required(&flags.private_key_file, "tls-private-key-file")?;
    let certs = read_certs("tls-cert-file", cert_path)?;
    let key = read_key(key_path)?;
    let versions: &[&rustls::SupportedProtocolVersion] = match flags.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match client_verifier(flags, &provider)? {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| file_error("tls-private-key-file", key_path, e))?;
    Ok(Arc::new(config))
}

fn required<'a>(path: &'a Option<PathBuf>, flag: &'static str) -> Result<&'a Path, TlsError> {
    path.as_deref().ok_or(TlsError::Missing { flag })
}

fn file_error(flag: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        flag,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_pem(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::config::read_text_bounded(path, TLS_PEM_BYTES_MAX)
        .map(String::into_bytes)
        .map_err(|e| file_error(flag, path, e))
}

fn read_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(flag, path, e))?;
    if certs.is_empty() {
        return Err(file_error(flag, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let flag = "tls-private-key-file";
    let pem = read_pem(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| file_error(flag, path, e))
}

/// Go's client authentication types in rustls terms; None: no certificate asked.
fn client_verifier(
    flags: &TlsFlags,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    let unverified = |mandatory| -> Arc<dyn ClientCertVerifier> {
        Arc::new(AnyClientCert {
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        })
    };
    let verified = |optional: bool| -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let path = flags
            .client_ca_file
            .as_deref()
            .ok_or(TlsError::NoClientCa {
                auth: flags.client_auth,
            })?;
        let mut roots = RootCertStore::empty();
        for cert in read_certs("tls-client-ca-file", path)? {
            roots
                .add(cert)
                .map_err(|e| file_error("tls-client-ca-file", path, e))?;
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|e| file_error("tls-client-ca-file", path, e))
            .map(|v| v as Arc<dyn ClientCertVerifier>)
    };
    Ok(match flags.client_auth {
        ClientAuth::NoClientCert => None,
        ClientAuth::RequestClientCert => Some(unverified(false)),
        ClientAuth::RequireAnyClientCert => Some(unverified(true)),
        ClientAuth::VerifyClientCertIfGiven => Some(verified(true)?),
        ClientAuth::RequireAndVerifyClientCert => Some(verified(false)?),
    })
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: a client certificate is
/// asked for (and required) but not checked against any CA. The handshake still
/// proves the client holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(dir: &Path) -> TlsFlags {
        TlsFlags {
            cert_file: Some(dir.join("cert.pem")),
            private_key_file: Some(dir.join("key.pem")),
            client_auth: ClientAuth::NoClientCert,
            client_ca_file: None,
            min_version: TlsVersion::Tls13,
        }
    }

    /// Each bad input is an error naming its flag (and file).
    #[test]
    fn errors_name_the_flag_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = |f: &TlsFlags| server_config(f).expect_err("fails").to_string();
        let mut f = flags(dir.path());
        assert!(err(&f).starts_with("-tls-cert-file "), "{}", err(&f));
        assert!(err(&f).contains("cert.pem"), "{}", err(&f));
        std::fs::write(dir.path().join("cert.pem"), "not pem").unwrap();
        assert!(err(&f).contains("no PEM certificate"), "{}", err(&f));
        f.cert_file = None;
        assert_eq!(err(&f), "-tls-enabled needs -tls-cert-file");
        let mut f = flags(dir.path());
        f.client_auth = ClientAuth::RequireAndVerifyClientCert;
        f.private_key_file = None;
        assert_eq!(err(&f), "-tls-enabled needs -tls-private-key-file");
    }

    /// Every client authentication type builds, with the CA file where it needs one.
    #[test]
    fn every_client_auth_type_builds() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let mut f = flags(dir.path());
        f.min_version = TlsVersion::Tls12;
        for auth in [
            ClientAuth::NoClientCert,
            ClientAuth::RequestClientCert,
            ClientAuth::RequireAnyClientCert,
            ClientAuth::VerifyClientCertIfGiven,
            ClientAuth::RequireAndVerifyClientCert,
        ] {
            f.client_auth = auth;
            f.client_ca_file = Some(dir.path().join("cert.pem"));
            assert!(server_config(&f).is_ok(), "{auth:?}");
            f.client_ca_file = None;
            let needs_ca = matches!(
                auth,
                ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
            );
            assert_eq!(server_config(&f).is_err(), needs_ca, "{auth:?}");
        }
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("key.pem"), other.serialize_pem()).unwrap();
        f.client_auth = ClientAuth::NoClientCert;
        let err = server_config(&f).expect_err("mismatch").to_string();
        assert!(err.starts_with("-tls-private-key-file "), "{err}");
    }

    #[test]
    fn go_names() {
        assert_eq!(
            "VerifyClientCertIfGiven".parse::<ClientAuth>(),
            Ok(ClientAuth::VerifyClientCertIfGiven)
        );
        assert!("verifyclientcertifgiven".parse::<ClientAuth>().is_err());
        assert_eq!("TLS12".parse::<TlsVersion>(), Ok(TlsVersion::Tls12));
        assert!("TLS1.3".parse::<TlsVersion>().is_err());
    }
}
