//! [`DspyGenerator`]: ChainOfThought as a [`Generator`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use rag_core::{Generation, GenerationEvent, GenerationRequest, Generator, RagError, Result};
use rag_python::PyResultExt;
use rag_python::pyo3::prelude::*;

use crate::runtime::lm::{LmConfig, make_lm};
use crate::runtime::{classify, ops};

/// Builder for [`DspyGenerator`].
#[derive(Debug, Clone)]
pub struct DspyGeneratorBuilder {
    lm: LmConfig,
    signature: String,
    cache_dir: Option<PathBuf>,
    program: Option<PathBuf>,
}

impl DspyGeneratorBuilder {
    fn lm_field(&mut self, f: impl FnOnce(&mut LmConfig)) -> &mut Self {
        f(&mut self.lm);
        self
    }
    /// DSPy signature (default `"context, question -> answer"`); it must take `context` and `question`.
    pub fn signature(mut self, s: impl Into<String>) -> Self {
        self.signature = s.into();
        self
    }
    /// Base URL of an OpenAI-compatible server.
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.lm_field(|l| {
            if let LmConfig::Lm { api_base, .. } = l {
                *api_base = Some(url)
            }
        });
        self
    }
    /// API key (else litellm reads the provider's variable, e.g. `OPENAI_API_KEY`). Never logged.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.lm_field(|l| {
            if let LmConfig::Lm { api_key, .. } = l {
                *api_key = Some(key)
            }
        });
        self
    }
    /// Max tokens per answer.
    pub fn max_tokens(mut self, n: usize) -> Self {
        self.lm_field(|l| {
            if let LmConfig::Lm { max_tokens, .. } = l {
                *max_tokens = n
            }
        });
        self
    }
    /// Temperature.
    pub fn temperature(mut self, t: f32) -> Self {
        self.lm_field(|l| {
            if let LmConfig::Lm { temperature, .. } = l {
                *temperature = t
            }
        });
        self
    }
    /// Request timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.lm_field(|l| {
            if let LmConfig::Lm { timeout, .. } = l {
                *timeout = d
            }
        });
        self
    }
    /// Retries (litellm's, with its backoff).
    pub fn retries(mut self, n: u32) -> Self {
        self.lm_field(|l| {
            if let LmConfig::Lm { retries, .. } = l {
                *retries = n
            }
        });
        self
    }
    /// DSPy's response cache on or off (default on).
    pub fn cache(mut self, on: bool) -> Self {
        self.lm_field(|l| {
            if let LmConfig::Lm { cache, .. } = l {
                *cache = on
            }
        });
        self
    }
    /// Answer with the compiled answer predictor (demos, instructions) of a program saved by
    /// `rag optimize` (the pipeline's own retrieval stays; a multi-hop program's query writers
    /// are not used here, `rag query --program` runs the whole program).
    pub fn program(mut self, path: PathBuf) -> Self {
        self.program = Some(path);
        self
    }
    /// Where DSPy keeps its disk cache (`DSPY_CACHEDIR`), if it has not started yet.
    pub fn cache_dir(mut self, dir: PathBuf) -> Self {
        self.cache_dir = Some(dir);
        self
    }

    /// Creates the LM and the ChainOfThought program.
    pub async fn build(self) -> Result<DspyGenerator> {
        if let Some(dir) = &self.cache_dir {
            crate::runtime::set_cache_dir(dir.clone()).await?;
        }
        let (lm, signature, compiled) = (self.lm.clone(), self.signature.clone(), self.program.clone());
        let (lm_obj, program) = rag_python::runtime()?
            .run(move |py| {
                let lm_obj = make_lm(py, &lm)?;
                let program = ops(py)?.getattr("chain_of_thought").and_then(|f| f.call1((&signature,))).py_context(py).map_err(
                    |e| match e {
                        RagError::Python { message, .. } => RagError::invalid_input(
                            "signature",
                            format!("`{signature}` is not a valid DSPy signature: {message}"),
                        ),
                        other => other,
                    },
                )?;
                if let Some(path) = &compiled {
                    if !path.is_file() {
                        return Err(RagError::not_found(
                            format!("compiled DSPy program {}", path.display()),
                            Some("generator.program names a program file that `rag_dspy::optimize` saved"),
                        ));
                    }
                    ops(py)?
                        .getattr("load_answer_predictor")
                        .and_then(|f| f.call1((&program, path.display().to_string())))
                        .py_context(py)?;
                }
                Ok((lm_obj, program.unbind()))
            })
            .await?;
        Ok(DspyGenerator {
            lm: Arc::new(lm_obj),
            program: Arc::new(program),
            name: match &self.program {
                Some(p) => format!(
                    "dspy:ChainOfThought({}, compiled {})",
                    self.lm.label(),
                    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                ),
                None => format!("dspy:ChainOfThought({})", self.lm.label()),
            },
        })
    }
}

/// ChainOfThought over the numbered context, with a per-generator LM.
#[derive(Clone)]
pub struct DspyGenerator {
    lm: Arc<Py<PyAny>>,
    program: Arc<Py<PyAny>>,
    name: String,
}

impl std::fmt::Debug for DspyGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DspyGenerator").field("name", &self.name).finish()
    }
}

impl DspyGenerator {
    /// The messages of this generator's last LM call (to see the prompt a compiled program sends).
    pub async fn last_prompt(&self) -> Result<String> {
        let lm = self.lm.clone();
        rag_python::runtime()?
            .run(move |py| {
                ops(py)?.getattr("last_prompt").and_then(|f| f.call1((lm.bind(py),))).and_then(|s| s.extract()).py_context(py)
            })
            .await
    }

    /// A builder for an LM by litellm model string.
    pub fn builder(model: impl Into<String>) -> DspyGeneratorBuilder {
        DspyGeneratorBuilder {
            lm: LmConfig::model(model),
            signature: "context, question -> answer".into(),
            cache_dir: None,
            program: None,
        }
    }

    /// A builder for any [`LmConfig`] (e.g. [`LmConfig::Dummy`] in tests).
    pub fn with_lm(lm: LmConfig) -> DspyGeneratorBuilder {
        DspyGeneratorBuilder { lm, signature: "context, question -> answer".into(), cache_dir: None, program: None }
    }
}

/// Turns `rag_dspy.run_cot`'s dict into a [`Generation`].
fn to_generation(d: &Bound<'_, PyAny>, request: &GenerationRequest, name: &str) -> Result<Generation> {
    let py = d.py();
    let answer: String = d.get_item("answer").and_then(|a| a.extract()).py_context(py)?;
    let reasoning: Option<String> =
        d.get_item("reasoning").ok().filter(|r| !r.is_none()).and_then(|r| r.str().ok().map(|s| s.to_string()));
    let cited: Vec<usize> = d.get_item("cited").and_then(|c| c.extract()).py_context(py)?;
    // The answer's [n] citations, else every passage it was given.
    let used_context_ids = if cited.is_empty() {
        request.context.iter().map(|p| p.id.clone()).collect()
    } else {
        cited.iter().filter_map(|i| request.context.get(i - 1).map(|p| p.id.clone())).collect()
    };
    Ok(Generation { answer, reasoning, used_context_ids, generator: name.to_owned() })
}

/// Receives streamed pieces from Python.
///
/// Rust closes it ([`Emitter::close`]) as soon as the Python call returns: an exception's
/// traceback holds the frames that reference the emitter in a reference cycle, so Python might
/// free it only at its next garbage collection, and the stream's receiver, waiting for every
/// sender to go, would never end.
#[pyclass(frozen)]
struct Emitter {
    tx: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<Result<GenerationEvent>>>>,
}

impl Emitter {
    fn new(tx: tokio::sync::mpsc::Sender<Result<GenerationEvent>>) -> Self {
        Self { tx: std::sync::Mutex::new(Some(tx)) }
    }

    /// The sender, while open. A poisoned lock still guards a valid `Option` (nothing in its
    /// critical sections can leave it half-changed), so it is used as is: closing must never
    /// fail, or the stream would stay open.
    fn sender(&self) -> std::sync::MutexGuard<'_, Option<tokio::sync::mpsc::Sender<Result<GenerationEvent>>>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the sender: later calls send nothing.
    fn close(&self) {
        self.sender().take();
    }
}

#[pymethods]
impl Emitter {
    fn __call__(&self, py: Python<'_>, kind: &str, text: String) {
        if kind != "token" {
            return;
        }
        let Some(tx) = self.sender().clone() else { return };
        // A reader slower than the model fills the channel; waiting for it must not hold the
        // GIL, or every other Python call of the process would wait on one slow client. The
        // receiver may be gone (the caller stopped listening): nothing to do then.
        let _ = py.detach(move || tx.blocking_send(Ok(GenerationEvent::Token(text))));
    }
}

#[async_trait]
impl Generator for DspyGenerator {
    async fn generate(&self, request: GenerationRequest) -> Result<Generation> {
        let (lm, program, name) = (self.lm.clone(), self.program.clone(), self.name.clone());
        rag_python::runtime()?
            .run(move |py| {
                let texts: Vec<&str> = request.context.iter().map(|p| p.text.as_str()).collect();
                let out = ops(py)?
                    .getattr("run_cot")
                    .and_then(|f| f.call1((program.bind(py), lm.bind(py), texts, &request.question)))
                    .py_context(py)?;
                to_generation(&out, &request, &name)
            })
            .await
            .map_err(classify)
    }

    async fn generate_stream(&self, request: GenerationRequest) -> Result<BoxStream<'static, Result<GenerationEvent>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let (lm, program, name) = (self.lm.clone(), self.program.clone(), self.name.clone());
        let runtime = rag_python::runtime()?;
        let done_tx = tx.clone();
        tokio::spawn(async move {
            let result = runtime
                .run(move |py| {
                    let texts: Vec<&str> = request.context.iter().map(|p| p.text.as_str()).collect();
                    let emitter = Py::new(py, Emitter::new(tx)).py_context(py)?;
                    let out = ops(py)?
                        .getattr("stream_cot")
                        .and_then(|f| f.call1((program.bind(py), lm.bind(py), texts, &request.question, emitter.clone_ref(py))));
                    emitter.get().close();
                    to_generation(&out.py_context(py)?, &request, &name)
                })
                .await
                .map_err(classify);
            let _ = done_tx.send(result.map(GenerationEvent::Final)).await;
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

impl crate::GeneratorSettings {
    /// The LM `lm` names, as DSPy programs take it (`local` starts llama.cpp's server in this
    /// process first); `None` without `lm`.
    pub async fn lm_config(&self) -> Result<Option<LmConfig>> {
        let Some(lm) = self.lm.clone() else { return Ok(None) };
        // `local`: llama.cpp's server in this process, then DSPy calls it like any
        // OpenAI-compatible server (`hosted_vllm/` sends `max_tokens`, which llama.cpp honours).
        let (model, api_base, api_key) = if lm == "local" {
            let path = self.local_model.clone().or_else(crate::default_local_model).ok_or_else(|| {
                RagError::config("generator.lm = local needs generator.local_model (a GGUF file), or run `make setup`")
            })?;
            let local = crate::LocalModel {
                path,
                context: self.local_context,
                threads: self.local_threads,
                parallel: self.local_parallel,
            };
            ("hosted_vllm/local".to_owned(), Some(format!("{}/v1", local.start().await?)), Some("local".to_owned()))
        } else {
            (lm, self.api_base.clone(), std::env::var(&self.api_key_env).ok())
        };
        Ok(Some(LmConfig::Lm {
            model,
            api_base,
            api_key,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            retries: self.retries,
            timeout: Duration::from_secs(self.timeout_secs),
            cache: self.cache,
        }))
    }
}

impl DspyGenerator {
    /// The generator `settings` describe (`None` without an LM: the pipeline answers
    /// extractively), with DSPy's response cache under `cache_dir`: the one way the
    /// configuration builds it.
    pub async fn from_settings(settings: &crate::GeneratorSettings, cache_dir: PathBuf) -> Result<Option<Self>> {
        let Some(lm) = settings.lm_config().await? else { return Ok(None) };
        let mut b = Self::with_lm(lm).signature(&settings.signature).cache_dir(cache_dir);
        if let Some(p) = &settings.program {
            b = b.program(p.clone());
        }
        b.build().await.map(Some)
    }
}
