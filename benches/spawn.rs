//! Spawn + join of a child running an empty worker, beside its anchors in the same run:
//! the raw re-exec of this binary (`std::process::Command` on the current executable, which
//! exits at once) and procspawn's `spawn` + `join`, taken in turn in every round, and Python's
//! `multiprocessing.Process` start + join under the fork and spawn start methods.
//!
//! ```sh
//! cargo bench --bench spawn
//! ```

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use multiproc::{Process, worker};

const RAW_CHILD_ENV: &str = "MULTIPROC_BENCH_RAW_CHILD";
const ROUNDS: u32 = 200;

#[worker]
fn empty() {}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn raw_reexec() -> Duration {
    let start = Instant::now();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env(RAW_CHILD_ENV, "1")
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

fn procspawn_spawn_join() -> Duration {
    let start = Instant::now();
    procspawn::spawn((), |()| ()).join().unwrap();
    start.elapsed()
}

async fn multiproc_spawn_join() -> Duration {
    let start = Instant::now();
    Process::new(empty, ())
        .start()
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    start.elapsed()
}

/// Medians of multiproc, the raw re-exec and procspawn, measured in turn within each round so
/// that a change in the machine's load moves all three alike.
fn interleaved(runtime: &tokio::runtime::Runtime) -> (Duration, Duration, Duration) {
    let (mut ours, mut raw, mut procspawn) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(runtime.block_on(multiproc_spawn_join()));
        raw.push(raw_reexec());
        procspawn.push(procspawn_spawn_join());
    }
    (median(ours), median(raw), median(procspawn))
}

/// Median seconds of Python's `Process(target=f).start(); join()` under `method`, or `None`
/// without python3.
fn python(method: &str, rounds: u32) -> Option<Duration> {
    let script = format!(
        r#"
import multiprocessing as mp, time, statistics
def f(): pass
if __name__ == "__main__":
    ctx = mp.get_context("{method}")
    samples = []
    for _ in range({rounds}):
        t = time.perf_counter(); p = ctx.Process(target=f); p.start(); p.join(); samples.append(time.perf_counter() - t)
    print(statistics.median(samples))
"#
    );
    let seconds = common::python_figure(&script)?;
    Some(Duration::from_secs_f64(seconds))
}

fn main() {
    if std::env::var_os(RAW_CHILD_ENV).is_some() {
        return;
    }
    procspawn::init();
    multiproc::init();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let (ours, raw, procspawn) = interleaved(&runtime);
    let fork = python("fork", 100);
    let spawn = python("spawn", 20);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("spawn + join of an empty worker (median of {ROUNDS}; lower is better)");
    println!("{:<34} {:>10} {:>16}", "", "ms", "multiproc is");
    println!("{:<34} {:>10.3} {:>16}", "multiproc Process", ms(ours), "");
    let row = |name: &str, anchor: Duration| {
        println!(
            "{:<34} {:>10.3} {:>15.2}x",
            name,
            ms(anchor),
            anchor.as_secs_f64() / ours.as_secs_f64()
        );
    };
    row("raw re-exec of the same binary", raw);
    row("procspawn spawn + join", procspawn);
    match (fork, spawn) {
        (Some(fork), Some(spawn)) => {
            row("python multiprocessing (fork)", fork);
            row("python multiprocessing (spawn)", spawn);
        }
        _ => println!("python3 not found: Python anchors skipped"),
    }
    println!(
        "multiproc / raw re-exec = {:.2} (goal: at most 1.3)",
        ours.as_secs_f64() / raw.as_secs_f64()
    );
}
