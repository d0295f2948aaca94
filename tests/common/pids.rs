//! A parent killed with its children running, watched from outside: the pids the parent
//! prints, and whether its children outlive it.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use multiproc::{Process, Worker};

/// The parent to be killed: starts a daemon and a plain child that run `sleeper(60_000)`,
/// prints their pids, and waits.
pub async fn start_children_and_wait<W: Worker<M, Args = (u64,)>, M>(sleeper: W) {
    let daemon = Process::new(sleeper, (60_000,))
        .daemon(true)
        .start()
        .await
        .unwrap();
    let worker = Process::new(sleeper, (60_000,)).start().await.unwrap();
    println!("PID {}", daemon.pid());
    println!("PID {}", worker.pid());
    tokio::time::sleep(Duration::from_secs(30)).await;
}

/// Reads the two pids that [`start_children_and_wait`] prints in `parent`, `SIGKILL`s the
/// parent (no exit hook runs in it), and asserts that both children are gone within 2 s.
pub fn kill_and_expect_children_gone(mut parent: std::process::Child) {
    let pids = read_pids(&mut parent, 2);
    assert!(pids.iter().all(|&pid| is_running(pid)));
    parent.kill().unwrap();
    parent.wait().unwrap();
    assert!(
        wait_until_dead(&pids, Duration::from_secs(2)),
        "orphans survived their parent's SIGKILL"
    );
}

/// Reads `PID <pid>` lines from the scenario's stdout until `count` pids were seen.
pub fn read_pids(child: &mut std::process::Child, count: usize) -> Vec<u32> {
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(pid) = line.strip_prefix("PID ") {
                let _ = sender.send(pid.trim().parse::<u32>().unwrap());
            }
        }
    });
    (0..count)
        .map(|_| {
            receiver
                .recv_timeout(Duration::from_secs(20))
                .expect("the scenario printed no pid")
        })
        .collect()
}

/// Whether `pid` is a running process (a zombie counts as dead).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits at most `limit` for every process of `pids` to be gone; whether they all went.
pub fn wait_until_dead(pids: &[u32], limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pids.iter().all(|&pid| !is_running(pid)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
