//! A manager served with TLS on 127.0.0.1 by this process and reached from another process:
//! `remote_manager` with every byte after the TCP handshake encrypted. The client checks the
//! manager's certificate against the CA it trusts, then proves the authkey inside the TLS
//! session; a client without TLS, or trusting another CA, is refused before any request.
//!
//! A throwaway CA and the manager's certificate are made here with `rcgen`; in production
//! they come from files (`std::fs::read("manager.crt")`), made by your CA or by
//! `openssl req -x509 ...`. The certificate must name the address clients connect to
//! (`IP:10.0.0.1`), or a DNS name they check with `TlsClientConfig::with_server_name`.
//!
//! ```sh
//! cargo run --example remote_manager_tls
//! ```

use std::net::SocketAddr;

use multiproc::{Manager, Process, TlsClientConfig, TlsServerConfig, worker};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

const AUTHKEY: &[u8] = b"abracadabra";

/// Runs in another process, which knows only the address and the CA to trust.
#[worker]
async fn client(addr: SocketAddr, ca_pem: String, jobs: u32) -> Result<String, String> {
    let tls = TlsClientConfig::from_pem(ca_pem.as_bytes()).map_err(|e| e.to_string())?;
    let manager = Manager::connect_tls(addr, AUTHKEY, tls)
        .await
        .map_err(|e| e.to_string())?;
    let queue = manager
        .queue_named::<String>("jobs")
        .await
        .map_err(|e| e.to_string())?;
    for n in 0..jobs {
        queue
            .put(format!("job {n} from pid {}", std::process::id()))
            .await
            .map_err(|e| e.to_string())?;
    }
    queue.close().await.map_err(|e| e.to_string())?;
    // Without TLS the manager is not reached at all: it says so within 2 seconds.
    let plain = Manager::connect(addr, AUTHKEY).await.unwrap_err();
    Ok(format!(
        "client put {jobs} jobs over TLS; without TLS it got: {plain}"
    ))
}

/// A CA, and a certificate for 127.0.0.1 signed by it with its private key, all PEM.
fn throwaway_ca() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::new()).expect("no names");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("a key");
    let ca_pem = ca.self_signed(&ca_key).expect("a CA certificate").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("a key");
    let certificate = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("an IP address")
        .signed_by(&key, &issuer)
        .expect("a certificate");
    (ca_pem, certificate.pem(), key.serialize_pem())
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let (ca_pem, certificate, key) = throwaway_ca();
    let tls = TlsServerConfig::from_pem(certificate.as_bytes(), key.as_bytes())?;
    let server =
        Manager::serve_tls("127.0.0.1:0".parse().expect("an address"), AUTHKEY, tls).await?;
    let addr = server
        .local_addr()
        .expect("a served manager has an address");
    println!("serving with TLS on {addr}");
    let jobs = server.queue_named::<String>("jobs").await?;

    let p = Process::new(client, (addr, ca_pem, 3)).start().await?;
    while let Ok(job) = jobs.get().await {
        println!("server got: {job}");
    }
    match p.join().await? {
        Ok(report) => println!("{report}"),
        Err(error) => println!("the client failed: {error}"),
    }

    // A client trusting another CA is refused during the TLS handshake, before any request.
    let (stranger, _, _) = throwaway_ca();
    let refused = Manager::connect_tls(
        addr,
        AUTHKEY,
        TlsClientConfig::from_pem(stranger.as_bytes())?,
    )
    .await
    .unwrap_err();
    println!("a client trusting another CA got: {refused}");
    server.shutdown().await
}
