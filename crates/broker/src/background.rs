//! Blocking work that may wait for the data path: it runs on a thread of its own at a lower
//! CPU priority (10 nice levels below the broker's own), so that when the machine is short of
//! CPU, produce, fetch and replication go first. Today that is the creation of new partitions
//! (directories, logs, indexes and checkpoints, each an fsync'd file), so that a flood of
//! CreateTopics requests slows its own topics down rather than everyone's records, and the log
//! cleaner's passes.

use tokio::sync::oneshot;

/// Nice levels a background thread runs below the broker.
pub const NICE_OFFSET: i32 = 10;
/// The lowest priority Linux has.
const NICE_MAX: i32 = 19;

/// Runs `f` on a new thread named `name` at the lower priority, inside the caller's tokio
/// runtime; its result, or why there is none (the thread could not start, or `f` panicked).
pub async fn run<T, F>(name: &str, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    // In the caller's runtime, so that `f` can spawn tasks as blocking-pool work can.
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _runtime = runtime.enter();
            lower_priority();
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot start thread {name}: {e}"))?;
    rx.await
        .map_err(|_| format!("thread {name} ended without a result"))
}

/// Moves the calling thread `NICE_OFFSET` nice levels down (Linux schedules threads one by
/// one). Lowering a priority needs no privilege; where it fails the work runs as it is.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let tid = Some(rustix::thread::gettid());
        let result = getpriority_process(tid)
            .and_then(|nice| setpriority_process(tid, (nice + NICE_OFFSET).min(NICE_MAX)));
        if let Err(e) = result {
            tracing::debug!(error = %e, "cannot lower the background thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_below_the_callers_priority_and_reports_panics() {
        let got = run("runnel-test-bg", || {
            #[cfg(target_os = "linux")]
            {
                let tid = Some(rustix::thread::gettid());
                rustix::process::getpriority_process(tid).unwrap()
            }
            #[cfg(not(target_os = "linux"))]
            {
                0
            }
        })
        .await
        .unwrap();
        #[cfg(target_os = "linux")]
        {
            let mine = rustix::process::getpriority_process(None).unwrap();
            assert_eq!(got, (mine + NICE_OFFSET).min(NICE_MAX));
        }
        let _ = got;
        // Tasks can be spawned from it.
        let spawned = run("runnel-test-bg", || tokio::spawn(async { 7 }))
            .await
            .unwrap();
        assert_eq!(spawned.await.unwrap(), 7);
        let err = run("runnel-test-bg", || -> i32 { panic!("boom") })
            .await
            .unwrap_err();
        assert!(err.contains("without a result"), "{err}");
    }
}
