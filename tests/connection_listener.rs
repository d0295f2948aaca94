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

/// Connects, sends back doubled each number it receives, until end of file.
#[worker]
async fn double_each(address: String, key: Vec<u8>) {
    let conn: Connection<u64> = client(&address.parse().unwrap(), &key).await.unwrap();
    while let Ok(n) = conn.recv().await {
        conn.send(n * 2).await.unwrap();
    }
}

#[tokio::test]
async fn poll_and_wait_tell_which_connections_have_a_message() {
    let listener: Listener<u64> = within(Listener::bind(Address::random_local(), KEY))
        .await
        .unwrap();
    let address = listener.address().to_string();
    let mut children = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let child = Process::new(double_each, (address.clone(), KEY.to_vec()));
        children.push(within(child.start()).await.unwrap());
        conns.push(within(listener.accept()).await.unwrap());
    }
    let all: Vec<&Connection<u64>> = conns.iter().collect();
    assert!(
        within(wait_timeout(&all, Duration::from_millis(20)))
            .await
            .is_empty(),
        "nothing was sent yet"
    );
    // Only the second child is asked, so only its connection gets an answer.
    all[1].send(7).await.unwrap();
    assert_eq!(within(wait(&all)).await, [1]);
    assert!(
        within(all[1].poll(Duration::ZERO)).await,
        "wait took nothing"
    );
    assert!(!within(all[0].poll(Duration::from_millis(20))).await);
    assert_eq!(within(all[1].recv()).await.unwrap(), 14);
    assert!(!within(all[1].poll(Duration::ZERO)).await);

    for child in &children {
        child.kill();
    }
    for child in children {
        let _ = within(child.join()).await;
    }
    // A peer that exited: end of file, which poll and wait report as ready.
    for conn in &all {
        assert!(within(conn.poll(common::LIMIT)).await);
    }
    assert_eq!(within(wait(&all)).await, [0, 1, 2]);
    for conn in &all {
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

#[tokio::test]
async fn sending_to_a_peer_that_is_gone_fails_as_closed() {
    for address in a_local_and_a_tcp_address() {
        let listener: Listener<u64> = within(Listener::bind(address, KEY)).await.unwrap();
        let peer: Connection<u64> = within(client(listener.address(), KEY)).await.unwrap();
        let conn = within(listener.accept()).await.unwrap();
        drop(peer);
        // The first writes may still be taken by the kernel; one soon fails.
        let error = within(async {
            loop {
                if let Err(error) = conn.send(1).await {
                    return error;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(error.is_closed(), "{error}");
        let eof = within(conn.recv()).await.unwrap_err();
        assert!(eof.is_closed(), "{eof}");
    }
}
