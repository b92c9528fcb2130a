//! Moving data across the boundary: vectors as numpy arrays, metadata as typed Python values.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};
use rag_core::{Metadata, MetadataValue, RagError, Result};

use crate::PyResultExt;

/// A `float32` numpy vector from a slice (one memcpy; a list would cost ~40x more).
pub fn vector_to_numpy<'py>(py: Python<'py>, v: &[f32]) -> Bound<'py, PyArray1<f32>> {
    PyArray1::from_slice(py, v)
}

/// A `(n, d)` `float32` numpy matrix from rows that must all have length `d`.
pub fn matrix_to_numpy<'py>(py: Python<'py>, rows: &[Vec<f32>]) -> Result<Bound<'py, PyArray2<f32>>> {
    let d = rows.first().map_or(0, Vec::len);
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != d) {
        return Err(RagError::DimensionMismatch { context: format!("vector #{i} of a batch"), expected: d, actual: r.len() });
    }
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    PyArray1::from_vec(py, flat).reshape([rows.len(), d]).py_context(py)
}

/// Rows of a 2-D array-like (numpy of any float dtype, torch tensor on CPU, nested lists),
/// converted once by `numpy.asarray(x, dtype=float32)`.
pub fn matrix_from_py(py: Python<'_>, obj: &Bound<'_, PyAny>) -> Result<Vec<Vec<f32>>> {
    let np = crate::import(py, "numpy")?;
    let arr = np.getattr("asarray").and_then(|f| f.call1((obj, np.getattr("float32")?))).py_context(py)?;
    let arr = np.getattr("ascontiguousarray").and_then(|f| f.call1((arr,))).py_context(py)?;
    let arr = arr
        .cast_into::<PyArray2<f32>>()
        .map_err(|e| RagError::internal_from("expected a 2-D float32 array from Python", e.to_string()))?;
    let (n, d) = (arr.shape()[0], arr.shape()[1]);
    let ro = arr.readonly();
    let flat = ro.as_slice().map_err(|e| RagError::internal_from("a non-contiguous array from Python", e.to_string()))?;
    Ok(if d == 0 { vec![Vec::new(); n] } else { flat.chunks_exact(d).map(<[f32]>::to_vec).collect() })
}

/// One vector from a 1-D array-like.
pub fn vector_from_py(py: Python<'_>, obj: &Bound<'_, PyAny>) -> Result<Vec<f32>> {
    let np = crate::import(py, "numpy")?;
    let arr = np.getattr("asarray").and_then(|f| f.call1((obj, np.getattr("float32")?))).py_context(py)?;
    let arr = arr
        .cast_into::<PyArray1<f32>>()
        .map_err(|e| RagError::internal_from("expected a 1-D float32 array from Python", e.to_string()))?;
    arr.to_vec().map_err(|e| RagError::internal_from("a non-contiguous array from Python", e.to_string()))
}

/// A typed metadata value as a Python object (`int`, `float`, `bool`, `str`, `list[str]`).
pub fn metadata_value_to_py<'py>(py: Python<'py>, v: &MetadataValue) -> Result<Bound<'py, PyAny>> {
    let obj = match v {
        MetadataValue::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        MetadataValue::Int(i) => PyInt::new(py, *i).into_any(),
        MetadataValue::Float(f) => PyFloat::new(py, *f).into_any(),
        MetadataValue::Str(s) => PyString::new(py, s).into_any(),
        MetadataValue::StrList(l) => PyList::new(py, l).py_context(py)?.into_any(),
    };
    Ok(obj)
}

/// A metadata map as a Python dict.
pub fn metadata_to_py<'py>(py: Python<'py>, m: &Metadata) -> Result<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in m {
        d.set_item(k, metadata_value_to_py(py, v)?).py_context(py)?;
    }
    Ok(d)
}

/// A Python value as typed metadata; `None` for values metadata cannot hold (None, dicts, ...).
pub fn metadata_value_from_py(v: &Bound<'_, PyAny>) -> Option<MetadataValue> {
    // bool before int: Python's bool is a subclass of int.
    if v.is_instance_of::<PyBool>() {
        return v.extract::<bool>().ok().map(MetadataValue::Bool);
    }
    if v.is_instance_of::<PyInt>() {
        return v.extract::<i64>().ok().map(MetadataValue::Int);
    }
    if v.is_instance_of::<PyFloat>() {
        return v.extract::<f64>().ok().map(MetadataValue::Float);
    }
    if v.is_instance_of::<PyString>() {
        return v.extract::<String>().ok().map(MetadataValue::Str);
    }
    if v.is_instance_of::<PyList>() {
        return v.extract::<Vec<String>>().ok().map(MetadataValue::StrList);
    }
    None
}

/// A Python dict as typed metadata, skipping keys in `skip` and values metadata cannot hold.
pub fn metadata_from_py(d: &Bound<'_, PyAny>, skip: &[&str]) -> Metadata {
    let mut m = Metadata::new();
    if let Ok(d) = d.cast::<PyDict>() {
        for (k, v) in d.iter() {
            let Ok(k) = k.extract::<String>() else { continue };
            if skip.contains(&k.as_str()) {
                continue;
            }
            if let Some(v) = metadata_value_from_py(&v) {
                m.insert(k, v);
            }
        }
    }
    m
}

/// A JSON value as the equivalent Python object (dict, list, str, int, float, bool, None):
/// filters are built as JSON in Rust and handed to each client in its own shape.
pub fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> Result<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => PyInt::new(py, i).into_any(),
            (None, Some(f)) => PyFloat::new(py, f).into_any(),
            _ => PyString::new(py, &n.to_string()).into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let items = a.iter().map(|x| json_to_py(py, x)).collect::<Result<Vec<_>>>()?;
            PyList::new(py, items).py_context(py)?.into_any()
        }
        Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?).py_context(py)?;
            }
            d.into_any()
        }
    })
}

/// A typed metadata value as JSON (for filter translation).
pub fn metadata_value_to_json(v: &MetadataValue) -> serde_json::Value {
    match v {
        MetadataValue::Bool(b) => (*b).into(),
        MetadataValue::Int(i) => (*i).into(),
        MetadataValue::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number),
        MetadataValue::Str(s) => s.clone().into(),
        MetadataValue::StrList(l) => l.clone().into(),
    }
}
