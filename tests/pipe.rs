//! pipe: a duplex pair between processes; end of file instead of a hang; poll; ends as
//! Stream and Sink; one-way pipes.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use multiproc::{PipeEnd, PipeReceiver, PipeSender, Process, pipe, pipe_one_way, worker};

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

#[worker]
async fn send_later(end: PipeEnd<u64>, delay_ms: u64) {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    end.send(7).await.unwrap();
    // Waits for the parent to close its end, so this end stays open until then.
    let _ = end.recv().await;
}

#[tokio::test]
async fn poll_tells_whether_recv_would_wait_and_takes_nothing() {
    let (here, there) = pipe();
    assert!(!within(here.poll(Duration::ZERO)).await.unwrap());
    let p = within(Process::new(send_later, (there, 200)).start())
        .await
        .unwrap();
    assert!(
        !within(here.poll(Duration::from_millis(20))).await.unwrap(),
        "nothing sent yet"
    );
    assert!(within(here.poll(common::LIMIT)).await.unwrap());
    assert!(
        within(here.poll(Duration::ZERO)).await.unwrap(),
        "poll took nothing"
    );
    assert_eq!(within(here.recv()).await.unwrap(), 7);
    assert!(!within(here.poll(Duration::ZERO)).await.unwrap());
    within(here.close()).await.unwrap();
    within(p.join()).await.unwrap();
}

#[worker]
async fn exit_at_once(end: PipeEnd<u64>) {
    end.send(1).await.unwrap();
}

#[tokio::test]
async fn poll_is_true_at_end_of_file() {
    let (here, there) = pipe::<u64>();
    let p = within(Process::new(exit_at_once, (there,)).start())
        .await
        .unwrap();
    within(p.join()).await.unwrap();
    assert_eq!(within(here.recv()).await.unwrap(), 1);
    // The child's end closed when it exited: recv would not wait, it fails at once.
    assert!(within(here.poll(common::LIMIT)).await.unwrap());
    assert!(within(here.recv()).await.unwrap_err().is_closed());
}

#[worker]
async fn sink_numbers(mut end: PipeEnd<u64>, count: u64) {
    let mut numbers = futures::stream::iter((0..count).map(Ok));
    end.send_all(&mut numbers).await.unwrap();
    // Sink::close flushes and closes the end: the parent's stream ends.
    SinkExt::close(&mut end).await.unwrap();
}

#[worker]
async fn sum_stream(mut end: PipeReceiver<u64>) -> u64 {
    let mut sum = 0;
    while let Some(n) = end.next().await {
        sum += n.unwrap();
    }
    sum
}

#[tokio::test]
async fn an_end_is_a_stream_and_a_sink() {
    let (mut here, there) = pipe::<u64>();
    let p = within(Process::new(sink_numbers, (there, 2000)).start())
        .await
        .unwrap();
    let received: Vec<u64> = within(here.by_ref().map(Result::unwrap).collect()).await;
    assert_eq!(received, (0..2000).collect::<Vec<_>>());
    within(p.join()).await.unwrap();

    let (results, mut sender) = pipe_one_way::<u64>();
    let p = within(Process::new(sum_stream, (results,)).start())
        .await
        .unwrap();
    within(sender.send_all(&mut futures::stream::iter((1..=1000).map(Ok))))
        .await
        .unwrap();
    within(SinkExt::close(&mut sender)).await.unwrap();
    assert_eq!(within(p.join()).await.unwrap(), 500_500);
}

#[worker]
async fn report_squares(results: PipeSender<u64>, count: u64) {
    for n in 0..count {
        results.send(n * n).await.unwrap();
    }
}

#[tokio::test]
async fn a_one_way_pipe_carries_items_to_its_receiver_then_end_of_file() {
    let (results, sender) = pipe_one_way();
    let p = within(Process::new(report_squares, (sender, 5)).start())
        .await
        .unwrap();
    for n in 0..5u64 {
        assert_eq!(within(results.recv()).await.unwrap(), n * n);
    }
    within(p.join()).await.unwrap();
    // The child's end closed when it exited (as soon as the pipe's hub noticed).
    assert!(within(results.poll(common::LIMIT)).await.unwrap());
    assert!(within(results.recv()).await.unwrap_err().is_closed());

    let (results, sender) = pipe_one_way::<u64>();
    within(results.close()).await.unwrap();
    assert!(within(sender.send(1)).await.unwrap_err().is_closed());
}
