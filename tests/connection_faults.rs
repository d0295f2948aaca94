//! Hostile or stalled peers of a listener: peers that connect and say nothing delay nobody,
//! a flood that exhausts a server's descriptors leaves it serving once the flood ends, and a
//! process squatting the name a handle points to learns nothing and is refused.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::{Listener as _, Stream as _};
use interprocess::local_socket::{GenericNamespaced, ListenerOptions, ToNsName};
use multiproc::{Event, Manager, Process, Queue, worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

multiproc::test_support!();

mod common;
use common::within;

const KEY: &[u8] = b"connection faults";
const SILENT_PEERS: usize = 200;

/// Serves a queue from this child's hub, hands it to the parent, and waits to be killed.
#[worker]
async fn serve_queue(reply: Queue<Queue<u32>>) {
    reply.put(Queue::new()).await.unwrap();
    std::future::pending::<()>().await
}

/// Serves a manager over TCP, then lowers this process's descriptor limit to a few more than
/// it has open, so that a flood of connections runs it out, and waits to be killed.
#[worker]
async fn serve_manager_short_of_descriptors(reply: Queue<SocketAddr>, ready: Event) {
    let server = Manager::serve("127.0.0.1:0".parse().unwrap(), KEY)
        .await
        .unwrap();
    reply.put(server.local_addr().unwrap()).await.unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as libc::rlim_t;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a live rlimit for both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = open + 8;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    ready.set().await.unwrap();
    std::future::pending::<()>().await
}

fn socket_name(name: &str) -> interprocess::local_socket::Name<'static> {
    name.to_string().to_ns_name::<GenericNamespaced>().unwrap()
}

/// The socket name a shared object's handle points to (its hub's), and the object's id.
fn hub_of(queue: &Queue<u32>) -> (String, u64) {
    postcard::from_bytes(&postcard::to_stdvec(queue).unwrap()).unwrap()
}

#[tokio::test]
async fn silent_peers_do_not_delay_a_client_of_a_hub() {
    let reply = Queue::new();
    let server = within(Process::new(serve_queue, (reply.clone(),)).start())
        .await
        .unwrap();
    let served: Queue<u32> = within(reply.get()).await.unwrap();
    let (hub, _) = hub_of(&served);
    let mut silent = Vec::new();
    for _ in 0..SILENT_PEERS {
        silent.push(within(Stream::connect(socket_name(&hub))).await.unwrap());
    }
    // This process's first call on the queue connects to the child's hub, behind them all.
    let started = Instant::now();
    within(served.put(7)).await.unwrap();
    let delay = started.elapsed();
    eprintln!("a client behind {SILENT_PEERS} silent peers was served in {delay:?}");
    assert!(
        delay < Duration::from_secs(1),
        "{SILENT_PEERS} silent peers delayed a client by {delay:?}"
    );
    assert_eq!(within(served.get()).await.unwrap(), 7);
    drop(silent);
    server.kill();
    let _ = within(server.join()).await;
}

#[tokio::test]
async fn silent_peers_do_not_delay_a_client_of_a_tcp_manager() {
    let server = within(Manager::serve("127.0.0.1:0".parse().unwrap(), KEY))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let mut silent = Vec::new();
    for _ in 0..SILENT_PEERS {
        silent.push(within(TcpStream::connect(addr)).await.unwrap());
    }
    let started = Instant::now();
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let delay = started.elapsed();
    eprintln!("a manager client behind {SILENT_PEERS} silent peers was served in {delay:?}");
    assert!(
        delay < Duration::from_secs(1),
        "{SILENT_PEERS} silent peers delayed a client by {delay:?}"
    );
    let value = within(client.value(3u8)).await.unwrap();
    assert_eq!(within(value.get()).await.unwrap(), 3);
    drop(silent);
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_manager_out_of_descriptors_serves_again_once_the_flood_ends() {
    let (reply, ready) = (Queue::new(), Event::new());
    let server = within(
        Process::new(
            serve_manager_short_of_descriptors,
            (reply.clone(), ready.clone()),
        )
        .start(),
    )
    .await
    .unwrap();
    let addr = within(reply.get()).await.unwrap();
    within(ready.wait()).await.unwrap();
    // Many more connections than the server has descriptors left: its accepts fail with
    // EMFILE while the rest wait in the backlog.
    let mut flood = Vec::new();
    for _ in 0..64 {
        flood.push(within(TcpStream::connect(addr)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(flood);
    let started = Instant::now();
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let value = within(client.value(5u8)).await.unwrap();
    assert_eq!(within(value.get()).await.unwrap(), 5);
    let recovery = started.elapsed();
    eprintln!("after the flood, a client was served in {recovery:?}");
    assert!(
        recovery < Duration::from_secs(1),
        "the manager took {recovery:?} to serve again"
    );
    server.kill();
    let _ = within(server.join()).await;
}

async fn read_message(stream: &mut Stream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut message = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut message).await.unwrap();
    message
}

async fn write_message(stream: &mut Stream, message: &[u8]) {
    let mut bytes = (message.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(message);
    stream.write_all(&bytes).await.unwrap();
}

#[tokio::test]
async fn a_squatter_of_a_handles_name_learns_nothing_and_is_refused() {
    // A process listening on the name a handle points to (its hub exited, or the handle was
    // forged): it challenges, welcomes any answer, and cannot prove the key.
    let name = format!("multiproc-squatted-{}.sock", std::process::id());
    let squatter: Listener = ListenerOptions::new()
        .name(socket_name(&name))
        .create_tokio()
        .unwrap();
    let received = tokio::spawn(async move {
        let mut stream = squatter.accept().await.unwrap();
        write_message(
            &mut stream,
            &[b"#CHALLENGE#{sha256}".as_slice(), &[7u8; 40]].concat(),
        )
        .await;
        let answer = read_message(&mut stream).await;
        let challenge = read_message(&mut stream).await;
        write_message(&mut stream, b"#WELCOME#").await;
        write_message(&mut stream, &[b"{sha256}".as_slice(), &[0u8; 32]].concat()).await;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        (answer, challenge, rest)
    });
    let forged: Queue<u32> =
        postcard::from_bytes(&postcard::to_stdvec(&(name.as_str(), 1u64)).unwrap()).unwrap();
    let error = within(forged.put(1)).await.unwrap_err();
    assert!(error.is_auth(), "{error:?}");
    let (answer, challenge, rest) = within(received).await.unwrap();
    // An HMAC of the squatter's nonce, a challenge of the client's own, and its refusal:
    // no key, and no request.
    assert!(answer.starts_with(b"{sha256}") && answer.len() == 8 + 32);
    assert!(challenge.starts_with(b"#CHALLENGE#{sha256}") && challenge.len() == 19 + 40);
    assert_eq!(
        rest,
        [&9u32.to_be_bytes(), b"#FAILURE#".as_slice()].concat()
    );
}
