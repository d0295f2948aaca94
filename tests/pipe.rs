//! pipe: a duplex pair between processes; end of file instead of a hang.

use std::time::Duration;

use multiproc::{PipeEnd, Process, pipe, worker};

multiproc::test_support!();

mod common;
use common::within;

#[worker]
async fn echo_doubled(end: PipeEnd<u64>) {
    while let Ok(n) = end.recv().await {
        end.send(n * 2).await.unwrap();
    }
}

#[worker]
async fn send_and_vanish(end: PipeEnd<u64>) {
    end.send(1).await.unwrap();
    std::process::exit(0);
}

#[tokio::test]
async fn both_directions_work_and_close_ends_the_peer() {
    let (here, there) = pipe();
    let p = within(Process::new(echo_doubled, (there,)).start())
        .await
        .unwrap();
    for n in 0..10 {
        within(here.send(n)).await.unwrap();
        assert_eq!(within(here.recv()).await.unwrap(), n * 2);
    }
    within(here.close()).await.unwrap();
    // The child's recv saw end of file and it returned.
    within(p.join()).await.unwrap();
}

#[tokio::test]
async fn recv_after_the_peer_process_is_gone_is_end_of_file() {
    let (here, there) = pipe();
    let p = within(Process::new(send_and_vanish, (there,)).start())
        .await
        .unwrap();
    assert_eq!(within(here.recv()).await.unwrap(), 1);
    let _ = within(p.join()).await;
    let error = within(here.recv()).await.unwrap_err();
    assert!(error.is_closed(), "{error}");
    assert!(within(here.send(2)).await.unwrap_err().is_closed());
}

#[tokio::test]
async fn recv_timeout_times_out() {
    let (here, _there) = pipe::<u8>();
    let error = within(here.recv_timeout(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
}
