//! Start a function in a child process with arguments, and get its result back: the first
//! example of Python's multiprocessing tutorial.
//!
//! ```sh
//! cargo run --example process_basic
//! ```

use multiproc::{Process, worker};

#[worker]
fn greet(name: String, times: u32) -> String {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process().expect("a child has a parent");
    format!(
        "hello {name} x{times} from {} (pid {}), child of {} (pid {})",
        me.name, me.pid, parent.name, parent.pid
    )
}

#[worker]
async fn count_words(text: String) -> usize {
    text.split_whitespace().count()
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    println!("main process: {:?}", multiproc::current_process());

    let p = Process::new(greet, ("bob".to_string(), 2)).start().await?;
    println!("started {} with pid {}", p.name(), p.pid());
    println!("{}", p.join().await?);
    println!("exitcode: {:?}", p.exitcode());

    let words = Process::new(count_words, ("an async worker in a child".to_string(),))
        .start()
        .await?
        .join()
        .await?;
    println!("words counted in a child: {words}");
    Ok(())
}
