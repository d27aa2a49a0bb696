//! DNS over TLS (RFC 7858) to `tls://` upstreams: the rustls client configuration a
//! `forward` asks for (its CAs or the system's, its client certificate), and the
//! name each upstream's certificate must carry. The handshake runs over the pool's own
//! TCP stream (`futures-rustls` drives rustls over the engines' `futures-io`
//! streams), so a TLS connection is pipelined and retired like a plain one.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::config::{ForwardConfig, TlsClient};

/// What a pool needs to open TLS connections to one upstream.
#[derive(Clone)]
pub struct TlsTarget {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

/// The TLS target of upstream `addr` of `cfg`, when it is a `tls://` one, with
/// `config` (the [`client_config`] of `cfg.tls`, built once for all upstreams). A
/// configuration rustls refused (checked when the Corefile was read, so rare: a key
/// type it cannot use) is passed on as the error, so that upstream's attempts fail
/// instead of going out in clear text.
pub fn target(
    cfg: &ForwardConfig,
    addr: SocketAddr,
    config: &Result<Arc<ClientConfig>, String>,
) -> Option<Result<TlsTarget, String>> {
    let upstream = cfg.tls_upstream(addr)?;
    let name = match upstream
        .server_name
        .as_ref()
        .or(cfg.tls.server_name.as_ref())
    {
        Some(name) => ServerName::try_from(name.clone()).map_err(|e| e.to_string()),
        None => Ok(ServerName::IpAddress(addr.ip().into())),
    };
    Some(name.and_then(|name| {
        Ok(TlsTarget {
            config: config.clone()?,
            name,
        })
    }))
}

/// The rustls client configuration of `tls`: TLS 1.2 at least (as CoreDNS).
pub fn client_config(tls: &TlsClient) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match &tls.ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("CA file: {e}"))?;
                roots.add(cert).map_err(|e| format!("CA file: {e}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // One unusable system certificate must not disable the others.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match &tls.identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(chain).collect();
            let chain = chain.map_err(|e| format!("certificate file: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("key file: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    Ok(Arc::new(config))
}
