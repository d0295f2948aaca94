//! Managers served with TLS on 127.0.0.1: certificates from a throwaway CA made with rcgen,
//! the key proof inside the TLS session, and clients that lack what TLS asks refused early.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::{DictProxy, ErrorKind, Manager, Process, TlsClientConfig, TlsServerConfig, worker};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

multiproc::test_support!();

mod common;
use common::within;

const KEY: &[u8] = b"the right key";

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A throwaway certificate authority: its certificate (PEM) and what signs with its key.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    fn pem(&self) -> Vec<u8> {
        self.pem.clone().into_bytes()
    }

    /// A certificate for `names` signed by this CA, and its private key, both PEM.
    fn issue(&self, names: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (
            certificate.pem().into_bytes(),
            key.serialize_pem().into_bytes(),
        )
    }

    /// A server configuration for 127.0.0.1, signed by this CA.
    fn server(&self) -> TlsServerConfig {
        let (chain, key) = self.issue(&["127.0.0.1"]);
        TlsServerConfig::from_pem(&chain, &key).unwrap()
    }

    /// A client configuration trusting this CA alone.
    fn client(&self) -> TlsClientConfig {
        TlsClientConfig::from_pem(&self.pem()).unwrap()
    }
}

/// Awaits `attempt`, which must fail with an `Auth` error naming `words` (any case), and
/// returns how long it took.
async fn refused<T: std::fmt::Debug>(
    attempt: impl std::future::Future<Output = multiproc::Result<T>>,
    words: &str,
) -> Duration {
    let started = Instant::now();
    let error = within(attempt).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    assert!(
        error.to_string().to_lowercase().contains(words),
        "{error} does not say {words:?}"
    );
    started.elapsed()
}

/// Runs in a child: uses a proxy reached over TLS, with the key and the TLS configuration
/// inherited from the parent.
#[worker]
async fn insert_from_child(d: DictProxy<String, String>) -> Result<usize, String> {
    d.insert("child".into(), format!("pid {}", std::process::id()))
        .await
        .map_err(|e| e.to_string())?;
    d.len().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_client_trusting_the_ca_uses_a_dict_and_hands_its_proxy_to_a_child() {
    let ca = Ca::new("the test CA");
    let server = within(Manager::serve_tls(localhost(), KEY, ca.server()))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let client = within(Manager::connect_tls(addr, KEY, ca.client()))
        .await
        .unwrap();
    let d = within(client.dict::<String, String>()).await.unwrap();
    within(d.insert("parent".into(), "over TLS".into()))
        .await
        .unwrap();
    assert_eq!(
        within(d.get(&"parent".into())).await.unwrap().as_deref(),
        Some("over TLS")
    );
    let child = within(Process::new(insert_from_child, (d.clone(),)).start())
        .await
        .unwrap();
    assert_eq!(within(child.join()).await.unwrap(), Ok(2));
    assert!(within(d.get(&"child".into())).await.unwrap().is_some());
    // The TLS connection is the only one this process has to the manager at that address: a
    // proxy handed out says so.
    let named = within(client.dict_named::<String, String>("by name"))
        .await
        .unwrap();
    within(named.insert("a".into(), "b".into())).await.unwrap();
    within(server.shutdown()).await.unwrap();
}

/// Forwards one connection at a time to `target`, keeping every byte that passes either way.
async fn recording_relay(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(target).await.unwrap();
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(copy_recording(client_read, server_write, record.clone()));
            tokio::spawn(copy_recording(server_read, client_write, record.clone()));
        }
    });
    (addr, seen)
}

async fn copy_recording(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 || to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
        seen.lock().unwrap().extend_from_slice(&buffer[..read]);
    }
}

/// Inserts a distinctive value through a relay in front of `server` and returns what crossed
/// the wire.
async fn wire_bytes(server: &Manager, tls: Option<TlsClientConfig>) -> Vec<u8> {
    let (relay, seen) = recording_relay(server.local_addr().unwrap()).await;
    let client = match tls {
        Some(tls) => within(Manager::connect_tls(relay, KEY, tls)).await,
        None => within(Manager::connect(relay, KEY)).await,
    }
    .unwrap();
    let d = within(client.dict_named::<String, String>("secrets"))
        .await
        .unwrap();
    within(d.insert("password".into(), "correct horse battery staple".into()))
        .await
        .unwrap();
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn what_crosses_the_wire_is_encrypted() {
    let contains =
        |bytes: &[u8], wanted: &[u8]| bytes.windows(wanted.len()).any(|window| window == wanted);
    let secret = b"correct horse battery staple";

    // Without TLS the relay sees the value: the check below can fail.
    let plain = within(Manager::serve(localhost(), KEY)).await.unwrap();
    assert!(contains(&wire_bytes(&plain, None).await, secret));
    within(plain.shutdown()).await.unwrap();

    let ca = Ca::new("the test CA");
    let server = within(Manager::serve_tls(localhost(), KEY, ca.server()))
        .await
        .unwrap();
    let seen = wire_bytes(&server, Some(ca.client())).await;
    assert!(
        !contains(&seen, secret),
        "the value crossed the wire in the clear"
    );
    assert!(
        !contains(&seen, b"#CHALLENGE#"),
        "the key proof ran outside TLS"
    );
    // A TLS handshake record (22) of TLS 1.x: the client's hello opens the connection.
    assert_eq!(
        &seen[..2],
        &[0x16, 0x03],
        "the connection did not open with TLS"
    );
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_client_with_the_wrong_ca_is_refused_before_any_request() {
    let ca = Ca::new("the test CA");
    let server = within(Manager::serve_tls(localhost(), KEY, ca.server()))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let stranger = Ca::new("another CA");
    refused(Manager::connect_tls(addr, KEY, stranger.client()), "tls").await;
    refused(
        Manager::connect_tls(addr, KEY, stranger.client()),
        "certificate",
    )
    .await;
    // The right CA with the wrong authkey: the key proof still runs inside TLS.
    refused(
        Manager::connect_tls(addr, b"a wrong key", ca.client()),
        "key",
    )
    .await;
    // The server still serves a client that has both.
    let client = within(Manager::connect_tls(addr, KEY, ca.client()))
        .await
        .unwrap();
    within(client.dict::<u8, u8>()).await.unwrap();
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn the_certificate_must_name_the_server() {
    let ca = Ca::new("the test CA");
    let (chain, key) = ca.issue(&["manager.test"]);
    let tls = TlsServerConfig::from_pem(&chain, &key).unwrap();
    let server = within(Manager::serve_tls(localhost(), KEY, tls))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    refused(
        Manager::connect_tls(addr, KEY, ca.client()),
        "with_server_name",
    )
    .await;
    let named = ca.client().with_server_name("manager.test").unwrap();
    let client = within(Manager::connect_tls(addr, KEY, named))
        .await
        .unwrap();
    within(client.list::<u8>()).await.unwrap();
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_client_and_a_server_that_disagree_on_tls_fail_clearly_and_quickly() {
    let ca = Ca::new("the test CA");
    let server = within(Manager::serve_tls(localhost(), KEY, ca.server()))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    // The listener waits 2 s for a hello a plain client never sends, then tells it.
    let took = refused(Manager::connect(addr, KEY), "connect_tls").await;
    assert!(took < Duration::from_secs(4), "{took:?}");
    within(server.shutdown()).await.unwrap();

    let plain = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = plain.local_addr().unwrap();
    let took = refused(Manager::connect_tls(addr, KEY, ca.client()), "tls").await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    within(plain.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_server_asking_for_client_certificates_refuses_clients_without_a_good_one() {
    let server_ca = Ca::new("the servers' CA");
    let client_ca = Ca::new("the clients' CA");
    let (chain, key) = server_ca.issue(&["127.0.0.1"]);
    let tls = TlsServerConfig::from_pem_with_client_ca(&chain, &key, &client_ca.pem()).unwrap();
    let server = within(Manager::serve_tls(localhost(), KEY, tls))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();

    refused(
        Manager::connect_tls(addr, KEY, server_ca.client()),
        "with_client_cert",
    )
    .await;
    let (foreign, foreign_key) = server_ca.issue(&["a client"]);
    let impostor = server_ca
        .client()
        .with_client_cert(&foreign, &foreign_key)
        .unwrap();
    refused(Manager::connect_tls(addr, KEY, impostor), "tls").await;

    let (chain, key) = client_ca.issue(&["a client"]);
    let admitted = server_ca.client().with_client_cert(&chain, &key).unwrap();
    let client = within(Manager::connect_tls(addr, KEY, admitted))
        .await
        .unwrap();
    let d = within(client.dict::<String, u64>()).await.unwrap();
    within(d.insert("n".into(), 1)).await.unwrap();
    // A child inherits the client certificate too.
    let q = within(client.queue::<u64>()).await.unwrap();
    let child = within(Process::new(put_from_child, (q.clone(),)).start())
        .await
        .unwrap();
    within(child.join()).await.unwrap().unwrap();
    assert_eq!(within(q.get()).await.unwrap(), 42);
    within(server.shutdown()).await.unwrap();
}

#[worker]
async fn put_from_child(q: multiproc::Queue<u64>) -> Result<(), String> {
    q.put(42).await.map_err(|e| e.to_string())
}

#[test]
fn pem_that_holds_nothing_usable_is_refused_at_once() {
    let error = TlsClientConfig::from_pem(b"not a certificate").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let ca = Ca::new("the test CA");
    let (chain, _) = ca.issue(&["127.0.0.1"]);
    let (_, other_key) = ca.issue(&["127.0.0.1"]);
    let error = TlsServerConfig::from_pem(&chain, &other_key).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    let error = ca.client().with_server_name("not a name!").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
}

/// Runs in a child of a process that connected with a configuration made with rustls, which
/// does not travel: reports how the proxy it was given fails.
#[worker]
async fn use_without_inherited_tls(d: DictProxy<String, String>) -> (bool, String) {
    let error = d.len().await.unwrap_err();
    (error.is_closed(), error.to_string())
}

#[tokio::test]
async fn a_rustls_configuration_works_and_children_are_told_to_connect_themselves() {
    use multiproc::manager::rustls;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let ca = Ca::new("the test CA");
    let server = within(Manager::serve_tls(localhost(), KEY, ca.server()))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca.pem()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = TlsClientConfig::from_rustls(Arc::new(config));
    let client = within(Manager::connect_tls(addr, KEY, tls)).await.unwrap();
    let d = within(client.dict::<String, String>()).await.unwrap();
    within(d.insert("k".into(), "v".into())).await.unwrap();
    let child = within(Process::new(use_without_inherited_tls, (d.clone(),)).start())
        .await
        .unwrap();
    let (closed, message) = within(child.join()).await.unwrap();
    assert!(closed, "{message}");
    assert!(message.contains("Manager::connect_tls"), "{message}");
    within(server.shutdown()).await.unwrap();
}
