//! Who holds a lock word in shared memory, and whether that process still lives.
//!
//! A lock in shared memory must name its holder so that, if the holder dies, the next process
//! that wants the lock can tell and take it over. The kernel's robust futexes do this for a
//! *thread* (the holder's thread id, walked at thread exit), which a tokio task is not: it may
//! lock on one worker thread and unlock on another. So the word holds the *process*: its pid
//! and the low 32 bits of its start time (field 22 of `/proc/<pid>/stat`, in clock ticks since
//! boot). A pid the kernel gave to a new process after the holder died has a later start time,
//! so it is not mistaken for the holder.
//!
//! Layout of a 64-bit lock word, used by every lock-like cell:
//!
//! | bits | meaning |
//! |---|---|
//! | 0 | [`WAITERS`]: some process may be parked at the object's hub; a release wakes it |
//! | 1 | [`OWNER_DIED`]: the last holder died holding it; the next acquirer is told |
//! | 2..32 | the holder's pid (0: free) |
//! | 32..64 | the low 32 bits of the holder's start time |

use std::sync::OnceLock;

/// Some process may be parked waiting for the word to change.
pub(crate) const WAITERS: u64 = 1;
/// The word was taken back from a holder that died.
pub(crate) const OWNER_DIED: u64 = 2;
const FLAGS: u64 = WAITERS | OWNER_DIED;

/// The bits of a word that name its holder; 0 when free.
pub(crate) fn holder_of(word: u64) -> u64 {
    word & !FLAGS
}

/// This process as a holder: its pid and start time, packed as in a lock word.
pub(crate) fn me() -> u64 {
    static ME: OnceLock<u64> = OnceLock::new();
    *ME.get_or_init(|| {
        let pid = std::process::id();
        let start = read_stat(pid).map_or(0, |stat| stat.start);
        pack(pid, start)
    })
}

fn pack(pid: u32, start: u64) -> u64 {
    ((start & 0xffff_ffff) << 32) | (u64::from(pid) << 2)
}

/// The pid in a holder word.
pub(crate) fn pid_of(word: u64) -> u32 {
    ((word & 0xffff_ffff) >> 2) as u32
}

/// Whether the process named by `holder` (a word's holder bits) has died: it no longer
/// exists, it is a zombie, or its pid now belongs to a process started later. A process this
/// one cannot inspect is taken as alive.
pub(crate) fn has_died(holder: u64) -> bool {
    let pid = pid_of(holder);
    if pid == 0 {
        return false;
    }
    match read_stat(pid) {
        Some(stat) => stat.dead || pack(pid, stat.start) != holder_of(holder),
        None => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// Whether the process `pid` has ended (it no longer exists, or is a zombie), whoever it was.
pub(crate) fn has_ended(pid: u32) -> bool {
    match read_stat(pid) {
        Some(stat) => stat.dead,
        None => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
    }
}

struct Stat {
    start: u64,
    dead: bool,
}

/// The state and start time of `pid`, from `/proc/<pid>/stat`.
fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted from
    // the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    // After the state (field 3), the start time is field 22: 19 fields further.
    let start = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        start,
        dead: matches!(state, "Z" | "X" | "x"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_lives_and_a_reused_pid_does_not_pass_for_it() {
        assert!(!has_died(me()));
        assert_eq!(pid_of(me()), std::process::id());
        let earlier_start = me() ^ (1 << 32);
        assert!(has_died(earlier_start), "same pid, other start time");
    }

    #[test]
    fn a_reaped_child_has_died() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let word = pack(
            child.id(),
            read_stat(child.id()).map_or(0, |stat| stat.start),
        );
        child.wait().expect("wait");
        assert!(has_died(word));
    }
}
