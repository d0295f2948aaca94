//! Shaping children as with `std::process::Command`: environment, working directory, where
//! stdout and stderr go, and `kill_on_drop`. A process's lines, then a pool's merged lines,
//! come back tagged with the name and pid of the child that wrote them.
//!
//! ```sh
//! cargo run --example process_config
//! ```

use std::time::Duration;

use futures::StreamExt;
use multiproc::{Pool, Process, StdStream, Stdio, worker};

#[worker]
fn describe_myself() {
    let dir = std::env::current_dir().expect("a working directory");
    let vars: Vec<String> = std::env::vars().map(|(key, _)| key).collect();
    println!("working in {}", dir.display());
    println!("my environment: {vars:?}");
    eprintln!(
        "greeting: {}",
        std::env::var("GREETING").unwrap_or_default()
    );
}

#[worker]
fn shout(word: String) -> usize {
    println!("{}", word.to_uppercase());
    word.len()
}

#[worker]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    // One process: a clean environment, another directory, both streams piped back.
    let p = Process::new(describe_myself, ())
        .name("describer")
        .env_clear()
        .env("GREETING", "hello")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::Lines)
        .stderr(Stdio::Lines)
        .start()
        .await?;
    let mut lines = p.take_output().expect("stdout and stderr are piped");
    p.join().await?;
    while let Some(line) = lines.next().await {
        let stream = match line.stream {
            StdStream::Stdout => "out",
            StdStream::Stderr => "err",
        };
        println!("[{} {} {stream}] {}", line.name, line.pid, line.line);
    }

    // A pool: every worker's stdout, merged into one stream (in order per worker).
    let pool = Pool::builder()
        .processes(2)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::Lines)
        .build()
        .await?;
    let mut lines = pool.take_output().expect("stdout is piped");
    let words = ["alpha", "beta", "gamma", "delta"].map(String::from);
    let lengths = pool.map(shout, words).chunksize(1).await?;
    for line in lines.by_ref().take(lengths.len()).collect::<Vec<_>>().await {
        println!("[{} {}] {}", line.name, line.pid, line.line);
    }
    pool.terminate().await?;

    // kill_on_drop: the child goes with its last handle.
    let sleeper = Process::new(sleep_ms, (60_000,))
        .kill_on_drop(true)
        .start()
        .await?;
    let pid = sleeper.pid();
    drop(sleeper);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alive = multiproc::active_children()
        .iter()
        .any(|child| child.pid == pid);
    println!("pid {pid} still running after its handle was dropped: {alive}");
    Ok(())
}
