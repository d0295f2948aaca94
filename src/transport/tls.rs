//! TLS for TCP connections: how a manager served with
//! [`Manager::serve_tls`](crate::Manager::serve_tls) and reached with
//! [`Manager::connect_tls`](crate::Manager::connect_tls) keeps what crosses the network
//! private.
//!
//! The key proof of [`auth`] shows that both ends hold the authkey, but on its
//! own it leaves everything after it (every key and value of a dict, every item of a queue)
//! readable and alterable on the wire. With TLS, the TCP connection first becomes a TLS 1.3
//! session (rustls, with the `ring` provider), in which the manager proves its certificate
//! and, if it asks, the client proves one of its own; the mutual HMAC challenge then runs
//! inside that session, and so does everything after it. The authkey stays the trust
//! boundary between processes; the certificates make sure that the peer is the host it
//! should be and that nobody in between reads or changes a byte.
//!
//! [`TlsServerConfig`] and [`TlsClientConfig`] are read from PEM (what `openssl` and most
//! certificate tools write), so a caller never touches rustls; a caller who needs more
//! (another provider, TLS 1.2, a custom verifier) builds a `rustls::ServerConfig` or
//! `ClientConfig` and wraps it (`from_rustls`). By default a client checks that the
//! manager's certificate names the IP address it connects to (a subject alternative name
//! such as `IP:10.0.0.1`); [`TlsClientConfig::with_server_name`] checks a DNS name instead.
//!
//! # Children and other processes
//!
//! A manager reached over TLS is named `tls://ADDRESS/run-RUN` in its proxies (see
//! [`hub_name`](crate::shared::hub_name)), so a process using such a proxy connects with TLS
//! or not at all. As a process started after [`Manager::connect`](crate::Manager::connect)
//! inherits the authkey, one started after `connect_tls` inherits the client configuration:
//! the CA certificates, the server name and the client certificate with its private key, on
//! its connection to its parent, never its command line or environment. A configuration
//! made with [`TlsClientConfig::from_rustls`] cannot travel (it may hold code); a child of a
//! process that used one calls `connect_tls` itself before using the proxies it is given.
//!
//! # A client without TLS
//!
//! TLS starts with the client's hello and the key proof with the listener's challenge, so a
//! client without TLS and a listener with it would each wait for the other. A listener that
//! hears nothing for [`HANDSHAKE_TIMEOUT`] sends such a peer, in the clear, a notice that
//! TLS is required ([`auth::tls_required_notice`]): the client fails saying so, instead of
//! with a bare hang-up. The other way round is quick: a listener without TLS reads a TLS hello
//! as an oversized handshake message and hangs up, and the client fails saying that the
//! listener does not speak TLS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde_bytes::ByteBuf;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use super::auth::{self, HANDSHAKE_TIMEOUT};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::TlsTrust;

/// What a manager [served with TLS](crate::Manager::serve_tls) presents: its certificate
/// chain and private key, and optionally the CA whose certificates clients must present.
///
/// ```no_run
/// # fn demo() -> multiproc::Result<()> {
/// use multiproc::TlsServerConfig;
///
/// let chain = std::fs::read("manager.crt").expect("the certificate chain");
/// let key = std::fs::read("manager.key").expect("its private key");
/// let tls = TlsServerConfig::from_pem(&chain, &key)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsServerConfig {
    config: Arc<ServerConfig>,
}

impl TlsServerConfig {
    /// The certificate chain (PEM, the manager's own certificate first, then any
    /// intermediates) and its private key (PEM: PKCS#8, PKCS#1 or SEC1). Clients present no
    /// certificate.
    ///
    /// # Errors
    ///
    /// An [`InvalidInput`](crate::ErrorKind::InvalidInput) error if either holds no PEM
    /// section of its kind, or the key does not match the certificate.
    pub fn from_pem(cert_chain: &[u8], private_key: &[u8]) -> Result<Self> {
        Self::build(cert_chain, private_key, None)
    }

    /// As [`from_pem`](Self::from_pem), and every client must present a certificate signed
    /// by one of the CAs in `client_ca` (PEM, one or more certificates): a client without
    /// one is refused during the TLS handshake, before the key proof.
    ///
    /// # Errors
    ///
    /// As [`from_pem`](Self::from_pem); also if `client_ca` holds no usable certificate.
    pub fn from_pem_with_client_ca(
        cert_chain: &[u8],
        private_key: &[u8],
        client_ca: &[u8],
    ) -> Result<Self> {
        Self::build(cert_chain, private_key, Some(client_ca))
    }

    /// A configuration built with rustls itself, for what the PEM constructors do not offer.
    /// It must have a crypto provider that builds on every machine that serves.
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        TlsServerConfig { config }
    }

    fn build(cert_chain: &[u8], private_key: &[u8], client_ca: Option<&[u8]>) -> Result<Self> {
        let chain = certificates(cert_chain, "the certificate chain")?;
        let key = key_from_pem(private_key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(invalid_config)?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(client_ca) => {
                let roots = root_store(certificates(client_ca, "the client CA")?)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|error| {
                            invalid_input(format!("the client CA cannot verify clients: {error}"))
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(invalid_config)?;
        Ok(TlsServerConfig {
            config: Arc::new(config),
        })
    }
}

impl From<ServerConfig> for TlsServerConfig {
    fn from(config: ServerConfig) -> Self {
        Self::from_rustls(Arc::new(config))
    }
}

impl std::fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfig").finish_non_exhaustive()
    }
}

/// What a client [connecting with TLS](crate::Manager::connect_tls) trusts and presents:
/// the CA certificates the manager's certificate must chain to, the name it must carry, and
/// optionally a certificate of its own.
///
/// A process started after `connect_tls` inherits the configuration, as it inherits the
/// authkey: the CA certificates, the server name and the client certificate with its private
/// key travel on its connection to its parent, never its command line or environment, so
/// the proxies it is given reach the manager over TLS. A configuration made with
/// [`from_rustls`](Self::from_rustls) cannot travel (it may hold code of its own): a child
/// of a process that used one calls `connect_tls` itself before using the proxies it is
/// given; until then they fail with a [`Closed`](crate::ErrorKind::Closed) error saying so.
///
/// ```no_run
/// # fn demo() -> multiproc::Result<()> {
/// use multiproc::TlsClientConfig;
///
/// let ca = std::fs::read("ca.crt").expect("the CA certificate");
/// let tls = TlsClientConfig::from_pem(&ca)?.with_server_name("manager.example.com")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsClientConfig {
    config: Arc<ClientConfig>,
    /// `None`: the IP address connected to.
    server_name: Option<ServerName<'static>>,
    /// What the configuration was built from, to hand to a child; `None` for one from rustls.
    trust: Option<TlsTrust>,
}

impl TlsClientConfig {
    /// Trusts the CAs in `root_ca` (PEM, one or more certificates), and only them: the
    /// system's CAs are not consulted. The manager's certificate must name the IP address
    /// connected to, unless [`with_server_name`](Self::with_server_name) says otherwise.
    ///
    /// # Errors
    ///
    /// An [`InvalidInput`](crate::ErrorKind::InvalidInput) error if `root_ca` holds no
    /// usable certificate.
    pub fn from_pem(root_ca: &[u8]) -> Result<Self> {
        let roots = certificates(root_ca, "the root CA")?;
        Self::from_trust(TlsTrust {
            roots: roots
                .iter()
                .map(|cert| ByteBuf::from(cert.to_vec()))
                .collect(),
            server_name: None,
            client_cert: None,
        })
    }

    /// Checks that the manager's certificate names `name` (a DNS name, or an IP address)
    /// instead of the IP address connected to.
    ///
    /// # Errors
    ///
    /// An [`InvalidInput`](crate::ErrorKind::InvalidInput) error if `name` is neither.
    pub fn with_server_name(mut self, name: &str) -> Result<Self> {
        self.server_name = Some(server_name(name)?);
        if let Some(trust) = &mut self.trust {
            trust.server_name = Some(name.to_string());
        }
        Ok(self)
    }

    /// Presents `cert_chain` (PEM, the client's certificate first) with its `private_key`
    /// (PEM) to a manager that asks for a client certificate
    /// ([`TlsServerConfig::from_pem_with_client_ca`]).
    ///
    /// # Errors
    ///
    /// An [`InvalidInput`](crate::ErrorKind::InvalidInput) error if either holds no PEM
    /// section of its kind, or the key does not match; an
    /// [`InvalidState`](crate::ErrorKind::InvalidState) error for a configuration made with
    /// [`from_rustls`](Self::from_rustls), whose client certificate is set there.
    pub fn with_client_cert(self, cert_chain: &[u8], private_key: &[u8]) -> Result<Self> {
        let Some(mut trust) = self.trust else {
            return Err(Error::invalid_state(
                "a TlsClientConfig made from a rustls::ClientConfig takes its client \
                 certificate there (with_client_auth_cert)",
            ));
        };
        let chain = certificates(cert_chain, "the client certificate chain")?;
        let key = key_from_pem(private_key)?;
        trust.client_cert = Some((
            chain
                .iter()
                .map(|cert| ByteBuf::from(cert.to_vec()))
                .collect(),
            ByteBuf::from(key.secret_der().to_vec()),
        ));
        Self::from_trust(trust)
    }

    /// A configuration built with rustls itself. The manager's certificate must name the IP
    /// address connected to, unless [`with_server_name`](Self::with_server_name) says
    /// otherwise. Not handed to child processes (see the module docs).
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        TlsClientConfig {
            config,
            server_name: None,
            trust: None,
        }
    }

    /// The configuration `trust` describes: the user's, or one inherited from the parent.
    fn from_trust(trust: TlsTrust) -> Result<Self> {
        let roots = root_store(
            trust
                .roots
                .iter()
                .map(|cert| CertificateDer::from(cert.to_vec())),
        )?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(invalid_config)?
            .with_root_certificates(roots);
        let config = match &trust.client_cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain = chain
                    .iter()
                    .map(|cert| CertificateDer::from(cert.to_vec()))
                    .collect();
                let key = PrivateKeyDer::try_from(key.to_vec()).map_err(invalid_input)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(invalid_config)?
            }
        };
        let server_name = trust.server_name.as_deref().map(server_name).transpose()?;
        Ok(TlsClientConfig {
            config: Arc::new(config),
            server_name,
            trust: Some(trust),
        })
    }

    /// What a child inherits of this configuration; `None` for one made with rustls.
    pub(crate) fn trust(&self) -> Option<TlsTrust> {
        self.trust.clone()
    }
}

impl From<ClientConfig> for TlsClientConfig {
    fn from(config: ClientConfig) -> Self {
        Self::from_rustls(Arc::new(config))
    }
}

impl std::fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The one crypto provider: ring, which async-nats brings in too. Passed explicitly, so that a
/// program whose other crates enable another provider still builds these configurations.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid_input(message: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("TLS configuration: {message}"),
    )
}

fn invalid_config(error: rustls::Error) -> Error {
    invalid_input(error)
}

/// Every certificate in `pem`; at least one.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| invalid_input(format!("reading {what}: {error}")))?;
    if certificates.is_empty() {
        return Err(invalid_input(format!(
            "{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certificates)
}

/// The first private key in `pem`.
fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|error| invalid_input(format!("reading the private key: {error}")))
}

fn root_store(
    certificates: impl IntoIterator<Item = CertificateDer<'static>>,
) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| invalid_input(format!("a CA certificate: {error}")))?;
    }
    Ok(roots)
}

fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_string())
        .map_err(|_| invalid_input(format!("{name:?} is neither a DNS name nor an IP address")))
}

/// The client configurations this process connected with, by address: a `tls://` proxy of
/// that address reconnects with it.
static CLIENT_CONFIGS: Mutex<BTreeMap<String, TlsClientConfig>> = Mutex::new(BTreeMap::new());

/// Remembers `config` as the way this process reaches the manager at `addr` over TLS.
pub(crate) fn remember(addr: &str, config: TlsClientConfig) {
    CLIENT_CONFIGS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .insert(addr.to_string(), config);
}

/// How this process reaches the manager at `addr` over TLS: the configuration it connected
/// with, else the one it inherited from its parent; `None` if neither.
///
/// # Errors
///
/// An [`InvalidInput`](crate::ErrorKind::InvalidInput) error if an inherited configuration
/// no longer builds (it did in the parent, so only with a corrupt handover).
pub(crate) fn client_config(addr: &str) -> Result<Option<TlsClientConfig>> {
    let known = CLIENT_CONFIGS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .get(addr)
        .cloned();
    if known.is_some() {
        return Ok(known);
    }
    let Some(trust) = auth::peer_tls(addr) else {
        return Ok(None);
    };
    let config = TlsClientConfig::from_trust(trust)?;
    remember(addr, config.clone());
    Ok(Some(config))
}

/// Starts TLS on `stream`, connected to `addr`, as a client: the listener must prove a
/// certificate `config` trusts, for the name it expects.
///
/// # Errors
///
/// An [`Auth`](crate::ErrorKind::Auth) error naming TLS if the handshake fails: a certificate
/// from an untrusted CA or for another name, a listener that does not speak TLS, or that
/// refused this side.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the stream mid-exchange; drop it.
pub(crate) async fn connect(
    stream: TcpStream,
    addr: SocketAddr,
    config: &TlsClientConfig,
) -> Result<client::TlsStream<TcpStream>> {
    let name = config
        .server_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
    TlsConnector::from(config.config.clone())
        .connect(name, stream)
        .await
        .map_err(|error| handshake_failed(&format!("the TLS handshake with {addr}"), &error))
}

/// Starts TLS on an accepted `stream`, as the listener, within [`HANDSHAKE_TIMEOUT`] for the
/// peer's hello and as long again for the rest; a peer that says nothing is told that TLS is
/// required (see the module docs).
///
/// # Errors
///
/// An [`Auth`](crate::ErrorKind::Auth) error if the peer says nothing, fails the handshake
/// (it does not trust this side's certificate, or presents none it was asked for) or does not
/// complete it in time.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the stream mid-exchange; drop it.
pub(crate) async fn accept(
    stream: TcpStream,
    config: &TlsServerConfig,
) -> Result<server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(0)) => return Err(tls_error("the peer closed before starting TLS")),
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(Error::io("waiting for a TLS client hello", error)),
        Err(_) => {
            // Best effort: the notice is small, and the peer is waiting to read.
            let _ = stream.try_write(&auth::tls_required_notice());
            return Err(tls_error(format!(
                "the peer did not start TLS within {HANDSHAKE_TIMEOUT:?} (a client without \
                 TLS); it was told that TLS is required"
            )));
        }
    }
    let accepting = TlsAcceptor::from(config.config.clone()).accept(stream);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepting).await {
        Ok(accepted) => {
            accepted.map_err(|error| handshake_failed("the TLS handshake with the peer", &error))
        }
        Err(_) => Err(tls_error(format!(
            "the peer did not complete the TLS handshake within {HANDSHAKE_TIMEOUT:?}"
        ))),
    }
}

/// `error`, of the key proof run inside TLS with `peer`, saying so. A TLS alert received then
/// is about this side's certificate: TLS 1.3 lets a client finish its handshake before the
/// server checks the client's certificate, so a refused (or missing) one is told on the
/// client's first read, which is the key proof's.
pub(crate) fn key_proof_failed(peer: &str, error: Error) -> Error {
    let hint = if error.message().contains("received fatal alert") {
        " (the peer refused this side's TLS certificate, or its absence: a manager that asks \
         for client certificates wants TlsClientConfig::with_client_cert, with a certificate \
         signed by its client CA)"
    } else {
        ""
    };
    Error::new(
        error.kind(),
        format!("inside TLS with {peer}: {}{hint}", error.message()),
    )
}

fn tls_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Auth, message)
}

/// `doing` failed with `error`: an [`Auth`](crate::ErrorKind::Auth) error saying why in the
/// user's terms when rustls says why.
fn handshake_failed(doing: &str, error: &std::io::Error) -> Error {
    let hint = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map_or("", hint);
    tls_error(format!("{doing} failed: {error}{hint}"))
}

/// What a user can do about a TLS failure.
fn hint(error: &rustls::Error) -> &'static str {
    use rustls::{AlertDescription, CertificateError, Error as Tls};
    match error {
        Tls::InvalidCertificate(CertificateError::NotValidForName)
        | Tls::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            " (the manager's certificate does not name the address connected to: connect to \
             a name it carries, or set TlsClientConfig::with_server_name)"
        }
        Tls::InvalidCertificate(_) => {
            " (the peer's certificate is not signed by a CA this side trusts, or is expired: \
             check the CA given to TlsClientConfig or TlsServerConfig)"
        }
        Tls::NoCertificatesPresented
        | Tls::AlertReceived(AlertDescription::CertificateRequired) => {
            " (the manager requires a client certificate: TlsClientConfig::with_client_cert)"
        }
        Tls::InvalidMessage(_) | Tls::InappropriateMessage { .. } => {
            " (the peer does not speak TLS: a manager served with Manager::serve is reached \
             with Manager::connect)"
        }
        _ => "",
    }
}
