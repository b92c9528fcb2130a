//! Starting the embedded interpreter from the venv, once per process.

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crossbeam_channel::Sender;
use pyo3::ffi;
use pyo3::prelude::*;
use rag_core::{RagError, Result};

use crate::pool::{self, Job};
use crate::{PyResultExt, venv};

/// Worker threads when nothing asks for a number: pure-Python work serialises on the GIL anyway;
/// more than one lets torch and the chromadb core (which release the GIL while computing) overlap.
pub const DEFAULT_WORKERS: usize = 4;

/// The running interpreter and its worker threads.
#[derive(Debug)]
pub struct PythonRuntime {
    venv: PathBuf,
    version: String,
    sender: Sender<Job>,
}

static RUNTIME: OnceLock<std::result::Result<PythonRuntime, String>> = OnceLock::new();

/// Starts Python the first time, from `venv` (`None` searches: see [`venv::find_venv`]) with
/// `workers` threads that run GIL work (the configuration's `[python]` table); later calls
/// return the same runtime and ignore both, since CPython cannot be started twice in one process.
pub fn init(venv: Option<PathBuf>, workers: usize) -> Result<&'static PythonRuntime> {
    RUNTIME
        .get_or_init(|| start(venv.as_deref(), workers.max(1)).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| RagError::config(format!("the embedded Python interpreter could not start: {e}")))
}

/// The runtime, started with default settings if nothing started it yet.
pub fn runtime() -> Result<&'static PythonRuntime> {
    init(None, DEFAULT_WORKERS)
}

/// Environment defaults applied inside Python before any package is imported. `setdefault` keeps
/// whatever the user set.
const STARTUP: &std::ffi::CStr = c"
import os, sys
for k, v in {
    # torch's and numpy's BLAS pools fight over 2 cores; one BLAS thread cut query p95 from 115 to 30 ms.
    'OPENBLAS_NUM_THREADS': '1',
    'TOKENIZERS_PARALLELISM': 'false',
    # Nothing may download at run time: models come from local paths only.
    'HF_HUB_OFFLINE': '1',
    'TRANSFORMERS_OFFLINE': '1',
    'HF_HUB_DISABLE_TELEMETRY': '1',
    'ANONYMIZED_TELEMETRY': 'False',
    'LITELLM_LOCAL_MODEL_COST_MAP': 'True',
    # Progress bars from transformers/tqdm would interleave with rag's own output.
    'HF_HUB_DISABLE_PROGRESS_BARS': '1',
    'TRANSFORMERS_VERBOSITY': 'error',
    'TQDM_DISABLE': '1',
}.items():
    os.environ.setdefault(k, v)
";

/// The `sys.path` of a host interpreter that loaded rag as an extension module (the Python
/// package): set once when the runtime attaches to it; `None` when rag started Python itself.
static HOST_SYS_PATH: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// The directories a host interpreter imports from, when rag runs inside one (the Python
/// package); `None` when rag started Python from its venv. Backends that look for a package's
/// files (ONNX Runtime's library) search these instead of the venv.
pub fn host_sys_path() -> Option<&'static [PathBuf]> {
    HOST_SYS_PATH.get().map(Vec::as_slice)
}

fn start(venv: Option<&std::path::Path>, workers: usize) -> Result<PythonRuntime> {
    // SAFETY: a plain query of CPython's state.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return attach_to_host(workers);
    }
    let venv = venv::find_venv(venv)?;
    // SAFETY: guarded by the OnceLock, so this runs once per process, before any other Python use.
    unsafe { initialize_from_venv(&venv)? };
    let version = Python::attach(|py| -> Result<String> {
        py.run(STARTUP, None, None).py_context(py)?;
        let sys = py.import("sys").py_context(py)?;
        let prefix: String = sys.getattr("prefix").and_then(|p| p.extract()).py_context(py)?;
        let version: String = py
            .eval(c"'.'.join(map(str, __import__('sys').version_info[:3]))", None, None)
            .and_then(|v| v.extract())
            .py_context(py)?;
        if Path::new(&prefix) != venv {
            return Err(RagError::config(format!(
                "Python started with sys.prefix {prefix}, not the venv {}: run `{}` and rebuild",
                venv.display(),
                crate::SETUP_COMMAND
            )));
        }
        Ok(version)
    })?;
    if let Some(expected) = venv::venv_python_version(&venv)
        && expected != version
    {
        // The Debian libpython trap: the binary was linked without an rpath to the venv's interpreter.
        return Err(RagError::config(format!(
            "this binary loaded libpython {version}, but the venv {} was made by Python {expected}: run `{}` \
             (it writes .cargo/config.toml with an rpath to the right libpython) and rebuild",
            venv.display(),
            crate::SETUP_COMMAND
        )));
    }
    let sender =
        pool::spawn_workers(workers).map_err(|e| RagError::internal_from("could not spawn the Python worker threads", e))?;
    tracing::info!(venv = %venv.display(), %version, workers, "embedded Python started");
    Ok(PythonRuntime { venv, version, sender })
}

/// Python is already running: rag was imported as an extension module (or a host embedded
/// it). Its environment is the host's (`sys.prefix`, `sys.path`), not a venv rag finds; only the
/// environment defaults are applied, and the worker threads attach to the host's interpreter.
fn attach_to_host(workers: usize) -> Result<PythonRuntime> {
    let (prefix, version, path) = Python::attach(|py| -> Result<(String, String, Vec<String>)> {
        py.run(STARTUP, None, None).py_context(py)?;
        let sys = py.import("sys").py_context(py)?;
        let prefix: String = sys.getattr("prefix").and_then(|p| p.extract()).py_context(py)?;
        let path: Vec<String> = sys.getattr("path").and_then(|p| p.extract()).py_context(py)?;
        let version: String = py
            .eval(c"'.'.join(map(str, __import__('sys').version_info[:3]))", None, None)
            .and_then(|v| v.extract())
            .py_context(py)?;
        Ok((prefix, version, path))
    })?;
    let _ = HOST_SYS_PATH.set(path.into_iter().filter(|p| !p.is_empty()).map(PathBuf::from).collect());
    let sender =
        pool::spawn_workers(workers).map_err(|e| RagError::internal_from("could not spawn the Python worker threads", e))?;
    tracing::info!(prefix, %version, workers, "attached to the host's Python");
    Ok(PythonRuntime { venv: PathBuf::from(prefix), version, sender })
}

/// # Safety
/// Must run at most once per process, before any other thread uses Python.
unsafe fn initialize_from_venv(venv: &Path) -> Result<()> {
    // SAFETY: plain FFI calls into CPython's documented initialisation API, in the documented order.
    unsafe {
        if ffi::Py_IsInitialized() != 0 {
            // Someone (a test harness, a host application) started Python already: use it.
            return Ok(());
        }
        let exe = venv.join("bin/python");
        let exe = CString::new(exe.as_os_str().as_encoded_bytes())
            .map_err(|_| RagError::config(format!("venv path {} contains a NUL byte", venv.display())))?;
        let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        // Python computes sys.prefix from `executable` (via pyvenv.cfg), not from VIRTUAL_ENV.
        let status = ffi::PyConfig_SetBytesString(&mut config, &mut config.executable, exe.as_ptr());
        if ffi::PyStatus_Exception(status) != 0 {
            ffi::PyConfig_Clear(&mut config);
            return Err(status_error("PyConfig_SetBytesString", &status));
        }
        config.install_signal_handlers = 0;
        // Unbuffered: the interpreter is never finalised, so buffered output would be lost at exit.
        config.buffered_stdio = 0;
        let status = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(status_error("Py_InitializeFromConfig", &status));
        }
        // Release the GIL taken by initialisation so any thread can attach.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

fn status_error(call: &str, status: &ffi::PyStatus) -> RagError {
    let msg = if status.err_msg.is_null() {
        "unknown error".to_owned()
    } else {
        // SAFETY: CPython sets err_msg to a static NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(status.err_msg) }.to_string_lossy().into_owned()
    };
    RagError::config(format!("{call} failed: {msg}"))
}

impl PythonRuntime {
    /// The venv Python was started from (the host's `sys.prefix` when rag runs inside a host's
    /// interpreter).
    pub fn venv(&self) -> &Path {
        &self.venv
    }

    /// The interpreter's version (`3.11.7`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Runs `f` with the GIL on a worker thread and awaits its result, without blocking the async
    /// executor. Called from a worker thread itself (Python calling back into Rust), `f` runs inline.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: for<'py> FnOnce(Python<'py>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if pool::on_worker() {
            return Python::attach(f);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move |py| {
            let _ = tx.send(f(py));
        }))?;
        rx.await.unwrap_or_else(|_| Err(worker_panicked()))
    }

    /// Like [`PythonRuntime::run`], blocking the current thread (for sync callers such as benchmarks
    /// or `Drop`). Never call it from inside an async task.
    pub fn run_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: for<'py> FnOnce(Python<'py>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if pool::on_worker() {
            return Python::attach(f);
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(Box::new(move |py| {
            let _ = tx.send(f(py));
        }))?;
        rx.recv().unwrap_or_else(|_| Err(worker_panicked()))
    }

    fn submit(&self, job: Job) -> Result<()> {
        self.sender.send(job).map_err(|_| RagError::internal("the Python worker threads have stopped"))
    }
}

fn worker_panicked() -> RagError {
    RagError::internal("a Python worker job panicked (a bug in rag: please report it with the log)")
}
