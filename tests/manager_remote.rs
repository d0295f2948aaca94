//! Managers across machines: TCP on 127.0.0.1, Python 3.12's mutual HMAC challenge.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use multiproc::{DictProxy, ListProxy, Manager, Process, Queue, ValueProxy, worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

multiproc::test_support!();

mod common;
use common::within;

const KEY: &[u8] = b"the right key";

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Connects to the manager at `addr` and finds its dict registered as `name`; errors as text,
/// for a worker to return.
async fn dict_named_at<K: multiproc::Value, V: multiproc::Value>(
    addr: SocketAddr,
    key: &[u8],
    name: &str,
) -> Result<DictProxy<K, V>, String> {
    let manager = Manager::connect(addr, key)
        .await
        .map_err(|e| e.to_string())?;
    manager.dict_named(name).await.map_err(|e| e.to_string())
}

/// Runs in another process: connects over TCP and fills the dict named "shared".
#[worker]
async fn remote_client(
    addr: SocketAddr,
    key: Vec<u8>,
    from: u64,
    count: u64,
) -> Result<u64, String> {
    let d = dict_named_at::<u64, u64>(addr, &key, "shared").await?;
    for n in from..from + count {
        d.insert(n, n * 2).await.map_err(|e| e.to_string())?;
    }
    d.len().await.map(|n| n as u64).map_err(|e| e.to_string())
}

/// Runs in another process: connects and reports how it failed.
#[worker]
async fn wrong_key_client(addr: SocketAddr) -> (bool, u128) {
    let started = Instant::now();
    let error = Manager::connect(addr, b"a wrong key").await.unwrap_err();
    (error.is_auth(), started.elapsed().as_millis())
}

#[worker]
async fn shared_writer(addr: SocketAddr, key: Vec<u8>, name: String, value: u64) {
    let manager = Manager::connect(addr, &key).await.unwrap();
    let ns = manager.namespace_named("shared").await.unwrap();
    ns.set(&name, value).await.unwrap();
}

/// Runs in another process: uses proxies received from the parent's TCP connection, with
/// the manager's key inherited from the parent, as in Python.
#[worker]
async fn use_passed_proxy(
    l: multiproc::ListProxy<String>,
    q: Queue<String>,
) -> Result<usize, String> {
    l.push("from the child".into())
        .await
        .map_err(|e| e.to_string())?;
    q.put("from the child".into())
        .await
        .map_err(|e| e.to_string())?;
    l.len().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_tcp_proxy_passed_to_a_child_works_with_the_inherited_key() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let l = within(client.list::<String>()).await.unwrap();
    within(l.push("from the parent".into())).await.unwrap();
    let q = within(client.queue::<String>()).await.unwrap();
    let p = within(Process::new(use_passed_proxy, (l.clone(), q.clone())).start())
        .await
        .unwrap();
    assert_eq!(within(p.join()).await.unwrap(), Ok(2));
    assert_eq!(within(q.get()).await.unwrap(), "from the child");
    within(server.shutdown()).await.unwrap();
}

/// Runs in a process started before its parent reached the manager: it gets a proxy through
/// a queue, but not the manager's key.
#[worker]
async fn use_proxy_without_key(
    mailbox: Queue<multiproc::ListProxy<String>>,
    addr: SocketAddr,
    key: Vec<u8>,
) -> Result<(String, usize), String> {
    let l = mailbox.get().await.map_err(|e| e.to_string())?;
    let error = l.push("too early".into()).await.unwrap_err();
    if !error.is_closed() {
        return Err(format!("not a Closed error: {error}"));
    }
    let _manager = Manager::connect(addr, &key)
        .await
        .map_err(|e| e.to_string())?;
    l.push("after connecting".into())
        .await
        .map_err(|e| e.to_string())?;
    Ok((error.to_string(), l.len().await.map_err(|e| e.to_string())?))
}

#[tokio::test]
async fn a_tcp_proxy_without_its_key_is_a_clear_error_until_connect() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let mailbox = Queue::new();
    let p =
        within(Process::new(use_proxy_without_key, (mailbox.clone(), addr, KEY.to_vec())).start())
            .await
            .unwrap();
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let l = within(client.list::<String>()).await.unwrap();
    within(mailbox.put(l.clone())).await.unwrap();
    let (error, len) = within(p.join()).await.unwrap().unwrap();
    assert!(error.contains("Manager::connect"), "{error}");
    assert_eq!(len, 1);
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_client_process_reaches_a_served_manager() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let p = within(Process::new(remote_client, (addr, KEY.to_vec(), 0, 500)).start())
        .await
        .unwrap();
    assert_eq!(within(p.join()).await.unwrap(), Ok(500));
    // The server's process uses the same store directly.
    let d = within(server.dict::<String, String>()).await.unwrap();
    within(d.insert("here".into(), "too".into())).await.unwrap();
    // Clients in this process reach it over TCP as well.
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let l = within(client.list::<String>()).await.unwrap();
    within(l.push("over tcp".into())).await.unwrap();
    assert_eq!(within(l.snapshot()).await.unwrap(), ["over tcp"]);
    // Queues and locks are hosted over TCP too, and a capacity the constructor would refuse
    // is an error, not a panic in the server.
    let q = within(client.queue::<String>()).await.unwrap();
    within(q.put("queued".into())).await.unwrap();
    assert_eq!(within(q.get()).await.unwrap(), "queued");
    assert!(within(client.bounded_queue::<u8>(0)).await.is_err());
    assert!(within(client.barrier(0)).await.is_err());
    within(server.shutdown()).await.unwrap();
    let started = Instant::now();
    let error = within(l.len()).await.unwrap_err();
    assert!(error.is_closed(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn several_client_processes_write_at_once() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut children = Vec::new();
    for i in 0..4 {
        children.push(
            within(Process::new(remote_client, (addr, KEY.to_vec(), i * 250, 250)).start())
                .await
                .unwrap(),
        );
    }
    for child in children {
        assert!(within(child.join()).await.unwrap().unwrap() >= 250);
    }
    let d = within(server.dict_named::<u64, u64>("shared"))
        .await
        .unwrap();
    let snapshot = within(d.snapshot()).await.unwrap();
    assert_eq!(snapshot.len(), 1000, "nothing lost");
    assert!(snapshot.iter().all(|(k, v)| *v == k * 2));
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_wrong_key_fails_fast_and_the_next_client_is_served() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    // From another process.
    let p = within(Process::new(wrong_key_client, (addr,)).start())
        .await
        .unwrap();
    let (is_auth, millis) = within(p.join()).await.unwrap();
    assert!(is_auth);
    assert!(millis < 1000, "took {millis} ms");
    // From this one.
    let started = Instant::now();
    let error = within(Manager::connect(addr, b"also wrong"))
        .await
        .unwrap_err();
    assert!(error.is_auth(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The server goes on serving good clients.
    let good = within(Manager::connect(addr, KEY)).await.unwrap();
    let v = within(good.value(1u8)).await.unwrap();
    assert_eq!(within(v.get()).await.unwrap(), 1);
    within(server.shutdown()).await.unwrap();
}

async fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut message = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut message).await.ok()?;
    Some(message)
}

async fn write_message(stream: &mut TcpStream, message: &[u8]) {
    let mut bytes = (message.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(message);
    stream.write_all(&bytes).await.unwrap();
}

#[tokio::test]
async fn the_server_refuses_a_bad_answer_and_oversized_messages() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();

    // A challenge as Python 3.12 sends it; a forged answer gets #FAILURE# and a closed socket.
    let mut raw = within(TcpStream::connect(addr)).await.unwrap();
    let challenge = within(read_message(&mut raw)).await.unwrap();
    assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
    assert_eq!(challenge.len(), b"#CHALLENGE#{sha256}".len() + 40);
    let mut forged = b"{sha256}".to_vec();
    forged.extend([0u8; 32]);
    write_message(&mut raw, &forged).await;
    assert_eq!(within(read_message(&mut raw)).await.unwrap(), b"#FAILURE#");
    assert_eq!(
        within(read_message(&mut raw)).await,
        None,
        "closed after failing"
    );

    // A length over 256 bytes is refused before it is read.
    let mut raw = within(TcpStream::connect(addr)).await.unwrap();
    within(read_message(&mut raw)).await.unwrap();
    raw.write_all(&100_000u32.to_be_bytes()).await.unwrap();
    let started = Instant::now();
    assert_eq!(within(read_message(&mut raw)).await, None);
    assert!(started.elapsed() < Duration::from_secs(1));

    // A silent peer is dropped by the handshake timeout, and delays nobody meanwhile.
    let mut silent = within(TcpStream::connect(addr)).await.unwrap();
    let good = within(Manager::connect(addr, KEY)).await.unwrap();
    within(good.dict::<u8, u8>()).await.unwrap();
    within(read_message(&mut silent)).await.unwrap();
    assert_eq!(within(read_message(&mut silent)).await, None);
    within(server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn the_client_refuses_a_server_that_does_not_know_the_key() {
    // An impostor that welcomes anyone and cannot answer the client's challenge.
    let listener = TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let impostor = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut challenge = b"#CHALLENGE#{sha256}".to_vec();
        challenge.extend([7u8; 40]);
        write_message(&mut stream, &challenge).await;
        read_message(&mut stream).await.unwrap();
        write_message(&mut stream, b"#WELCOME#").await;
        let theirs = read_message(&mut stream).await.unwrap();
        assert!(theirs.starts_with(b"#CHALLENGE#{sha256}"));
        let mut guess = b"{sha256}".to_vec();
        guess.extend([0u8; 32]);
        write_message(&mut stream, &guess).await;
        read_message(&mut stream).await
    });
    let started = Instant::now();
    let error = within(Manager::connect(addr, KEY)).await.unwrap_err();
    assert!(error.is_auth(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(within(impostor).await.unwrap(), Some(b"#FAILURE#".to_vec()));
}

#[tokio::test]
async fn objects_created_by_clients_live_on_the_server() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let p = within(
        Process::new(
            shared_writer,
            (addr, KEY.to_vec(), "answer".to_string(), 42),
        )
        .start(),
    )
    .await
    .unwrap();
    within(p.join()).await.unwrap();
    // The client process has exited; what it wrote stays with the server, found by name
    // from the server's process and from another client.
    let here = within(server.namespace_named("shared")).await.unwrap();
    assert_eq!(within(here.get::<u64>("answer")).await.unwrap(), Some(42));
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let there = within(client.namespace_named("shared")).await.unwrap();
    assert_eq!(
        there,
        within(client.namespace_named("shared")).await.unwrap()
    );
    assert_eq!(within(there.get::<u64>("answer")).await.unwrap(), Some(42));
    // A name holds one kind.
    assert!(within(client.dict_named::<u8, u8>("shared")).await.is_err());
    // The serving process and a client find the same hosted queue by name, one in place,
    // the other over TCP.
    let here = within(server.queue_named::<String>("mail")).await.unwrap();
    let there = within(client.queue_named::<String>("mail")).await.unwrap();
    within(here.put("to the client".into())).await.unwrap();
    assert_eq!(within(there.get()).await.unwrap(), "to the client");
    within(server.shutdown()).await.unwrap();
}

/// Runs in another process: serves a manager on `addr`, reports the address bound through
/// `addr_out` (a queue of the parent's), then serves until it is killed.
#[worker]
async fn serve_manager(key: Vec<u8>, addr: SocketAddr, addr_out: Queue<SocketAddr>) {
    let server = Manager::serve(addr, &key).await.unwrap();
    addr_out.put(server.local_addr().unwrap()).await.unwrap();
    // Until killed; bounded, so that a failed test leaves nothing running.
    tokio::time::sleep(common::LIMIT).await;
}

/// Starts a process serving a manager; returns it and its address.
async fn served_elsewhere() -> (Process<()>, SocketAddr) {
    served_elsewhere_at(localhost()).await
}

/// Starts a process serving a manager on `addr`; returns it and the address bound.
async fn served_elsewhere_at(addr: SocketAddr) -> (Process<()>, SocketAddr) {
    let addr_out = Queue::new();
    // A daemon: terminated, not waited for, if a failing test exits before killing it.
    let server = within(
        Process::new(serve_manager, (KEY.to_vec(), addr, addr_out.clone()))
            .daemon(true)
            .start(),
    )
    .await
    .unwrap();
    let addr = within(addr_out.get()).await.unwrap();
    (server, addr)
}

/// Stops a server started by [`served_elsewhere`] and reaps it.
async fn stop(server: Process<()>) {
    server.kill();
    let _ = within(server.join()).await;
}

/// Runs in another process: a client of the manager at `addr` that finds the shared objects
/// by name, meets the parent at a barrier, squares every task into `results` (a queue the
/// parent created over its own TCP connection and passed here), and counts them.
#[worker]
async fn square_tasks(addr: SocketAddr, key: Vec<u8>, results: Queue<u64>) -> Result<u64, String> {
    let manager = Manager::connect(addr, &key)
        .await
        .map_err(|e| e.to_string())?;
    let tasks = manager
        .joinable_queue_named::<u64>("tasks")
        .await
        .map_err(|e| e.to_string())?;
    let ready = manager
        .event_named("ready")
        .await
        .map_err(|e| e.to_string())?;
    let start = manager
        .barrier_named("start", 2)
        .await
        .map_err(|e| e.to_string())?;
    ready.set().await.map_err(|e| e.to_string())?;
    start.wait().await.map_err(|e| e.to_string())?;
    let mut done = 0;
    // `get` fails once the parent closes `tasks` and it is drained.
    while let Ok(n) = tasks.get().await {
        results.put(n * n).await.map_err(|e| e.to_string())?;
        tasks.task_done().await.map_err(|e| e.to_string())?;
        done += 1;
    }
    Ok(done)
}

#[tokio::test]
async fn hosted_queues_and_sync_objects_work_between_tcp_clients() {
    let (server, addr) = served_elsewhere().await;
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let results = within(client.queue::<u64>()).await.unwrap();
    let tasks = within(client.joinable_queue_named::<u64>("tasks"))
        .await
        .unwrap();
    let ready = within(client.event_named("ready")).await.unwrap();
    let start = within(client.barrier_named("start", 2)).await.unwrap();
    let worker = within(Process::new(square_tasks, (addr, KEY.to_vec(), results.clone())).start())
        .await
        .unwrap();
    assert!(
        within(ready.wait_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
    );
    within(start.wait()).await.unwrap();
    within(tasks.put_many(1..=5)).await.unwrap();
    // Every task done, as counted by the worker's task_done over its own connection.
    within(tasks.join()).await.unwrap();
    let mut squares = Vec::new();
    for _ in 0..5 {
        squares.push(within(results.get()).await.unwrap());
    }
    squares.sort();
    assert_eq!(squares, [1, 4, 9, 16, 25]);
    within(tasks.close()).await.unwrap();
    assert_eq!(within(worker.join()).await.unwrap(), Ok(5));

    // The other kinds, from this client over TCP.
    let lock = within(client.rlock()).await.unwrap();
    let outer = within(lock.acquire()).await.unwrap();
    let inner = within(lock.acquire()).await.unwrap();
    drop((inner, outer));
    assert!(!within(lock.is_locked()).await.unwrap());
    let slots = within(client.bounded_semaphore_named("slots", 1))
        .await
        .unwrap();
    let permit = within(slots.acquire()).await.unwrap();
    assert!(within(slots.try_acquire()).await.unwrap().is_none());
    drop(permit);
    assert!(within(slots.release()).await.is_err(), "bounded above 1");
    let changed = within(client.condition()).await.unwrap();
    let mut guard = within(changed.acquire()).await.unwrap();
    assert!(
        !within(guard.wait_timeout(Duration::from_millis(50)))
            .await
            .unwrap()
    );
    drop(guard);
    // A name holds one kind; a name found registered keeps its first parameters.
    assert!(within(client.lock_named("tasks")).await.is_err());
    assert!(within(client.dict_named::<u8, u8>("ready")).await.is_err());
    assert_eq!(
        within(client.barrier_named("start", 7))
            .await
            .unwrap()
            .parties(),
        2
    );
    stop(server).await;
}

/// Runs in another process: takes the lock named "held" and a permit of the semaphore named
/// "slots" over TCP, says so, and never gives them back: the parent kills it.
#[worker]
async fn hold_and_hang(addr: SocketAddr, key: Vec<u8>) {
    let manager = Manager::connect(addr, &key).await.unwrap();
    let lock = manager.lock_named("held").await.unwrap();
    let slots = manager.semaphore_named("slots", 1).await.unwrap();
    let _guard = lock.acquire().await.unwrap();
    let _permit = slots.acquire().await.unwrap();
    manager
        .event_named("holding")
        .await
        .unwrap()
        .set()
        .await
        .unwrap();
    // Until killed; bounded, so that a failed test leaves nothing running.
    tokio::time::sleep(common::LIMIT).await;
}

/// Starts [`hold_and_hang`] against the manager at `addr` and waits until it holds.
async fn start_holder(manager: &Manager, addr: SocketAddr) -> Process<()> {
    let holding = within(manager.event_named("holding")).await.unwrap();
    let holder = within(
        Process::new(hold_and_hang, (addr, KEY.to_vec()))
            .daemon(true)
            .start(),
    )
    .await
    .unwrap();
    assert!(
        within(holding.wait_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
    );
    holder
}

#[tokio::test]
async fn a_lock_held_by_a_tcp_client_that_dies_is_released() {
    let (server, addr) = served_elsewhere().await;
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let lock = within(client.lock_named("held")).await.unwrap();
    let slots = within(client.semaphore_named("slots", 1)).await.unwrap();
    let holder = start_holder(&client, addr).await;
    assert!(within(lock.try_acquire()).await.unwrap().is_none());
    assert!(within(slots.try_acquire()).await.unwrap().is_none());
    holder.kill();
    let _ = within(holder.join()).await;
    // Its TCP connection closed with it: the server released what it held.
    let guard = within(lock.acquire_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("released when its holder died");
    assert!(guard.owner_died());
    let permit = within(slots.acquire_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("given back when its holder died");
    assert!(permit.owner_died());
    drop((guard, permit));
    stop(server).await;
}

#[tokio::test]
async fn a_server_that_goes_away_fails_hosted_calls_within_a_second() {
    let (server, addr) = served_elsewhere().await;
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let q = within(client.queue::<u8>()).await.unwrap();
    let lock = within(client.lock()).await.unwrap();
    let waiting = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    // Let the get reach the server and wait there.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = Instant::now();
    server.kill();
    let error = within(waiting).await.unwrap().unwrap_err();
    assert!(error.is_closed(), "{error:?}");
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    let started = Instant::now();
    assert!(within(q.put(1)).await.unwrap_err().is_closed());
    assert!(within(lock.acquire()).await.unwrap_err().is_closed());
    assert!(within(client.event()).await.unwrap_err().is_closed());
    assert!(started.elapsed() < Duration::from_secs(1));
    let _ = within(server.join()).await;
}

#[tokio::test]
async fn stopping_a_served_manager_fails_a_wait_on_its_lock_within_a_second() {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let lock = within(server.lock_named("held")).await.unwrap();
    let holder = start_holder(&server, addr).await;
    // This process waits for the lock in its own hub, where no connection closes for it.
    let waiting = tokio::spawn({
        let lock = lock.clone();
        async move { lock.acquire().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the lock is held");
    within(server.shutdown()).await.unwrap();
    let stopped = Instant::now();
    assert_shut_down(&within(waiting).await.unwrap().unwrap_err());
    assert!(stopped.elapsed() < Duration::from_secs(1));
    holder.kill();
    let _ = within(holder.join()).await;
}

/// Asserts that `result` failed as a call through a proxy of an earlier run of the manager at
/// `addr` must.
fn assert_earlier_run<T: std::fmt::Debug>(result: multiproc::Result<T>, addr: SocketAddr) {
    let error = result.unwrap_err();
    assert!(error.is_closed(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("earlier run"), "{message}");
    assert!(message.contains(&addr.to_string()), "{message}");
}

/// A dict, a queue and a value created, in this order, through a new connection to the
/// manager at `addr`, each holding `run`.
struct RunObjects {
    dict: DictProxy<u8, String>,
    queue: Queue<String>,
    value: ValueProxy<u64>,
}

async fn create_objects(addr: SocketAddr, run: u64) -> RunObjects {
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let dict = within(client.dict::<u8, String>()).await.unwrap();
    within(dict.insert(1, format!("run {run}"))).await.unwrap();
    let queue = within(client.queue::<String>()).await.unwrap();
    within(queue.put(format!("run {run}"))).await.unwrap();
    let value = within(client.value(run)).await.unwrap();
    RunObjects { dict, queue, value }
}

#[tokio::test]
async fn a_proxy_from_an_earlier_run_fails_and_never_touches_the_new_run() {
    let (first, addr) = served_elsewhere().await;
    let old = create_objects(addr, 1).await;
    stop(first).await;
    // Served again at the same address by another process, whose objects get the same ids.
    let (second, again) = served_elsewhere_at(addr).await;
    assert_eq!(again, addr);
    let new = create_objects(addr, 2).await;

    let started = Instant::now();
    assert_earlier_run(within(old.dict.get(&1)).await, addr);
    assert_earlier_run(within(old.dict.insert(1, "stale".into())).await, addr);
    assert_earlier_run(within(old.queue.get()).await, addr);
    assert_earlier_run(within(old.queue.put("stale".into())).await, addr);
    assert_earlier_run(within(old.value.set(7)).await, addr);
    assert!(started.elapsed() < Duration::from_secs(1));
    // The new run's objects are as its own clients left them.
    assert_eq!(
        within(new.dict.snapshot()).await.unwrap(),
        [(1, "run 2".to_string())]
    );
    assert_eq!(within(new.queue.len()).await.unwrap(), 1);
    assert_eq!(within(new.queue.get()).await.unwrap(), "run 2");
    assert_eq!(within(new.value.get()).await.unwrap(), 2);
    stop(second).await;
}

/// Runs in another process: connects to the manager at `addr` and hands back its dict
/// named "fresh", holding `1 => "new run"`.
#[worker]
async fn fresh_dict(addr: SocketAddr, key: Vec<u8>) -> Result<DictProxy<u8, String>, String> {
    let d = dict_named_at(addr, &key, "fresh").await?;
    d.insert(1, "new run".into())
        .await
        .map_err(|e| e.to_string())?;
    Ok(d)
}

#[tokio::test]
async fn a_client_of_an_earlier_run_reaches_the_new_run_without_connecting_again() {
    let (first, addr) = served_elsewhere().await;
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let old = within(client.dict::<u8, String>()).await.unwrap();
    within(old.insert(1, "first run".into())).await.unwrap();
    stop(first).await;
    let (second, _) = served_elsewhere_at(addr).await;
    // A proxy of the new run, from a process that connected to it: this process reconnects
    // by itself, with the key it already has.
    let p = within(Process::new(fresh_dict, (addr, KEY.to_vec())).start())
        .await
        .unwrap();
    let fresh = within(p.join()).await.unwrap().unwrap();
    assert_eq!(
        within(fresh.get(&1)).await.unwrap(),
        Some("new run".to_string())
    );
    within(fresh.insert(2, "from here".into())).await.unwrap();
    assert_eq!(within(fresh.len()).await.unwrap(), 2);
    // The old proxy and the old manager handle name the earlier run.
    assert_earlier_run(within(old.get(&1)).await, addr);
    assert_earlier_run(within(client.dict::<u8, u8>()).await, addr);
    stop(second).await;
}

/// Asserts that `error` is what a call through a proxy of a manager that was shut down gets.
fn assert_shut_down(error: &multiproc::Error) {
    assert!(error.is_closed(), "{error:?}");
    assert!(error.to_string().contains("shut down"), "{error}");
}

/// Serves a manager from this process and connects to it; returns both, its address, and a
/// dict created by the server holding `1 => "one"`.
async fn serve_and_connect() -> (Manager, Manager, SocketAddr, DictProxy<u8, String>) {
    let server = within(Manager::serve(localhost(), KEY)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let d = within(server.dict::<u8, String>()).await.unwrap();
    within(d.insert(1, "one".into())).await.unwrap();
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    (server, client, addr, d)
}

#[tokio::test]
async fn dropping_a_served_manager_fails_its_proxies_in_every_process_within_a_second() {
    let (server, client, _, d) = serve_and_connect().await;
    let over_tcp = within(client.list::<u8>()).await.unwrap();
    drop(server);
    let dropped = Instant::now();
    assert_shut_down(&within(d.get(&1)).await.unwrap_err());
    assert!(within(over_tcp.len()).await.unwrap_err().is_closed());
    assert!(dropped.elapsed() < Duration::from_secs(1));
    assert_a_child_fails_within_a_second(d, over_tcp).await;
}

#[tokio::test]
async fn serving_again_in_the_same_process_leaves_the_earlier_run_behind() {
    let (first, client, addr, here) = serve_and_connect().await;
    let there = within(client.dict_named::<u8, String>("shared"))
        .await
        .unwrap();
    within(there.insert(1, "first run".into())).await.unwrap();
    within(first.shutdown()).await.unwrap();

    // The address is free as soon as shutdown returns.
    let second = within(Manager::serve(addr, KEY)).await.unwrap();
    let client = within(Manager::connect(addr, KEY)).await.unwrap();
    let shared = within(client.dict_named::<u8, String>("shared"))
        .await
        .unwrap();
    assert!(within(shared.is_empty()).await.unwrap(), "a new run");
    within(shared.insert(1, "second run".into())).await.unwrap();
    assert_earlier_run(within(there.get(&1)).await, addr);
    assert_shut_down(&within(here.get(&1)).await.unwrap_err());
    assert_eq!(
        within(shared.get(&1)).await.unwrap(),
        Some("second run".to_string())
    );
    within(second.shutdown()).await.unwrap();
}

/// Runs in another process: calls a proxy that reaches its parent's manager through the
/// parent's hub and one that reaches it over TCP; reports, for each, whether it failed as
/// closed, the error, and how long it took in milliseconds.
#[worker]
async fn use_after_shutdown(
    direct: DictProxy<u8, String>,
    over_tcp: ListProxy<u8>,
) -> Vec<(bool, String, u128)> {
    let mut seen = Vec::new();
    let started = Instant::now();
    let direct = direct.get(&1).await.map(drop);
    seen.push((started, direct));
    let started = Instant::now();
    let over_tcp = over_tcp.len().await.map(drop);
    seen.push((started, over_tcp));
    seen.into_iter()
        .map(|(started, result)| match result {
            Ok(()) => (false, "it worked".to_string(), 0),
            Err(e) => (e.is_closed(), e.to_string(), started.elapsed().as_millis()),
        })
        .collect()
}

/// Asserts that a child's calls through `direct` (this process's hub) and `over_tcp` fail as
/// closed within a second.
async fn assert_a_child_fails_within_a_second(
    direct: DictProxy<u8, String>,
    over_tcp: ListProxy<u8>,
) {
    let p = within(Process::new(use_after_shutdown, (direct, over_tcp)).start())
        .await
        .unwrap();
    for (closed, error, millis) in within(p.join()).await.unwrap() {
        assert!(closed, "{error}");
        assert!(millis < 1000, "{error} took {millis} ms");
    }
}

#[tokio::test]
async fn shutting_down_a_served_manager_fails_its_proxies_in_every_process() {
    let (server, client, addr, d) = serve_and_connect().await;
    let ns = within(server.namespace_named("config")).await.unwrap();
    let q = within(server.queue::<u8>()).await.unwrap();
    let lock = within(server.lock()).await.unwrap();
    let over_tcp = within(client.list::<u8>()).await.unwrap();
    let waiting = tokio::spawn({
        let q = q.clone();
        async move { q.get().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    within(server.shutdown()).await.unwrap();

    // In this process, which serves it: a parked get, and every later call.
    let stopped = Instant::now();
    let mut errors = vec![within(waiting).await.unwrap().unwrap_err()];
    errors.push(within(d.get(&1)).await.unwrap_err());
    errors.push(within(d.insert(2, "two".into())).await.unwrap_err());
    errors.push(within(ns.get::<u8>("x")).await.unwrap_err());
    errors.push(within(q.put(1)).await.unwrap_err());
    errors.push(within(lock.acquire()).await.unwrap_err());
    errors.push(within(server.dict::<u8, u8>()).await.unwrap_err());
    assert!(stopped.elapsed() < Duration::from_secs(1));
    errors.iter().for_each(assert_shut_down);
    assert!(
        errors[1].to_string().contains(&addr.to_string()),
        "{}",
        errors[1]
    );
    // Over TCP from this process.
    assert!(within(over_tcp.len()).await.unwrap_err().is_closed());

    // In a child, through this process's hub and over TCP.
    assert_a_child_fails_within_a_second(d, over_tcp).await;
}
