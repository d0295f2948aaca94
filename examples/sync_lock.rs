//! A Lock keeping processes' output apart, as in Python's tutorial, with no async at all. The
//! async version is `lock`.
//!
//! ```python
//! def f(l, i):
//!     l.acquire()
//!     try:
//!         print('hello world', i)
//!     finally:
//!         l.release()
//!
//! if __name__ == '__main__':
//!     lock = Lock()
//!     for num in range(10):
//!         Process(target=f, args=(lock, num)).start()
//! ```
//!
//! ```sh
//! cargo run --example sync_lock
//! ```

use multiproc::blocking::{Lock, Process};
use multiproc::worker;

#[worker]
fn f(l: Lock, i: u32) {
    let guard = l.acquire().expect("the parent serves the lock");
    if guard.owner_died() {
        println!("the previous holder died holding the lock");
    }
    // One line at a time, whole: the lock is held until the guard is dropped.
    for word in ["hello", "world"] {
        print!("{word} ");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    println!("{i}");
}

fn main() -> multiproc::Result<()> {
    multiproc::init();

    let lock = Lock::new();
    for num in 0..10 {
        Process::new(f, (lock.clone(), num)).start()?;
    }
    // As in Python, the children are joined when the main process exits.
    Ok(())
}
