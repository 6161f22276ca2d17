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
//!
//! Why raw pointers: the current pool must be replaceable after a fork and readable without a
//! lock (a lock held by another thread at the moment of `fork()` would stay locked forever in the
//! child), which `OnceLock` / `Mutex` cannot give; an `AtomicPtr` to leaked, never-freed pools
//! can. Invariant of [`CURRENT`], upheld by [`pool`] alone: it is null or points to a
//! `ProcessPool` leaked with `Box::leak` that is never freed, so every non-null value read from it
//! is valid for `'static`.

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
    // SAFETY: `seen` is null or a leaked, never-freed pool (the invariant of CURRENT, module docs),
    // so a shared `'static` reference to it is valid; nothing mutates a published pool.
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
        // SAFETY: `fresh_ptr` comes from `Box::leak` above and is now published in CURRENT, so
        // it is never freed (module docs): a `'static` shared reference is valid.
        Ok(_) => unsafe { &(*fresh_ptr).pool },
        Err(winner) => {
            // another thread of this process published its pool first: use that one (ours is
            // unused and can go, its threads are alive in this process)
            // SAFETY: `fresh_ptr` came from `Box::leak` above, the exchange failed so it was never
            // published, and `fresh` is not used again: this is its only owner, freed once.
            drop(unsafe { Box::from_raw(fresh_ptr) });
            // SAFETY: `winner` is the non-null value another thread published in CURRENT: a
            // leaked, never-freed pool (the invariant of CURRENT, module docs).
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
