//! Background work (a server's ingestion of uploads and watched folders) at
//! a lowered priority, so that searches and answers keep their latency
//! while it runs; idle cores still go to it.

/// Run `work` as background work, at nice `nice` (0: as it is), on the
/// calling thread and a thread pool of its own, both lowered.
///
/// Call it only on a thread of your own (`std::thread::spawn`), never on a
/// shared pool's (tokio's blocking pool, rayon's global pool): an
/// unprivileged thread cannot raise its priority back. Everything the work
/// starts inherits the lowered priority: the rayon pool made here (the
/// loading and chunking stage), loader processes, and the embedder's
/// background session, which ONNX Runtime makes on the first call from a
/// lowered thread (see `cairn_models::OnnxEmbedder`).
pub fn run_in_background<R: Send>(nice: u8, work: impl FnOnce() -> R + Send) -> R {
    match cairn_core::priority::lower_current_thread(i32::from(nice)) {
        Ok(true) => tracing::debug!(nice, "background work runs lowered"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(nice, error = %e, "could not lower the priority of background work")
        }
    }
    if nice == 0 {
        return work();
    }
    match rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("cairn-background-{i}"))
        .build()
    {
        Ok(pool) => pool.install(work),
        Err(e) => {
            tracing::warn!(error = %e, "no thread pool for background work; using the shared one");
            work()
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use cairn_core::priority::current_nice;
    use rayon::prelude::*;

    #[test]
    fn background_work_and_its_pool_run_lowered_and_the_caller_s_others_do_not() {
        let before = current_nice();
        let (own, pool) = std::thread::spawn(move || {
            run_in_background(7, || {
                let pool: Vec<i32> = (0..64).into_par_iter().map(|_| current_nice()).collect();
                (current_nice(), pool)
            })
        })
        .join()
        .unwrap();
        let want = before.max(7);
        assert_eq!(own, want);
        assert!(pool.iter().all(|&n| n == want), "{pool:?}");
        // The global pool and this thread are untouched.
        let global: Vec<i32> = (0..64).into_par_iter().map(|_| current_nice()).collect();
        assert!(global.iter().all(|&n| n == before), "{global:?}");
        assert_eq!(current_nice(), before);
        // nice 0 runs the work as it is.
        assert_eq!(run_in_background(0, current_nice), before);
    }
}
