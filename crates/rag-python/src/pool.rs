//! Long-lived worker threads that hold a Python thread state for their whole life.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use crossbeam_channel::{Receiver, Sender};
use pyo3::Python;

/// A unit of GIL work.
pub(crate) type Job = Box<dyn for<'py> FnOnce(Python<'py>) + Send>;

thread_local! {
    static ON_PYTHON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is one of the runtime's workers. Python code that calls back
/// into Rust (a `#[pyclass]` retriever inside DSPy) runs on a worker; nested Python work from
/// there runs inline instead of queueing behind itself.
pub(crate) fn on_worker() -> bool {
    ON_PYTHON_WORKER.with(Cell::get)
}

pub(crate) fn spawn_workers(n: usize) -> std::io::Result<Sender<Job>> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    for i in 0..n.max(1) {
        let rx = rx.clone();
        std::thread::Builder::new().name(format!("rag-python-{i}")).spawn(move || worker_loop(rx))?;
    }
    Ok(tx)
}

fn worker_loop(rx: Receiver<Job>) {
    ON_PYTHON_WORKER.with(|w| w.set(true));
    // Attach once and keep this thread's Python thread state; release the GIL only while idle.
    Python::attach(|py| {
        loop {
            let job = py.detach(|| rx.recv());
            match job {
                // A panicking job must not take the worker down with it; its caller sees the
                // dropped result channel and reports the panic.
                Ok(job) => {
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(py)));
                }
                Err(_) => break,
            }
        }
    });
}
