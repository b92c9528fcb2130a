//! Per-call overhead of entering Python through the runtime crate, and of moving a 384-float
//! vector each way (numpy) compared with a Python list.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use pyo3::prelude::*;
use pyo3::types::PyList;
use rag_python::convert::{vector_from_py, vector_to_numpy};

fn bench(c: &mut Criterion) {
    let rt = rag_python::runtime().expect("python runtime (run `make setup`)");
    let tokio_rt = tokio::runtime::Runtime::new().unwrap();
    let noop: Py<PyAny> = rt.run_blocking(|py| Ok(py.eval(c"lambda: None", None, None).unwrap().unbind())).unwrap();
    let noop = std::sync::Arc::new(noop);

    let f = noop.clone();
    c.bench_function("runtime.run_blocking(no-op python call)", |b| {
        b.iter(|| {
            let f = f.clone();
            rt.run_blocking(move |py| {
                f.call0(py).unwrap();
                Ok(())
            })
            .unwrap()
        })
    });
    let f = noop.clone();
    c.bench_function("runtime.run(no-op python call).await", |b| {
        b.iter(|| {
            let f = f.clone();
            tokio_rt
                .block_on(rt.run(move |py| {
                    f.call0(py).unwrap();
                    Ok(())
                }))
                .unwrap()
        })
    });
    let v: Vec<f32> = (0..384).map(|i| i as f32).collect();
    Python::attach(|py| {
        c.bench_function("attached: python no-op call", |b| b.iter(|| noop.call0(py).unwrap()));
        c.bench_function("vec384 -> numpy", |b| b.iter(|| vector_to_numpy(py, &v)));
        let arr = vector_to_numpy(py, &v).into_any();
        c.bench_function("numpy384 -> vec", |b| b.iter(|| vector_from_py(py, &arr).unwrap()));
        c.bench_function("vec384 -> list", |b| b.iter(|| PyList::new(py, &v).unwrap()));
        let list = PyList::new(py, &v).unwrap().into_any();
        c.bench_function("list384 -> vec", |b| b.iter(|| list.extract::<Vec<f32>>().unwrap()));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
