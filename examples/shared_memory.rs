//! Python's `SharedMemory(name=...)`: one process creates a block of shared memory and gives
//! another only its name; the other opens it by that name, reads the message, and answers in
//! the same block under its lock.
//!
//! ```sh
//! cargo run --example shared_memory
//! ```

use multiproc::{Process, SharedMemory, worker};

const ANSWER_AT: usize = 512;

#[worker]
async fn answer(name: String) -> String {
    let block = SharedMemory::open(&name).expect("the parent holds the block");
    let mut bytes = block.lock().await.expect("the lock's process is alive");
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(ANSWER_AT);
    let message = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let reply = format!("{} bytes received", message.len());
    bytes[ANSWER_AT..ANSWER_AT + reply.len()].copy_from_slice(reply.as_bytes());
    message
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let block = SharedMemory::new(1024)?;
    block.write_at(0, b"hello from the creator");
    println!("created {} ({} bytes)", block.name(), block.size());

    let child = Process::new(answer, (block.name(),)).start().await?;
    let read = child.join().await?;
    println!("the child read: {read:?}");

    let mut reply = [0; 64];
    block.read_at(ANSWER_AT, &mut reply);
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    println!(
        "the child answered: {:?}",
        String::from_utf8_lossy(&reply[..end])
    );
    // Nothing to unlink: the kernel frees the block when the last process drops it.
    Ok(())
}
