//! The Python runtime shared by every Python-backed crate of the workspace.
//!
//! * [`runtime`] starts CPython **once**, from the project's venv, found without hand-set
//!   variables (see [`venv::find_venv`]), so that `sys.prefix` is the venv and its C extensions import.
//! * [`PythonRuntime::run`] runs a closure with the GIL on one of a few long-lived worker threads and
//!   awaits its result, so async code never blocks its executor on Python, and no call pays for a
//!   fresh OS thread (≈9 µs) or a fresh Python thread state.
//! * [`py_err`] turns any `PyErr` into [`rag_core::RagError::Python`] with type, message and traceback, and a
//!   missing package into [`rag_core::RagError::PythonPackageMissing`] naming the set-up command.
//! * [`convert`] moves vectors as numpy arrays and metadata as typed Python values.
//! * [`classify`] maps exceptions to transient / permanent / not-found by class, from a table.
//! * [`store`] is the kit the vector stores share: payload layout, shim loader, dimension guard,
//!   operator filters.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod classify;
pub mod convert;
mod errors;
mod init;
mod pool;
pub mod store;
pub mod venv;

pub use errors::{PyResultExt, import, py_err};
pub use init::{DEFAULT_WORKERS, PythonRuntime, host_sys_path, init, runtime};
pub use numpy;
pub use pyo3;

/// The command that creates the venv and installs every pinned Python package.
pub const SETUP_COMMAND: &str = "make setup";
