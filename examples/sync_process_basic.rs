//! Python's first tutorial example, with no async at all: start a function in a child process
//! and join it. The async version is `process_basic`.
//!
//! ```python
//! def info(title):
//!     print(title)
//!     print('process name:', current_process().name)
//!     print('parent process:', os.getppid())
//!     print('process id:', os.getpid())
//!
//! def f(name):
//!     info('function f')
//!     print('hello', name)
//!
//! if __name__ == '__main__':
//!     info('main line')
//!     p = Process(target=f, args=('bob',))
//!     p.start()
//!     p.join()
//! ```
//!
//! ```sh
//! cargo run --example sync_process_basic
//! ```

use multiproc::blocking::Process;
use multiproc::worker;

fn info(title: &str) {
    println!("{title}");
    println!("process name: {}", multiproc::current_process().name);
    println!("parent process: {}", std::os::unix::process::parent_id());
    println!("process id: {}", std::process::id());
}

#[worker]
fn f(name: String) {
    info("function f");
    println!("hello {name}");
}

fn main() -> multiproc::Result<()> {
    multiproc::init(); // a child never gets past this line: Python's `if __name__ == '__main__':`

    info("main line");
    let p = Process::new(f, ("bob".to_string(),)).start()?;
    println!("started {} with pid {}", p.name(), p.pid());
    p.join()?;
    println!("exitcode: {:?}", p.exitcode());
    Ok(())
}
