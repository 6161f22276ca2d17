//! The kernels' thread pool: one per process, rebuilt in a forked child.
//!
//! rayon's global pool cannot survive `fork()`: the child inherits the pool's state but none of
//! its threads, so the first parallel kernel call in the child waits forever for workers that do
//! not exist (multiprocessing with the `fork` start method, pre-forking servers, mutmut's
//! workers). Every binding therefore runs its kernel through [`detach`], which installs the pool
//! of the current process: the pool remembers the process id it was built in, and a call from
//! another process (a forked child) builds a fresh pool. The stale pool is leaked on purpose:
//! dropping it would signal threads that no longer exist. Thread count: rayon's default
//! (`RAYON_NUM_THREADS`, else one per CPU).

use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::Python;

struct ProcessPool {
    pid: u32,
    pool: rayon::ThreadPool,
}

static CURRENT: AtomicPtr<ProcessPool> = AtomicPtr::new(std::ptr::null_mut());

/// The thread pool of the current process (built on first use, and again after a fork).
pub fn pool() -> &'static rayon::ThreadPool {
    let pid = std::process::id();
    let seen = CURRENT.load(Ordering::Acquire);
    // SAFETY: non-null pointers in CURRENT come from Box::leak below and are never freed.
    if let Some(p) = unsafe { seen.as_ref() } {
        if p.pid == pid {
            return &p.pool;
        }
    }
    let built = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("cascal-kernel-{i}"))
        .build()
        .unwrap_or_else(|e| panic!("cascal: cannot start the kernel thread pool: {e}"));
    let fresh: &'static mut ProcessPool = Box::leak(Box::new(ProcessPool { pid, pool: built }));
    let fresh_ptr: *mut ProcessPool = fresh;
    match CURRENT.compare_exchange(seen, fresh_ptr, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: as above; `fresh` is now the published, never-freed pool.
        Ok(_) => unsafe { &(*fresh_ptr).pool },
        Err(winner) => {
            // another thread of this process published its pool first: use that one (ours is
            // unused and can go, its threads are alive in this process)
            // SAFETY: `fresh_ptr` came from Box::leak above and was never shared.
            drop(unsafe { Box::from_raw(fresh_ptr) });
            // SAFETY: as above.
            let w = unsafe { &*winner };
            if w.pid == pid {
                &w.pool
            } else {
                pool()
            }
        }
    }
}

/// Run `f` without the GIL on the kernel thread pool of the current process.
pub fn detach<T: Send, F: FnOnce() -> T + Send>(py: Python<'_>, f: F) -> T {
    py.detach(|| pool().install(f))
}
