//! Managers across machines: TCP on 127.0.0.1, Python 3.12's mutual HMAC challenge.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use multiproc::{Manager, Process, worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

multiproc::test_support!();

mod common;
use common::within;

const KEY: &[u8] = b"the right key";

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Runs in another process: connects over TCP and fills the dict named "shared".
#[worker]
async fn remote_client(
    addr: SocketAddr,
    key: Vec<u8>,
    from: u64,
    count: u64,
) -> Result<u64, String> {
    let manager = Manager::connect(addr, &key)
        .await
        .map_err(|e| e.to_string())?;
    let d = manager
        .dict_named::<u64, u64>("shared")
        .await
        .map_err(|e| e.to_string())?;
    for n in from..from + count {
        d.insert(n, n * 2).await.map_err(|e| e.to_string())?;
    }
    d.len().await.map(|n| n as u64).map_err(|e| e.to_string())
}

/// Runs in another process: connects and reports how it failed.
#[worker]
async fn wrong_key_client(addr: SocketAddr) -> (bool, u128) {
    let started = Instant::now();
    let error = Manager::connect(addr, b"a wrong key").await.unwrap_err();
    (error.is_auth(), started.elapsed().as_millis())
}

#[worker]
async fn shared_writer(addr: SocketAddr, key: Vec<u8>, name: String, value: u64) {
    let manager = Manager::connect(addr, &key).await.unwrap();
    let ns = manager.namespace_named("shared").await.unwrap();
    ns.set(&name, value).await.unwrap();
}

/// Runs in another process: uses a proxy received from the parent's TCP connection.
#[worker]
async fn use_passed_proxy(
    addr: SocketAddr,
    key: Vec<u8>,
    l: multiproc::ListProxy<String>,
) -> Result<(String, usize), String> {
    // Not yet connected: a clear error, not a hang.
    let before = l.push("too early".into()).await.unwrap_err().to_string();
    let _manager = Manager::connect(addr, &key)
        .await
        .map_err(|e| e.to_string())?;
    l.push("from the child".into())
        .await
        .map_err(|e| e.to_string())?;
    Ok((before, l.len().await.map_err(|e| e.to_string())?))
}

#[tokio::test]
async fn a_tcp_proxy_passed_to_a_child_works_once_it_connects() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let l = within(client.list::<String>()).await.unwrap();
    within(l.push("from the parent".into())).await.unwrap();
    let p = within(Process::new(use_passed_proxy, (addr, KEY.to_vec(), l.clone())).start())
        .await
        .unwrap();
    let (before, len) = within(p.join()).await.unwrap().unwrap();
    assert!(before.contains("Manager::connect"), "{before}");
    assert_eq!(len, 2);
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_client_process_reaches_a_served_manager() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let p = within(Process::new(remote_client, (addr, KEY.to_vec(), 0, 500)).start())
        .await
        .unwrap();
    assert_eq!(within(p.join()).await.unwrap(), Ok(500));
    // The server's process uses the same store directly.
    let d = within(server.dict::<String, String>()).await.unwrap();
    within(d.insert("here".into(), "too".into())).await.unwrap();
    // Clients in this process reach it over TCP as well.
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let l = within(client.list::<String>()).await.unwrap();
    within(l.push("over tcp".into())).await.unwrap();
    assert_eq!(within(l.snapshot()).await.unwrap(), ["over tcp"]);
    // Over TCP a manager hosts the store's kinds only.
    assert!(within(client.queue::<u8>()).await.is_err());
    within(server.shutdown()).await.unwrap();
    let started = Instant::now();
    let error = within(l.len()).await.unwrap_err();
    assert!(error.is_closed(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn several_client_processes_write_at_once() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut children = Vec::new();
    for i in 0..4 {
        children.push(
            within(Process::new(remote_client, (addr, KEY.to_vec(), i * 250, 250)).start())
                .await
                .unwrap(),
        );
    }
    for child in children {
        assert!(within(child.join()).await.unwrap().unwrap() >= 250);
    }
    let d = within(server.dict_named::<u64, u64>("shared"))
        .await
        .unwrap();
    let snapshot = within(d.snapshot()).await.unwrap();
    assert_eq!(snapshot.len(), 1000, "nothing lost");
    assert!(snapshot.iter().all(|(k, v)| *v == k * 2));
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_wrong_key_fails_fast_and_the_next_client_is_served() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    // From another process.
    let p = within(Process::new(wrong_key_client, (addr,)).start())
        .await
        .unwrap();
    let (is_auth, millis) = within(p.join()).await.unwrap();
    assert!(is_auth);
    assert!(millis < 1000, "took {millis} ms");
    // From this one.
    let started = Instant::now();
    let error = within(Manager::connect(addr, b"also wrong"))
        .await
        .unwrap_err();
    assert!(error.is_auth(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The server goes on serving good clients.
    let good = within(Manager::connect(addr, KEY)).await.unwrap();
    let v = within(good.value(1u8)).await.unwrap();
    assert_eq!(within(v.get()).await.unwrap(), 1);
    within(server.shutdown()).await.unwrap();
}

async fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut message = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut message).await.ok()?;
    Some(message)
}

async fn write_message(stream: &mut TcpStream, message: &[u8]) {
    let mut bytes = (message.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(message);
    stream.write_all(&bytes).await.unwrap();
}

#[tokio::test]
async fn the_server_refuses_a_bad_answer_and_oversized_messages() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();

    // A challenge as Python 3.12 sends it; a forged answer gets #FAILURE# and a closed socket.
    let mut raw = within(TcpStream::connect(addr)).await.unwrap();
    let challenge = within(read_message(&mut raw)).await.unwrap();
    assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
    assert_eq!(challenge.len(), b"#CHALLENGE#{sha256}".len() + 40);
    let mut forged = b"{sha256}".to_vec();
    forged.extend([0u8; 32]);
    write_message(&mut raw, &forged).await;
    assert_eq!(within(read_message(&mut raw)).await.unwrap(), b"#FAILURE#");
    assert_eq!(
        within(read_message(&mut raw)).await,
        None,
        "closed after failing"
    );

    // A length over 256 bytes is refused before it is read.
    let mut raw = within(TcpStream::connect(addr)).await.unwrap();
    within(read_message(&mut raw)).await.unwrap();
    raw.write_all(&100_000u32.to_be_bytes()).await.unwrap();
    let started = Instant::now();
    assert_eq!(within(read_message(&mut raw)).await, None);
    assert!(started.elapsed() < Duration::from_secs(1));

    // A silent peer is dropped by the handshake timeout, and delays nobody meanwhile.
    let mut silent = within(TcpStream::connect(addr)).await.unwrap();
    let good = within(Manager::connect(addr, KEY)).await.unwrap();
    within(good.dict::<u8, u8>()).await.unwrap();
    within(read_message(&mut silent)).await.unwrap();
    assert_eq!(within(read_message(&mut silent)).await, None);
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn the_client_refuses_a_server_that_does_not_know_the_key() {
    // An impostor that welcomes anyone and cannot answer the client's challenge.
    let listener = TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let impostor = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut challenge = b"#CHALLENGE#{sha256}".to_vec();
        challenge.extend([7u8; 40]);
        write_message(&mut stream, &challenge).await;
        read_message(&mut stream).await.unwrap();
        write_message(&mut stream, b"#WELCOME#").await;
        let theirs = read_message(&mut stream).await.unwrap();
        assert!(theirs.starts_with(b"#CHALLENGE#{sha256}"));
        let mut guess = b"{sha256}".to_vec();
        guess.extend([0u8; 32]);
        write_message(&mut stream, &guess).await;
        read_message(&mut stream).await
    });
    let started = Instant::now();
    let error = within(Manager::connect(addr, KEY)).await.unwrap_err();
    assert!(error.is_auth(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(within(impostor).await.unwrap(), Some(b"#FAILURE#".to_vec()));
}

#[tokio::test]
async fn objects_created_by_clients_live_on_the_server() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let p = within(
        Process::new(
            shared_writer,
            (addr, KEY.to_vec(), "answer".to_string(), 42),
        )
        .start(),
    )
    .await
    .unwrap();
    within(p.join()).await.unwrap();
    // The client process has exited; what it wrote stays with the server, found by name
    // from the server's process and from another client.
    let here = within(server.namespace_named("shared")).await.unwrap();
    assert_eq!(within(here.get::<u64>("answer")).await.unwrap(), Some(42));
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let there = within(client.namespace_named("shared")).await.unwrap();
    assert_eq!(
        there,
        within(client.namespace_named("shared")).await.unwrap()
    );
    assert_eq!(within(there.get::<u64>("answer")).await.unwrap(), Some(42));
    // A name holds one kind.
    assert!(within(client.dict_named::<u8, u8>("shared")).await.is_err());
    within(server.shutdown()).await.unwrap();
}
