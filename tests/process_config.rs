//! Children shaped by their builder: environment, working directory, where stdout and stderr
//! go, and `kill_on_drop`, for a `Process`, a `Pool`'s workers (replacements included) and a
//! `Manager`'s process, observed from inside the child or through `/proc`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use multiproc::{
    ErrorKind, Manager, OutputLine, OutputLines, Pool, Process, StdStream, Stdio, worker,
};

multiproc::test_support!();

mod common;
use common::within;

#[path = "common/pids.rs"]
#[allow(dead_code)]
mod pids;
use pids::{is_running, wait_until_dead};

#[worker]
fn env_of(keys: Vec<String>) -> Vec<Option<String>> {
    keys.iter().map(|key| std::env::var(key).ok()).collect()
}

#[worker]
fn whole_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

#[worker]
fn working_dir() -> PathBuf {
    std::env::current_dir().unwrap()
}

/// Where the child's file descriptor `fd` points, as `/proc` says.
#[worker]
fn fd_target(fd: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap()
}

#[worker]
fn say(out: Vec<String>, err: Vec<String>) {
    use std::io::Write;
    for line in out {
        println!("{line}");
    }
    std::io::stdout().flush().unwrap();
    for line in err {
        eprintln!("{line}");
    }
}

/// Prints `item {n}` and returns the pid that printed it.
#[worker]
fn announce(n: u32) -> u32 {
    use std::io::Write;
    println!("item {n}");
    std::io::stdout().flush().unwrap();
    std::process::id()
}

#[worker]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[worker]
fn exit_now() {
    std::process::exit(3);
}

/// A fresh directory under the temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("multiproc-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir.canonicalize().unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

/// Every line of `lines` until the stream ends, which it does once its children are gone.
async fn all_lines(lines: OutputLines) -> Vec<OutputLine> {
    within(lines.collect::<Vec<_>>()).await
}

/// Reads `lines` until `count` lines have come.
async fn next_lines(lines: &mut OutputLines, count: usize) -> Vec<OutputLine> {
    within(lines.by_ref().take(count).collect::<Vec<_>>()).await
}

#[tokio::test]
async fn the_child_sees_variables_set_and_not_those_removed() {
    assert!(std::env::var("PATH").is_ok(), "this test removes PATH");
    let p = Process::new(
        env_of,
        (strings(&["MP_ONE", "MP_TWO", "MP_THREE", "PATH"]),),
    )
    .env("MP_ONE", "1")
    .envs([("MP_TWO", "2"), ("MP_THREE", "3")])
    .env_remove("MP_THREE")
    .env_remove("PATH")
    .start();
    let p = within(p).await.unwrap();
    let seen = within(p.join()).await.unwrap();
    assert_eq!(seen, [Some("1".into()), Some("2".into()), None, None]);
}

#[tokio::test]
async fn after_env_clear_the_child_sees_only_what_was_set_later_and_still_starts() {
    let p = Process::new(whole_env, ())
        .env("MP_FORGOTTEN", "x")
        .env_clear()
        .env("MP_ONLY", "1")
        .start();
    let p = within(p).await.unwrap();
    let env = within(p.join()).await.unwrap();
    // Nothing of the crate's is left behind: the bootstrap variable was removed by the child
    // as it started, and the key never was in the environment.
    assert_eq!(env, BTreeMap::from([("MP_ONLY".into(), "1".into())]));
}

#[tokio::test]
async fn the_child_runs_in_its_current_dir_and_a_missing_one_fails_the_start() {
    let dir = TempDir::new("cwd");
    let p = within(Process::new(working_dir, ()).current_dir(&dir.0).start())
        .await
        .unwrap();
    assert_eq!(within(p.join()).await.unwrap(), dir.0);

    let missing = dir.0.join("missing");
    let error = within(Process::new(working_dir, ()).current_dir(&missing).start())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Io, "{error}");
}

#[tokio::test]
async fn null_and_file_outputs_are_where_the_child_writes() {
    let dir = TempDir::new("files");
    let path = dir.0.join("out.txt");
    let file = std::fs::File::create(&path).unwrap();
    let p = Process::new(fd_target, (1,))
        .stdout(Stdio::Null)
        .stderr(file)
        .start();
    let p = within(p).await.unwrap();
    assert_eq!(within(p.join()).await.unwrap(), PathBuf::from("/dev/null"));

    let file = std::fs::File::create(&path).unwrap();
    let p = Process::new(say, (strings(&["to the file"]), strings(&["on stderr"])))
        .stdout(file)
        .stderr(Stdio::Null)
        .start();
    let p = within(p).await.unwrap();
    within(p.join()).await.unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.lines().any(|line| line == "to the file"),
        "{written:?}"
    );
    assert!(!written.contains("on stderr"), "{written:?}");
}

#[tokio::test]
async fn an_explicit_inherit_gives_the_child_this_process_stdout() {
    // A test binary's children have their stdout discarded by default unless the runner
    // shows output; an explicit choice wins.
    let ours = std::fs::read_link("/proc/self/fd/1").unwrap();
    let p = Process::new(fd_target, (1,)).stdout(Stdio::Inherit).start();
    let p = within(p).await.unwrap();
    assert_eq!(within(p.join()).await.unwrap(), ours);
}

#[tokio::test]
async fn piped_lines_come_tagged_with_the_childs_name_pid_and_stream() {
    let p = Process::new(say, (strings(&["one", "two"]), strings(&["oops"])))
        .name("talker")
        .stdout(Stdio::Lines)
        .stderr(Stdio::Lines)
        .start();
    let p = within(p).await.unwrap();
    let lines = p.take_output().expect("stdout is piped");
    assert!(p.take_output().is_none(), "the lines are handed out once");
    within(p.join()).await.unwrap();
    let lines = all_lines(lines).await;
    assert!(
        lines
            .iter()
            .all(|line| line.name == "talker" && line.pid == p.pid()),
        "{lines:?}"
    );
    let texts = |stream| {
        lines
            .iter()
            .filter(|line| line.stream == stream)
            .map(|line| line.line.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(StdStream::Stdout), ["one", "two"]);
    assert_eq!(texts(StdStream::Stderr), ["oops"]);
}

#[tokio::test]
async fn only_the_stream_set_to_lines_is_piped() {
    let p = Process::new(say, (strings(&["out"]), strings(&["err"])))
        .stdout(Stdio::Null)
        .stderr(Stdio::Lines)
        .start();
    let p = within(p).await.unwrap();
    within(p.join()).await.unwrap();
    let lines = all_lines(p.take_output().unwrap()).await;
    let texts: Vec<_> = lines
        .iter()
        .map(|line| (line.stream, line.line.as_str()))
        .collect();
    assert_eq!(texts, [(StdStream::Stderr, "err")]);

    let p = within(Process::new(say, (vec![], vec![])).start())
        .await
        .unwrap();
    assert!(p.take_output().is_none(), "nothing was set to Lines");
    within(p.join()).await.unwrap();
}

#[tokio::test]
async fn a_child_whose_lines_are_dropped_writes_freely() {
    // Far more lines than wait for a reader: the child would block if they were kept.
    let many: Vec<String> = (0..20_000).map(|n| format!("line {n}")).collect();
    let p = Process::new(say, (many, vec![]))
        .stdout(Stdio::Lines)
        .start();
    let p = within(p).await.unwrap();
    drop(p.take_output());
    within(p.join()).await.unwrap();
}

#[tokio::test]
async fn kill_on_drop_kills_the_child_when_the_last_handle_goes() {
    let p = within(Process::new(sleep_ms, (60_000,)).kill_on_drop(true).start())
        .await
        .unwrap();
    let pid = p.pid();
    let clone = p.clone();
    drop(p);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(is_running(pid), "a clone still holds the process");
    drop(clone);
    assert!(
        wait_until_dead(&[pid], Duration::from_secs(5)),
        "the child outlived its handle"
    );
}

#[tokio::test]
async fn by_default_dropping_the_handle_leaves_the_child_running() {
    let p = within(Process::new(sleep_ms, (60_000,)).start())
        .await
        .unwrap();
    let pid = p.pid();
    drop(p);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(is_running(pid));
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(wait_until_dead(&[pid], Duration::from_secs(5)));
}

#[tokio::test]
async fn a_pools_workers_lines_are_merged_tagged_and_in_order_per_worker() {
    let pool = Pool::builder().processes(2).stdout(Stdio::Lines).build();
    let pool = within(pool).await.unwrap();
    let mut lines = pool.take_output().expect("stdout is piped");
    assert!(pool.take_output().is_none());
    let pids = within(pool.map(announce, 0..40u32).chunksize(1))
        .await
        .unwrap();
    let printed = next_lines(&mut lines, 40).await;
    let mut items_by_pid: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for line in &printed {
        assert!(line.name.starts_with("PoolWorker-"), "{line:?}");
        assert_eq!(line.stream, StdStream::Stdout);
        let item: u32 = line.line.strip_prefix("item ").unwrap().parse().unwrap();
        assert_eq!(
            line.pid, pids[item as usize],
            "{line:?} was printed by another worker"
        );
        items_by_pid.entry(line.pid).or_default().push(item);
    }
    let mut seen: Vec<u32> = items_by_pid.values().flatten().copied().collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..40).collect::<Vec<_>>());
    for items in items_by_pid.values() {
        assert!(
            items.is_sorted(),
            "one worker's lines out of order: {items:?}"
        );
    }
    within(pool.terminate()).await.unwrap();
    drop(pool);
    assert!(
        within(lines.next()).await.is_none(),
        "the stream ends with the pool"
    );
}

#[tokio::test]
async fn a_replacement_worker_has_the_same_configuration() {
    let dir = TempDir::new("replacement");
    let pool = Pool::builder()
        .processes(1)
        .env("MP_POOL", "yes")
        .current_dir(&dir.0)
        .stdout(Stdio::Lines)
        .build();
    let pool = within(pool).await.unwrap();
    let mut lines = pool.take_output().unwrap();
    let first = pool.pids()[0];
    assert_eq!(within(pool.apply(announce, (1,))).await.unwrap(), first);

    let crash = within(pool.apply(exit_now, ())).await.unwrap_err();
    assert!(crash.is_worker_died(), "{crash}");
    let second = within(pool.apply(announce, (2,))).await.unwrap();
    assert_ne!(second, first, "the worker was replaced");
    let seen = within(pool.apply(env_of, (strings(&["MP_POOL"]),)))
        .await
        .unwrap();
    assert_eq!(seen, [Some("yes".to_string())]);
    assert_eq!(within(pool.apply(working_dir, ())).await.unwrap(), dir.0);

    let tags: Vec<_> = next_lines(&mut lines, 2)
        .await
        .into_iter()
        .map(|line| (line.pid, line.line))
        .collect();
    assert_eq!(tags, [(first, "item 1".into()), (second, "item 2".into())]);
    within(pool.terminate()).await.unwrap();
}

#[tokio::test]
async fn a_managers_process_is_shaped_by_its_builder() {
    let dir = TempDir::new("manager");
    let manager = Manager::builder()
        .env_clear()
        .env("MP_MANAGER", "1")
        .current_dir(&dir.0)
        .stdout(Stdio::Null)
        .stderr(Stdio::Lines)
        .start();
    let manager = within(manager).await.unwrap();
    let pid = manager.pid().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<&[u8]> = environ
        .split(|&byte| byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| entry.split(|&byte| byte == b'=').next().unwrap())
        .collect();
    // The environment it started with: ours, and the bootstrap variable it then removed.
    let mut names = names;
    names.sort_unstable();
    assert_eq!(names, [&b"MP_MANAGER"[..], b"MULTIPROC_BOOTSTRAP"]);
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        dir.0
    );
    let stdout = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
    assert_eq!(stdout, PathBuf::from("/dev/null"));
    assert!(manager.take_output().is_some());

    let d = within(manager.dict::<u32, u32>()).await.unwrap();
    within(d.insert(1, 2)).await.unwrap();
    within(manager.shutdown()).await.unwrap();
}
