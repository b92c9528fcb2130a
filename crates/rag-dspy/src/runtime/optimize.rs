//! `rag optimize`: DSPy optimisers compiling a program whose retrieval is the Rust retriever,
//! scored by a metric on a devset, saved in DSPy's own JSON format; and [`CompiledProgram`],
//! which loads such a file and answers with it.
//!
//! The saved file is what `module.save(path)` writes (each predictor's demos, signature and
//! instructions), plus one key of ours, `rag_program`, saying how to rebuild the module before
//! DSPy's `load` fills it in ([`ProgramSpec`]); DSPy itself ignores that key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rag_core::{RagError, Result, Retriever};
use rag_python::PyResultExt;
use rag_python::pyo3::prelude::*;
use serde::{Deserialize, Serialize};

use crate::runtime::lm::LmConfig;
use crate::runtime::modules::{Bound3, RagAnswer};
use crate::runtime::{classify, ops};

/// One training or evaluation example (see [`rag_core::QaExample`]).
pub type Example = rag_core::QaExample;

/// Reads examples from JSONL; a bad line names the file and the line.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    rag_core::read_qa_examples(path)
}

rag_core::choice! {
    /// Which DSPy optimiser compiles the program.
    Optimizer {
        /// `BootstrapFewShot`: demos from the program's own successful runs on the trainset.
        Bootstrap = "bootstrap",
        /// `BootstrapFewShotWithRandomSearch`: several bootstrapped candidates, the best on the devset kept.
        RandomSearch = "random-search",
        /// `LabeledFewShot`: training examples as demos.
        Labeled = "labeled",
        /// `MIPROv2` (light): instructions and demos searched together (many LM calls).
        Mipro = "mipro",
    }
}

rag_core::choice! {
    /// What a program is scored by.
    Metric {
        /// Answer exact match (SQuAD normalisation).
        ExactMatch = "em",
        /// Answer token F1 (SQuAD normalisation).
        F1 = "f1",
        /// Share of the gold documents the answer cites.
        CitationRecall = "citation-recall",
        /// Share of the gold documents retrieved across all hops.
        RetrievalRecall = "retrieval-recall",
    }
}

impl Metric {
    /// F1 when every example has an answer, else citation recall when every example has gold
    /// documents; otherwise an error saying what the examples lack.
    pub fn auto(examples: &[Example]) -> Result<Self> {
        if examples.iter().all(|e| e.answer.as_deref().is_some_and(|a| !a.trim().is_empty())) {
            return Ok(Self::F1);
        }
        if examples.iter().all(|e| !e.doc_ids.is_empty()) {
            return Ok(Self::CitationRecall);
        }
        Err(RagError::invalid_input(
            "trainset",
            "no metric fits: give every example an `answer` (for em / f1) or `doc_ids` (for citation-recall / retrieval-recall)",
        ))
    }

    /// Whether `examples` carry what this metric reads.
    pub fn check(self, examples: &[Example], what: &str) -> Result<()> {
        let needs_answer = matches!(self, Self::ExactMatch | Self::F1);
        if let Some(i) = examples.iter().position(|e| if needs_answer { e.answer.is_none() } else { e.doc_ids.is_empty() }) {
            return Err(RagError::invalid_input(
                format!("{what} example {}", i + 1),
                format!("metric `{self}` needs `{}` on every example", if needs_answer { "answer" } else { "doc_ids" }),
            ));
        }
        Ok(())
    }
}

/// Which program is compiled: a built-in one or a class in a Python file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProgramSpec {
    /// [`crate::BasicRag`]: retrieve `k`, then ChainOfThought.
    Basic {
        /// Passages per question.
        k: usize,
    },
    /// [`crate::MultiHopRag`]: `hops` generated queries of `k` passages each, then ChainOfThought.
    Multihop {
        /// Hops.
        hops: usize,
        /// Passages per hop.
        k: usize,
    },
    /// A `dspy.Module` subclass `class` in the file at `path`, built with `args`.
    File {
        /// The `.py` file.
        path: PathBuf,
        /// The class name.
        class: String,
        /// Constructor keyword arguments.
        #[serde(default)]
        args: serde_json::Value,
    },
}

impl ProgramSpec {
    /// `basic`, `multihop`, or `FILE.py:Class` (`k` and `hops` for the built-in ones).
    pub fn parse(s: &str, k: usize, hops: usize) -> Result<Self> {
        match s {
            "basic" => Ok(Self::Basic { k }),
            "multihop" => Ok(Self::Multihop { hops, k }),
            other => {
                let (path, class) = file_and_name(
                    other,
                    "--program",
                    "DSPy program file",
                    "FILE.py:Class",
                    "`basic`, `multihop` or `FILE.py:Class`",
                )?;
                Ok(Self::File { path, class, args: serde_json::json!({}) })
            }
        }
    }

    /// LM calls one answer makes: one for BasicRag, one per hop plus the answer for MultiHopRag;
    /// a program from a file is assumed to make at most 4 (its forward is opaque from here).
    pub fn lm_calls(&self) -> u32 {
        match self {
            Self::Basic { .. } => 1,
            Self::Multihop { hops, .. } => *hops as u32 + 1,
            Self::File { .. } => 4,
        }
    }

    fn default_k(&self) -> usize {
        match self {
            Self::Basic { k } | Self::Multihop { k, .. } => *k,
            Self::File { .. } => 5,
        }
    }
}

/// A metric of your own: `function(example, prediction, trace=None) -> float | bool` in a Python
/// file (DSPy's metric convention; `example` has `question`, `answer`, `doc_ids`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricFn {
    /// The `.py` file.
    pub path: PathBuf,
    /// The function's name.
    pub function: String,
}

impl MetricFn {
    /// `FILE.py:function`.
    pub fn parse(s: &str) -> Result<Self> {
        let (path, function) = file_and_name(s, "--metric-fn", "metric file", "FILE.py:function", "`FILE.py:function`")?;
        Ok(Self { path, function })
    }
}

/// `FILE.py:name` as (file, name), the file present. `flag`, `what`, `form` and `expected` word
/// the errors: a malformed value names the flag and what it should be; a missing file names it.
fn file_and_name(s: &str, flag: &str, what: &str, form: &str, expected: &str) -> Result<(PathBuf, String)> {
    let Some((path, name)) = s.rsplit_once(':').filter(|(p, n)| !p.is_empty() && !n.is_empty()) else {
        return Err(RagError::invalid_input(flag, format!("`{s}` is not {expected}")));
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(RagError::not_found(format!("{what} {}", path.display()), Some(&format!("{flag} {form}"))));
    }
    Ok((path, name.to_owned()))
}

/// How an optimisation runs.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizeOptions {
    /// The optimiser.
    pub optimizer: Optimizer,
    /// The built-in metric (its name is reported; ignored when `metric_fn` is set).
    pub metric: Metric,
    /// A metric of your own, used instead of the built-in one.
    pub metric_fn: Option<MetricFn>,
    /// Most demos per predictor.
    pub max_demos: usize,
    /// Random seed (optimisers that sample).
    pub seed: u64,
}

/// What an optimisation did, saved beside the program as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizeReport {
    /// The program compiled.
    pub program: ProgramSpec,
    /// The optimiser.
    pub optimizer: Optimizer,
    /// The built-in metric (see `metric_fn`).
    pub metric: Metric,
    /// The user's metric, when one was used instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_fn: Option<MetricFn>,
    /// The LM (model string).
    pub lm: String,
    /// Metric on the devset before compiling.
    pub before: f64,
    /// Metric on the devset after compiling.
    pub after: f64,
    /// Devset examples the program failed on (scored 0) before and after.
    pub failures: (u64, u64),
    /// Demos in the compiled program (all predictors).
    pub demos: u64,
    /// Training examples.
    pub train: usize,
    /// Devset examples.
    pub dev: usize,
    /// Wall time, scoring included.
    pub seconds: f64,
    /// The compiled program (DSPy's JSON format).
    pub saved: PathBuf,
}

/// Compiles `program` with `lm`, retrieving through `retriever`, on `train`; scores it on `dev`
/// before and after; saves it at `out` and the report beside it (`out` with `.report.json`).
pub async fn optimize(
    program: ProgramSpec,
    retriever: Arc<dyn Retriever>,
    lm: LmConfig,
    train: Vec<Example>,
    dev: Vec<Example>,
    options: OptimizeOptions,
    out: &Path,
) -> Result<OptimizeReport> {
    if train.is_empty() || dev.is_empty() {
        return Err(RagError::invalid_input("trainset", "optimising needs at least one training and one devset example"));
    }
    if options.metric_fn.is_none() {
        options.metric.check(&train, "trainset")?;
        options.metric.check(&dev, "devset")?;
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| RagError::io(dir, e))?;
    }
    let bound = build(&program, retriever, lm.clone()).await?;
    let spec = serde_json::to_value(&program).map_err(|e| RagError::json("the program spec", e))?;
    let (train_json, dev_json) = (to_json(&train)?, to_json(&dev)?);
    let out_s = out.display().to_string();
    let (module, lm_py, rm) = (bound.module.clone(), bound.lm.clone(), bound.rm.clone());
    let o = options.clone();
    let result: String = rag_python::runtime()?
        .run(move |py| {
            let conv = |v: &serde_json::Value| rag_python::convert::json_to_py(py, v);
            let r = ops(py)?
                .getattr("optimize")
                .and_then(|f| {
                    f.call1((
                        module.bind(py),
                        lm_py.bind(py),
                        rm.bind(py),
                        conv(&train_json).ok(),
                        conv(&dev_json).ok(),
                        o.optimizer.as_str(),
                        o.metric.as_str(),
                        o.max_demos,
                        o.seed,
                        &out_s,
                        conv(&spec).ok(),
                        o.metric_fn.as_ref().map(|m| (m.path.display().to_string(), m.function.clone())),
                    ))
                })
                .py_context(py)?;
            rag_python::import(py, "json")?.getattr("dumps").and_then(|d| d.call1((r,))).and_then(|s| s.extract()).py_context(py)
        })
        .await
        .map_err(classify)?;
    let r: serde_json::Value = serde_json::from_str(&result).map_err(|e| RagError::json("the optimiser's result", e))?;
    let num = |k: &str| r.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    let report = OptimizeReport {
        program,
        optimizer: options.optimizer,
        metric: options.metric,
        metric_fn: options.metric_fn.clone(),
        lm: lm.label(),
        before: num("before"),
        after: num("after"),
        failures: (num("failures_before") as u64, num("failures_after") as u64),
        demos: num("demos") as u64,
        train: train.len(),
        dev: dev.len(),
        seconds: num("seconds"),
        saved: out.to_owned(),
    };
    let path = report_path(out);
    let json = serde_json::to_string_pretty(&report).map_err(|e| RagError::json("the optimisation report", e))?;
    std::fs::write(&path, json).map_err(|e| RagError::io(&path, e))?;
    Ok(report)
}

/// Where the report of a program saved at `out` goes: `out` with `.report.json`.
pub fn report_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".report.json");
    PathBuf::from(s)
}

fn to_json(examples: &[Example]) -> Result<serde_json::Value> {
    serde_json::to_value(examples).map_err(|e| RagError::json("the examples", e))
}

async fn build(program: &ProgramSpec, retriever: Arc<dyn Retriever>, lm: LmConfig) -> Result<Bound3> {
    let spec = serde_json::to_value(program).map_err(|e| RagError::json("the program spec", e))?;
    Bound3::new(retriever, lm, program.default_k(), move |py, ops| {
        let spec = rag_python::convert::json_to_py(py, &spec)?;
        ops.getattr("build_program").and_then(|f| f.call1((spec,))).py_context(py)
    })
    .await
}

/// A program compiled by [`optimize`] (or saved by DSPy with a `rag_program` key), loaded and
/// ready to answer with the Rust retriever.
pub struct CompiledProgram {
    bound: Bound3,
    spec: ProgramSpec,
}

impl CompiledProgram {
    /// Loads the program saved at `path`: rebuilds its module from `rag_program`, then DSPy's
    /// `load` restores its demos and instructions.
    pub async fn load(path: &Path, retriever: Arc<dyn Retriever>, lm: LmConfig) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| RagError::io(path, e))?;
        let state: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| RagError::invalid_input(path.display().to_string(), format!("not a saved DSPy program (JSON): {e}")))?;
        let spec: ProgramSpec = match state.get("rag_program") {
            Some(s) => serde_json::from_value(s.clone()).map_err(|e| {
                RagError::invalid_input(path.display().to_string(), format!("its `rag_program` is not a program spec: {e}"))
            })?,
            None => {
                return Err(RagError::invalid_input(
                    path.display().to_string(),
                    "it has no `rag_program` key: save programs with `rag_dspy::optimize` (it records how to rebuild the module)",
                ));
            }
        };
        let bound = build(&spec, retriever, lm).await?;
        let (module, p) = (bound.module.clone(), path.display().to_string());
        rag_python::runtime()?
            .run(move |py| {
                ops(py)?.getattr("load_compiled").and_then(|f| f.call1((module.bind(py), &p))).py_context(py)?;
                Ok(())
            })
            .await?;
        Ok(Self { bound, spec })
    }

    /// The program's spec.
    pub fn spec(&self) -> &ProgramSpec {
        &self.spec
    }

    /// Answers `question` (within `timeout`).
    pub async fn answer(&self, question: &str, timeout: Duration) -> Result<RagAnswer> {
        tokio::time::timeout(timeout, self.bound.answer(question))
            .await
            .map_err(|_| RagError::Timeout { what: "the compiled DSPy program".into(), after: timeout })?
    }

    /// Demos per predictor, summed.
    pub async fn demos(&self) -> Result<usize> {
        let module = self.bound.module.clone();
        rag_python::runtime()?
            .run(move |py| {
                ops(py)?.getattr("demo_count").and_then(|f| f.call1((module.bind(py),))).and_then(|n| n.extract()).py_context(py)
            })
            .await
    }

    /// The messages of the LM's last call (to see the demos a compiled program sends).
    pub async fn last_prompt(&self) -> Result<String> {
        let lm = self.bound.lm.clone();
        rag_python::runtime()?
            .run(move |py| {
                ops(py)?.getattr("last_prompt").and_then(|f| f.call1((lm.bind(py),))).and_then(|s| s.extract()).py_context(py)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_fit_the_examples() {
        let ex = vec![
            Example { question: "q".into(), answer: None, doc_ids: vec!["1".into()] },
            Example { question: "r".into(), answer: Some("s".into()), doc_ids: vec!["2".into()] },
        ];
        assert_eq!(Metric::auto(&ex).unwrap(), Metric::CitationRecall, "not every example has an answer");
        let err = Metric::F1.check(&ex, "trainset").unwrap_err().to_string();
        assert!(err.contains("trainset example 1") && err.contains("answer"), "{err}");
        Metric::RetrievalRecall.check(&ex, "devset").unwrap();
    }

    #[test]
    fn choices_and_program_specs_parse_strictly() {
        assert_eq!("bootstrap".parse::<Optimizer>().unwrap(), Optimizer::Bootstrap);
        let err = "bootstrapp".parse::<Optimizer>().unwrap_err().to_string();
        assert!(err.contains("bootstrapp") && err.contains("random-search"), "{err}");
        assert_eq!(ProgramSpec::parse("multihop", 3, 2).unwrap(), ProgramSpec::Multihop { hops: 2, k: 3 });
        assert!(ProgramSpec::parse("nope.py:Cls", 3, 2).unwrap_err().to_string().contains("nope.py"));
        assert!(ProgramSpec::parse("basik", 3, 2).unwrap_err().to_string().contains("basik"));
        let spec = serde_json::to_value(ProgramSpec::Basic { k: 4 }).unwrap();
        assert_eq!(spec, serde_json::json!({"kind": "basic", "k": 4}));
    }
}
