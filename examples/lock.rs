//! A Lock around a shared file: two processes append lines, one whole block at a time.
//!
//! ```sh
//! cargo run --example lock
//! ```

use std::io::Write;

use multiproc::{Lock, Process, worker};

#[worker]
async fn append_lines(lock: Lock, path: String, tag: String) {
    for round in 0..3 {
        let guard = lock.acquire().await.expect("the parent serves the lock");
        if guard.owner_died() {
            println!("{tag}: the previous holder died; the file may hold half a block");
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("the file exists");
        for line in 0..3 {
            writeln!(file, "{tag} round {round} line {line}").expect("writing the file");
        }
        // Dropping the guard releases the lock for the other process.
    }
}

#[multiproc::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("multiproc-lock-{}.txt", std::process::id()));
    std::fs::write(&path, "")?;
    let lock = Lock::new();
    let path_text = path.display().to_string();
    let a = Process::new(
        append_lines,
        (lock.clone(), path_text.clone(), "A".to_string()),
    )
    .start()
    .await?;
    let b = Process::new(append_lines, (lock.clone(), path_text, "B".to_string()))
        .start()
        .await?;
    a.join().await?;
    b.join().await?;
    println!("{}", std::fs::read_to_string(&path)?);
    println!("each block of three lines comes from one process");
    std::fs::remove_file(&path)?;
    Ok(())
}
