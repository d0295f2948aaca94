//! Exit codes follow Python's table: 0 for a return, N for `exit(N)`, 1 for a panic, -N for
//! signal N (-15 terminate, -9 kill, -6 abort, -11 segmentation fault).
//!
//! ```sh
//! cargo run --example exit_codes
//! ```

use std::time::Duration;

use multiproc::{Process, worker};

#[worker]
fn returns() {}

#[worker]
fn exits(code: i32) {
    std::process::exit(code)
}

#[worker]
fn panics() {
    panic!("something went wrong")
}

#[worker]
fn sleeps() {
    std::thread::sleep(Duration::from_secs(60))
}

#[worker]
fn aborts() {
    std::process::abort()
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let cases = [
        ("returns", Process::new(returns, ()).start().await?),
        ("exit(3)", Process::new(exits, (3,)).start().await?),
        ("panics", Process::new(panics, ()).start().await?),
        ("terminate()", Process::new(sleeps, ()).start().await?),
        ("kill()", Process::new(sleeps, ()).start().await?),
        ("abort()", Process::new(aborts, ()).start().await?),
    ];
    cases[3].1.terminate();
    cases[4].1.kill();
    for (what, p) in &cases {
        let outcome = match p.join().await {
            Ok(()) => "ok".to_string(),
            Err(error) => error.to_string(),
        };
        println!(
            "{what:<12} exitcode = {:>3?}   {outcome}",
            p.exitcode().unwrap()
        );
    }
    Ok(())
}
