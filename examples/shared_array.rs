//! Python's `Array` filled by a pool: each worker writes its own part of one array in shared
//! memory, and the parent reads the whole without any element crossing a socket.
//!
//! ```sh
//! cargo run --example shared_array
//! ```

use multiproc::{Pool, RawArray, SharedArray, worker};

const PART: usize = 250_000;
const PARTS: usize = 4;

/// Fills part `part` under the array's lock: simple, and one worker at a time.
#[worker]
async fn fill_locked(squares: SharedArray<u64>, part: usize) {
    let mut elements = squares.lock().await.expect("the lock's process is alive");
    for i in part * PART..(part + 1) * PART {
        elements[i] = (i as u64) * (i as u64);
    }
}

/// Fills part `part` of an array without a lock: the parts are disjoint, so the workers write
/// at the same time, and the parent reads only once they are all done.
#[worker]
fn fill_raw(squares: RawArray<u64>, part: usize) {
    // SAFETY: no other process touches this part until the parent reads, after every worker
    // has returned.
    let elements = unsafe { &mut squares.as_mut_slice()[part * PART..(part + 1) * PART] };
    for (offset, element) in elements.iter_mut().enumerate() {
        let i = (part * PART + offset) as u64;
        *element = i * i;
    }
}

#[multiproc::main]
async fn main() -> multiproc::Result<()> {
    let pool = Pool::builder().processes(2).build().await?;

    let locked = SharedArray::<u64>::new(PART * PARTS)?;
    let parts = (0..PARTS).map(|part| (locked.clone(), part));
    pool.starmap(fill_locked, parts).chunksize(1).await?;
    let total: u64 = locked
        .lock()
        .await?
        .iter()
        .fold(0, |sum, &x| sum.wrapping_add(x));
    println!("sum of squares, filled under the lock: {total}");

    let raw = RawArray::<u64>::new(PART * PARTS)?;
    let parts = (0..PARTS).map(|part| (raw.clone(), part));
    pool.starmap(fill_raw, parts).chunksize(1).await?;
    let raw_total = raw
        .to_vec()
        .iter()
        .fold(0u64, |sum, &x| sum.wrapping_add(x));
    println!("sum of squares, filled in parallel:     {raw_total}");

    assert_eq!(total, raw_total);
    Ok(())
}
