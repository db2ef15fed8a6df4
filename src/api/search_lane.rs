//! The lane auditors' text searches run in (issue 15: an auditor searching must not cost the
//! agents more than a tenth of their throughput). One search at a time, on one long-lived
//! thread at the lowest CPU and I/O priority, and searches spaced so that what they cost stays
//! small whatever the auditors do.
//!
//! Priority alone does not bound the cost. Measured on two cores with an auditor searching back
//! to back (pgbench `-S`, TPS beside the searches against TPS without): 0.47x with a thread per
//! search at nice 19, 0.66x at `SCHED_IDLE`, when searches ran 250 times a second; proctor's own
//! CPU per transaction hardly changed, so most of the cost is elsewhere (not profiled further:
//! latency the searches add to agents' round trips, a thread created per search, the journal
//! record and HTTP work at normal priority). Spacing bounds it whatever the cause: after a
//! search that used `c` of CPU the next one starts no sooner than `SPACING * c` (and at least
//! `MIN_GAP`) later. A single search is never slowed; a search that finds the lane busy waits
//! its turn.

use std::panic::AssertUnwindSafe;
use std::sync::LazyLock;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::ApiError;

/// After a search that used `c` of CPU the lane stays closed for `SPACING * c`: searches in a
/// loop take at most 1/(1 + SPACING) of one core.
const SPACING: u32 = 19;
/// And at least this long: what a search costs besides its own CPU is bounded by this rate (20
/// searches a second; at 50 a second agents kept 0.82x of their TPS).
const MIN_GAP: Duration = Duration::from_millis(50);

/// When the lane next opens. One for the process: the CPU it bounds is the machine's.
static LANE: LazyLock<Mutex<Instant>> = LazyLock::new(|| Mutex::new(Instant::now()));

type Job = Box<dyn FnOnce() + Send>;

/// The search thread, started on first use. It lowers its priority once and keeps it: only
/// searches run on it (a lowered priority cannot be raised again without privileges).
static WORKER: LazyLock<Option<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("proctor-search".into())
        .spawn(move || {
            lowest_cpu_priority();
            for job in rx {
                // A search that panics loses its answer (the caller gets an error), not the
                // thread.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the search thread");
            None
        }
    }
});

/// Runs a long read for an auditor (a text search over recordings) in the lane. The lane is
/// kept by a task of its own, so a client that hangs up does not open it early (its search
/// runs on, unanswered, and still holds the lane).
pub(crate) async fn run<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(in_lane(f))
        .await
        .map_err(|e| ApiError::Internal(format!("the search lane failed: {e}")))?
}

async fn in_lane<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let mut opens = LANE.lock().await;
    tokio::time::sleep_until(*opens).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let before = thread_cpu_time();
        let out = f();
        let _ = tx.send((out, thread_cpu_time().saturating_sub(before)));
    });
    let sent = WORKER.as_ref().map(|w| w.send(job));
    if !matches!(sent, Some(Ok(()))) {
        return Err(ApiError::Unavailable(
            "the search thread is not running".into(),
        ));
    }
    let answer = rx.await;
    let used = answer.as_ref().map(|(_, c)| *c).unwrap_or(MIN_GAP);
    *opens = Instant::now() + (used * SPACING).max(MIN_GAP);
    drop(opens);
    answer
        .map_err(|_| ApiError::Internal("the search ended without an answer".into()))?
        .0
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, which lives across the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The lowest CPU and I/O priority for the calling thread (both are per thread on Linux).
/// Best effort: a search at normal priority is slower for others, not wrong.
///
/// Nice 19 alone was not enough (issue 15, pgbench `-S` beside a search loop: 0.47x of its TPS
/// at nice 19, 0.66x at `SCHED_IDLE`): a running nice-19 thread may finish its slice before a
/// woken agent thread gets the CPU, a `SCHED_IDLE` one is preempted as soon as a normal thread
/// wakes. The idle I/O class keeps its reads of recordings the writer evicted from the
/// page cache behind the recorder's fdatasyncs.
fn lowest_cpu_priority() {
    // SAFETY: sched_setscheduler and setpriority with pid 0 change only the calling thread's
    // scheduling; the param struct lives across the call.
    let idle = unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
    };
    if idle != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "search thread is not SCHED_IDLE");
    }
    // Also nice 19, where SCHED_IDLE is refused.
    // SAFETY: as above.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "search thread keeps its priority");
    }
    // ioprio_set(IOPRIO_WHO_PROCESS, this thread, class idle): no libc wrapper.
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: a plain syscall on the calling thread with integer arguments.
    let io = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if io != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "search thread keeps its I/O priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searches_run_one_at_a_time_and_are_spaced() {
        let busy = Arc::new(AtomicBool::new(false));
        let started = std::time::Instant::now();
        let mut all = Vec::new();
        for _ in 0..5 {
            let busy = busy.clone();
            all.push(tokio::spawn(run(move || {
                assert!(!busy.swap(true, Ordering::SeqCst), "two searches at once");
                // About 5 ms of CPU: the lane then stays closed for about 95 ms.
                let t = std::time::Instant::now();
                let mut x = 0u64;
                while t.elapsed() < Duration::from_millis(5) {
                    x = x.wrapping_add(std::hint::black_box(1));
                }
                busy.store(false, Ordering::SeqCst);
                Ok(x)
            })));
        }
        for s in all {
            s.await.expect("task").expect("search");
        }
        // Four gaps of at least MIN_GAP each (more when the CPU was really used).
        assert!(started.elapsed() >= MIN_GAP * 4, "{:?}", started.elapsed());
    }
}
