//! The embedded interpreter, started from the project's venv through the runtime crate.
//! These tests need `make setup`; they fail (never skip) without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use pyo3::prelude::*;
use rag_core::RagError;
use rag_python::convert::{matrix_from_py, matrix_to_numpy, metadata_from_py, metadata_to_py, vector_from_py, vector_to_numpy};
use rag_python::{PyResultExt, import, runtime};

#[tokio::test]
async fn starts_from_the_venv_and_imports_the_stack() {
    let rt = runtime().unwrap();
    let venv = rt.venv().to_owned();
    assert!(venv.join("pyvenv.cfg").exists());
    let (prefix, base) = rt
        .run(|py| {
            let sys = import(py, "sys")?;
            let prefix: String = sys.getattr("prefix").and_then(|p| p.extract()).py_context(py)?;
            let base: String = sys.getattr("base_prefix").and_then(|p| p.extract()).py_context(py)?;
            Ok((prefix, base))
        })
        .await
        .unwrap();
    assert_eq!(std::path::Path::new(&prefix), venv, "sys.prefix is the venv");
    assert_ne!(prefix, base);
    assert_eq!(rt.version(), rag_python::venv::venv_python_version(&venv).unwrap(), "the venv's libpython, not Debian's");
    // Every backend package imports, and from the venv (not from a system site-packages).
    let files = rt
        .run(|py| {
            let mut out = Vec::new();
            for m in ["dspy", "chromadb", "qdrant_client", "pinecone", "sentence_transformers", "numpy", "openai"] {
                let module = import(py, m)?;
                let file: String = module.getattr("__file__").and_then(|v| v.extract()).py_context(py)?;
                out.push((m.to_owned(), file));
            }
            Ok(out)
        })
        .await
        .unwrap();
    let venv_real = venv.canonicalize().unwrap();
    for (m, file) in &files {
        let file = std::path::Path::new(file).canonicalize().unwrap();
        assert!(file.starts_with(&venv_real), "{m} imported from {} instead of the venv", file.display());
    }
    // C extensions import (the PYTHONPATH-only trap breaks numpy's datetime capsule).
    rt.run(|py| {
        py.run(c"import numpy as np; assert np.array(['2020-01-01'], dtype='datetime64[D]').shape == (1,)", None, None)
            .py_context(py)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn python_exceptions_become_typed_errors_with_tracebacks() {
    let rt = runtime().unwrap();
    let err = rt
        .run(|py| {
            let code = c"
def inner(x):
    raise ValueError(f'bad value {x}')
def outer():
    inner(42)
";
            let m = pyo3::types::PyModule::from_code(py, code, c"user_code.py", c"user_code").py_context(py)?;
            m.getattr("outer").and_then(|f| f.call0()).py_context(py)?;
            Ok(())
        })
        .await
        .unwrap_err();
    match err {
        RagError::Python { exc_type, classes, message, traceback } => {
            assert_eq!(exc_type, "ValueError");
            assert_eq!(classes, ["ValueError", "Exception", "BaseException", "object"], "the MRO, for classification by class");
            assert_eq!(message, "bad value 42");
            assert!(traceback.contains("user_code.py") && traceback.contains("in inner"), "{traceback}");
        }
        other => panic!("expected RagError::Python, got {other:?}"),
    }
    // A qualified exception type from a package.
    let err = rt
        .run(|py| {
            py.run(c"import json; json.loads('{')", None, None).py_context(py)?;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(&err, RagError::Python { exc_type, .. } if exc_type == "json.decoder.JSONDecodeError"), "{err:?}");
}

#[tokio::test]
async fn a_missing_package_names_the_package_and_the_setup_command() {
    let err = runtime().unwrap().run(|py| import(py, "surely_not_installed_pkg").map(|_| ())).await.unwrap_err();
    match &err {
        RagError::PythonPackageMissing { package, setup_command, .. } => {
            assert_eq!(package, "surely_not_installed_pkg");
            assert_eq!(setup_command, "make setup");
        }
        other => panic!("expected PythonPackageMissing, got {other:?}"),
    }
    assert!(err.to_string().contains("run `make setup`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_work_does_not_stall_the_async_runtime() {
    let rt = runtime().unwrap();
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t2 = ticks.clone();
    let ticker = tokio::spawn(async move {
        let mut iv = tokio::time::interval(Duration::from_millis(10));
        for _ in 0..30 {
            iv.tick().await;
            t2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let start = Instant::now();
    rt.run(|py| py.run(c"import time; time.sleep(0.2)", None, None).py_context(py)).await.unwrap();
    let during = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(during >= 10, "the executor kept ticking during the Python call ({during} ticks)");
    ticker.abort();
}

#[tokio::test]
async fn concurrent_calls_and_nested_calls_complete() {
    let rt = runtime().unwrap();
    let results = futures::future::join_all((0..64).map(|i| {
        rt.run(move |py| {
            let v: i64 = py
                .eval(&std::ffi::CString::new(format!("{i} * 2")).unwrap(), None, None)
                .and_then(|x| x.extract())
                .py_context(py)?;
            Ok(v)
        })
    }))
    .await;
    let values: Vec<i64> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(values, (0..64).map(|i| i * 2).collect::<Vec<_>>());
    // A job that itself enters the runtime (as Python calling back into Rust does) runs inline
    // rather than deadlocking behind itself.
    let nested = rt
        .run(|_py| {
            let inner =
                runtime()?.run_blocking(|py| py.eval(c"7", None, None).and_then(|x| x.extract::<i64>()).py_context(py))?;
            Ok(inner + 1)
        })
        .await
        .unwrap();
    assert_eq!(nested, 8);
}

#[tokio::test]
async fn vectors_cross_as_numpy_and_metadata_keeps_its_types() {
    let rt = runtime().unwrap();
    let out = rt
        .run(|py| {
            let v: Vec<f32> = (0..384).map(|i| i as f32 * 0.5).collect();
            let arr = vector_to_numpy(py, &v);
            let dtype: String = arr.getattr("dtype").and_then(|d| d.str()).map(|s| s.to_string()).py_context(py)?;
            assert_eq!(dtype, "float32");
            let back = vector_from_py(py, arr.as_any())?;
            assert_eq!(back, v);
            let m = matrix_to_numpy(py, &[vec![1.0, 2.0], vec![3.0, 4.0]])?;
            let doubled = m.call_method1("__mul__", (2.0f64,)).py_context(py)?;
            let rows = matrix_from_py(py, &doubled)?;
            assert_eq!(rows, vec![vec![2.0, 4.0], vec![6.0, 8.0]]);
            assert!(matrix_to_numpy(py, &[vec![1.0], vec![1.0, 2.0]]).is_err());
            let mut meta = rag_core::Metadata::new();
            meta.insert("year".into(), 2020.into());
            meta.insert("score".into(), 0.25.into());
            meta.insert("ok".into(), true.into());
            meta.insert("tags".into(), rag_core::MetadataValue::StrList(vec!["a".into()]));
            let d = metadata_to_py(py, &meta)?;
            let types: String = py
                .eval(c"lambda d: ','.join(type(d[k]).__name__ for k in sorted(d))", None, None)
                .and_then(|f| f.call1((d.clone(),)))
                .and_then(|s| s.extract())
                .py_context(py)?;
            assert_eq!(types, "bool,float,list,int");
            Ok(metadata_from_py(d.as_any(), &[]) == meta)
        })
        .await
        .unwrap();
    assert!(out, "metadata round-trips with its types");
}
