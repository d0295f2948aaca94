//! Watching processes from outside: the pids a scenario prints, and whether they still run.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

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
