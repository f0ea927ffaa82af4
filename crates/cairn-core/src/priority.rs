//! The scheduling priority of the calling thread, so that background work
//! (an ingestion while a server answers queries) yields the CPU to
//! foreground work.
//!
//! On Linux a thread's nice value is its own (`setpriority(PRIO_PROCESS,
//! tid)`), and threads inherit their creator's: a thread pool created on a
//! lowered thread (rayon's, ONNX Runtime's intra-op pool) runs lowered too.
//! An unprivileged thread cannot raise its priority back, so lower only a
//! thread of your own, never one of a shared pool. Elsewhere these calls do
//! nothing and say so ([`lower_current_thread`] returns `Ok(false)`).

/// The calling thread's nice value (0 where it cannot be read).
pub fn current_nice() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's id.
        unsafe {
            let tid = libc::gettid();
            *libc::__errno_location() = 0;
            let n = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            if n == -1 && *libc::__errno_location() != 0 {
                return 0;
            }
            n
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Lower the calling thread's priority to nice `nice` (1 to 19; 0 leaves it
/// as it is). `Ok(true)`: the thread now runs at that nice value (or was
/// already lower); `Ok(false)`: nothing to do, or the platform has no
/// per-thread nice value; `Err`: the system refused.
pub fn lower_current_thread(nice: i32) -> std::io::Result<bool> {
    if nice <= 0 {
        return Ok(false);
    }
    let nice = nice.min(19);
    #[cfg(target_os = "linux")]
    {
        if current_nice() >= nice {
            return Ok(true);
        }
        // SAFETY: plain syscall on the calling thread's id.
        let rc = unsafe {
            libc::setpriority(
                libc::PRIO_PROCESS,
                libc::gettid() as libc::id_t,
                nice as libc::c_int,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn lowering_a_thread_leaves_the_others_and_is_inherited() {
        let before = current_nice();
        let (own, child) = std::thread::spawn(move || {
            assert!(lower_current_thread(before + 5).unwrap());
            let own = current_nice();
            let child = std::thread::spawn(current_nice).join().unwrap();
            (own, child)
        })
        .join()
        .unwrap();
        assert_eq!(own, (before + 5).min(19));
        assert_eq!(
            child, own,
            "a thread created by a lowered thread runs lowered"
        );
        assert_eq!(
            current_nice(),
            before,
            "only the calling thread was lowered"
        );
        assert!(!lower_current_thread(0).unwrap(), "0 changes nothing");
    }
}
