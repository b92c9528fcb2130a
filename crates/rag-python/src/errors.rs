//! PyErr -> RagError.

use pyo3::prelude::*;
use pyo3::types::{PyModule, PyTuple};
use rag_core::RagError;

/// Converts a Python exception into [`RagError::Python`] (qualified type, message, formatted
/// traceback), or [`RagError::PythonPackageMissing`] for a `ModuleNotFoundError`.
pub fn py_err(py: Python<'_>, err: PyErr) -> RagError {
    let value = err.value(py);
    let ty = value.get_type();
    let qualname = ty.qualname().map(|s| s.to_string()).unwrap_or_else(|_| "Exception".into());
    let module = ty.module().map(|s| s.to_string()).unwrap_or_default();
    let exc_type = if module.is_empty() || module == "builtins" { qualname.clone() } else { format!("{module}.{qualname}") };
    let message = value.str().map(|s| s.to_string()).unwrap_or_default();
    if qualname == "ModuleNotFoundError" {
        let package = value.getattr("name").ok().and_then(|n| n.extract::<String>().ok()).unwrap_or_else(|| message.clone());
        let venv = py
            .import("sys")
            .and_then(|s| s.getattr("prefix"))
            .and_then(|p| p.extract::<String>())
            .unwrap_or_else(|_| "the embedded interpreter".into());
        return RagError::PythonPackageMissing { package, venv, setup_command: crate::SETUP_COMMAND.into() };
    }
    let traceback = format_traceback(py, &err).unwrap_or_default();
    RagError::Python { exc_type, classes: classes(&ty), message, traceback }
}

/// `module.qualname` of every class in the exception type's MRO (builtins unqualified).
fn classes(ty: &Bound<'_, pyo3::types::PyType>) -> Vec<String> {
    let Ok(mro) = ty.getattr("__mro__") else { return Vec::new() };
    let Ok(iter) = mro.try_iter() else { return Vec::new() };
    iter.flatten()
        .filter_map(|c| {
            let module: String = c.getattr("__module__").and_then(|m| m.extract()).ok()?;
            let name: String = c.getattr("__qualname__").and_then(|m| m.extract()).ok()?;
            Some(if module == "builtins" { name } else { format!("{module}.{name}") })
        })
        .collect()
}

fn format_traceback(py: Python<'_>, err: &PyErr) -> PyResult<String> {
    let Some(tb) = err.traceback(py) else { return Ok(String::new()) };
    let module = PyModule::import(py, "traceback")?;
    let lines = module.getattr("format_tb")?.call1(PyTuple::new(py, [tb])?)?;
    let lines: Vec<String> = lines.extract()?;
    Ok(lines.concat())
}

/// Imports a module, mapping a missing package to [`RagError::PythonPackageMissing`].
pub fn import<'py>(py: Python<'py>, name: &str) -> rag_core::Result<Bound<'py, PyModule>> {
    PyModule::import(py, name).map_err(|e| py_err(py, e))
}

/// `.py_context(py)` on any `PyResult`, for `?` inside GIL closures.
pub trait PyResultExt<T> {
    /// Maps the error through [`py_err`].
    fn py_context(self, py: Python<'_>) -> rag_core::Result<T>;
}

impl<T> PyResultExt<T> for PyResult<T> {
    fn py_context(self, py: Python<'_>) -> rag_core::Result<T> {
        self.map_err(|e| py_err(py, e))
    }
}
