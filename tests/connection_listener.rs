//! multiproc::connection: a Listener and clients that share only an address and an authkey,
//! over a local socket and TCP; typed messages; poll; wait over several connections; wrong
//! keys and silent peers refused without holding anyone up.

use std::net::SocketAddr;
use std::time::Duration;

use multiproc::connection::{Address, Connection, Listener, client, wait, wait_timeout};
use multiproc::{ErrorKind, Process, worker};
use serde::{Deserialize, Serialize};

multiproc::test_support!();

mod common;
use common::within;

const KEY: &[u8] = b"the listener's key";

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Square(u64),
    Bye,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Response {
    squared: u64,
    served_by: u32,
}

/// A client in a child process: it knows the address only as text, and the key.
#[worker]
async fn ask_for_squares(address: String, key: Vec<u8>, count: u64) -> Vec<Response> {
    let address: Address = address.parse().unwrap();
    let conn: Connection<Request, Response> = client(&address, &key).await.unwrap();
    let mut responses = Vec::new();
    for n in 0..count {
        conn.send(Request::Square(n)).await.unwrap();
        responses.push(conn.recv().await.unwrap());
    }
    conn.send(Request::Bye).await.unwrap();
    responses
}

/// Answers one client's requests until it says goodbye.
async fn serve_one(listener: &Listener<Response, Request>) {
    let conn = within(listener.accept()).await.unwrap();
    while let Request::Square(n) = within(conn.recv()).await.unwrap() {
        let response = Response {
            squared: n * n,
            served_by: std::process::id(),
        };
        conn.send(response).await.unwrap();
    }
}

async fn a_child_is_served_at(address: Address) {
    let listener: Listener<Response, Request> = within(Listener::bind(address, KEY)).await.unwrap();
    let child = Process::new(
        ask_for_squares,
        (listener.address().to_string(), KEY.to_vec(), 5),
    );
    let child = within(child.start()).await.unwrap();
    serve_one(&listener).await;
    let responses = within(child.join()).await.unwrap();
    let squares: Vec<u64> = responses.iter().map(|r| r.squared).collect();
    assert_eq!(squares, [0, 1, 4, 9, 16]);
    assert!(responses.iter().all(|r| r.served_by == std::process::id()));
}

#[tokio::test]
async fn a_child_is_served_over_a_local_socket() {
    a_child_is_served_at(Address::random_local()).await;
}

#[tokio::test]
async fn a_child_is_served_over_tcp() {
    let [_, tcp] = a_local_and_a_tcp_address();
    a_child_is_served_at(tcp).await;
}

fn a_local_and_a_tcp_address() -> [Address; 2] {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    [Address::random_local(), any_port.into()]
}

#[tokio::test]
async fn a_wrong_key_or_a_silent_peer_does_not_hold_up_accept() {
    for address in a_local_and_a_tcp_address() {
        let listener: Listener<u64> = within(Listener::bind(address, KEY)).await.unwrap();
        let address = listener.address().clone();
        // A peer that connects and never speaks, held open for the whole test.
        let _silent = match &address {
            Address::Tcp(addr) => Some(tokio::net::TcpStream::connect(addr).await.unwrap()),
            Address::Local(_) => None,
        };
        let refused = within(client::<u64, u64>(&address, b"another key"))
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Auth, "{refused}");
        let honest: Connection<u64> = within(client(&address, KEY)).await.unwrap();
        honest.send(42).await.unwrap();
        // The first connection accepted is the honest one: the others were never handed on.
        let accepted = within(listener.accept()).await.unwrap();
        assert_eq!(within(accepted.recv()).await.unwrap(), 42);
    }
}

#[tokio::test]
async fn nothing_listening_is_an_io_error() {
    let error = within(client::<u64, u64>(&Address::random_local(), KEY))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Io, "{error}");
}

/// Connects, sends `value` after `delay_ms`, then waits until the listener's side closes.
#[worker]
async fn send_after(address: String, key: Vec<u8>, delay_ms: u64, value: u64) {
    let conn: Connection<u64> = client(&address.parse().unwrap(), &key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    conn.send(value).await.unwrap();
    let _ = conn.recv().await;
}

#[tokio::test]
async fn poll_and_wait_tell_which_connections_have_a_message() {
    let listener: Listener<u64> = within(Listener::bind(Address::random_local(), KEY))
        .await
        .unwrap();
    let address = listener.address().to_string();
    let mut children = Vec::new();
    let mut conns = Vec::new();
    // Only the second client sends soon; the others wait far longer than this test does.
    for delay_ms in [60_000, 200, 60_000] {
        let child = Process::new(send_after, (address.clone(), KEY.to_vec(), delay_ms, 7));
        children.push(within(child.start()).await.unwrap());
        conns.push(within(listener.accept()).await.unwrap());
    }
    let all: Vec<&Connection<u64>> = conns.iter().collect();
    assert!(
        within(wait_timeout(&all, Duration::from_millis(20)))
            .await
            .is_empty()
    );
    let ready = within(wait(&all)).await;
    // Which connection is the second child's is not known: accepts come in handshake order.
    assert_eq!(ready.len(), 1, "{ready:?}");
    let sender = all[ready[0]];
    assert!(
        within(sender.poll(Duration::ZERO)).await,
        "wait took nothing"
    );
    assert_eq!(within(sender.recv()).await.unwrap(), 7);
    assert!(!within(sender.poll(Duration::from_millis(20))).await);

    for child in &children {
        child.kill();
    }
    for child in children {
        let _ = within(child.join()).await;
    }
    // A peer that exited: end of file, which poll and wait report as ready.
    assert_eq!(within(wait(&all)).await.len(), 3);
    for conn in &all {
        assert!(within(conn.poll(Duration::ZERO)).await);
        let error = within(conn.recv()).await.unwrap_err();
        assert!(error.is_closed(), "{error}");
    }
}

#[tokio::test]
async fn a_closed_listener_frees_its_address() {
    for address in a_local_and_a_tcp_address() {
        let listener: Listener<u64> = within(Listener::bind(address, KEY)).await.unwrap();
        let address = listener.address().clone();
        let earlier: Connection<u64> = within(client(&address, KEY)).await.unwrap();
        within(listener.close()).await;
        let error = within(client::<u64, u64>(&address, KEY)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Io, "{error}");
        let again: Listener<u64> = within(Listener::bind(address.clone(), KEY)).await.unwrap();
        let conn: Connection<u64> = within(client(&address, KEY)).await.unwrap();
        conn.send(1).await.unwrap();
        assert_eq!(
            within(within(again.accept()).await.unwrap().recv())
                .await
                .unwrap(),
            1
        );
        drop(earlier);
    }
}
