# Python side of rag-dspy: DSPy programs whose retrieval is a Rust retriever, and helpers that
# run any program under a per-call `dspy.context`, so pipelines with different LMs never share
# DSPy's global settings.
import importlib.util
import os
import re
import sys

import dspy


def make_lm(spec):
    """An LM from a dict: {"kind": "dummy", "answers": [...]} or {"kind": "lm", "model": ..., ...}."""
    if spec["kind"] == "dummy":
        from dspy.utils import DummyLM
        return DummyLM(spec["answers"])
    kwargs = {k: v for k, v in spec.items() if k in ("api_base", "api_key", "max_tokens", "temperature", "num_retries", "cache", "timeout") and v is not None}
    return dspy.LM(spec["model"], **kwargs)


def number_passages(passages):
    return "\n\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))


CITATION = re.compile(r"\[(\d+)\]")


def cited(answer, n):
    """1-based passage numbers cited in the answer, in order of first citation."""
    out = []
    for m in CITATION.finditer(answer or ""):
        i = int(m.group(1))
        if 1 <= i <= n and i not in out:
            out.append(i)
    return out


WORD = re.compile(r"[a-z0-9]+")
STOP = {"the", "and", "for", "are", "was", "were", "with", "that", "this", "from", "into", "its", "not", "but", "has",
        "have", "had", "can", "may", "which", "their", "they", "than", "then", "also", "such", "these", "those", "been"}


def attributed(answer, passages):
    """Passages (1-based) holding at least half of the answer's content words: the citations of an
    answer whose model did not write any (small local models often do not)."""
    words = {w for w in WORD.findall((answer or "").lower()) if len(w) > 2 and w not in STOP}
    if not words:
        return []
    out = []
    for i, p in enumerate(passages):
        found = words & set(WORD.findall(str(p).lower()))
        if len(found) * 2 >= len(words):
            out.append(i + 1)
    return out


def citations(answer, reasoning, passages):
    """The answer's own [n] citations; else the reasoning's; else attribution by shared words."""
    n = len(passages)
    return cited(answer, n) or cited(reasoning, n) or attributed(answer, passages)


_LOCAL_SERVERS = {}


def start_local(path, n_ctx, threads):
    """Starts llama.cpp's OpenAI-compatible server in this process (xllamacpp), once per
    (model, context, threads); returns its base URL. It lives as long as the process."""
    key = (path, n_ctx, threads)
    if key not in _LOCAL_SERVERS:
        import xllamacpp
        p = xllamacpp.CommonParams()
        p.model.path = path
        p.n_ctx = n_ctx
        p.cpuparams.n_threads = threads
        p.verbosity = -1  # llama.cpp logs every request at length otherwise
        server = xllamacpp.Server(p)
        _LOCAL_SERVERS[key] = (server, server.listening_address.rstrip("/"))
    return _LOCAL_SERVERS[key][1]


def chain_of_thought(signature):
    return dspy.ChainOfThought(signature)


def run_cot(program, lm, context, question):
    with dspy.context(lm=lm):
        pred = program(context=number_passages(context), question=question)
    return {"answer": str(pred.get("answer", "")), "reasoning": pred.get("reasoning"),
            "cited": citations(str(pred.get("answer", "")), pred.get("reasoning"), context)}


def stream_cot(program, lm, context, question, emit):
    """Streams the answer field through `emit(kind, text)`; returns the final fields."""
    listener = dspy.streaming.StreamListener(signature_field_name="answer")
    streaming = dspy.streamify(program, stream_listeners=[listener], async_streaming=False)
    final = None
    with dspy.context(lm=lm):
        for item in streaming(context=number_passages(context), question=question):
            if isinstance(item, dspy.streaming.StreamResponse):
                emit("token", item.chunk)
            elif isinstance(item, dspy.Prediction):
                final = item
    if final is None:
        raise RuntimeError("the DSPy stream ended without a final prediction")
    return {"answer": str(final.get("answer", "")), "reasoning": final.get("reasoning"),
            "cited": citations(str(final.get("answer", "")), final.get("reasoning"), context)}


class GenerateSearchQuery(dspy.Signature):
    """Write a simple search query that will help answer a complex question."""

    context: str = dspy.InputField(desc="facts found so far; may be empty")
    question: str = dspy.InputField()
    query: str = dspy.OutputField()


class BasicRag(dspy.Module):
    """Retrieve k passages (through whatever rm is configured), then ChainOfThought."""

    def __init__(self, k=5, signature="context, question -> answer"):
        super().__init__()
        self.retrieve = dspy.Retrieve(k=k)
        self.generate = dspy.ChainOfThought(signature)

    def forward(self, question):
        passages = self.retrieve(question).passages
        pred = self.generate(context=number_passages(passages), question=question)
        return dspy.Prediction(answer=pred.answer, reasoning=pred.get("reasoning"), hops=[{"query": question, "passages": passages}], passages=passages)


class MultiHopRag(dspy.Module):
    """Per hop, generate a search query from the context so far, retrieve, de-duplicate; then answer."""

    def __init__(self, max_hops=2, k=3, signature="context, question -> answer"):
        super().__init__()
        self.max_hops = max_hops
        self.generate_query = [dspy.ChainOfThought(GenerateSearchQuery) for _ in range(max_hops)]
        self.retrieve = dspy.Retrieve(k=k)
        self.generate = dspy.ChainOfThought(signature)

    def forward(self, question):
        context, hops = [], []
        for hop in range(self.max_hops):
            query = self.generate_query[hop](context=number_passages(context), question=question).query
            passages = self.retrieve(query).passages
            hops.append({"query": query, "passages": passages})
            for p in passages:
                if p not in context:
                    context.append(p)
        pred = self.generate(context=number_passages(context), question=question)
        return dspy.Prediction(answer=pred.answer, reasoning=pred.get("reasoning"), hops=hops, passages=context)


def run_module(module, lm, rm, inputs):
    with dspy.context(lm=lm, rm=rm):
        return module(**inputs)


def load_program(path, class_name, kwargs):
    """Imports a user's DSPy program file and instantiates `class_name(**kwargs)`."""
    name = "rag_user_program_" + re.sub(r"\W", "_", os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a Python module from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise AttributeError(f"{path} defines no `{class_name}` (found: {', '.join(n for n in dir(module) if not n.startswith('_'))})")
    return cls(**kwargs)


def prediction_fields(pred):
    """A Prediction (or dict) as {name: value} with JSON-friendly values."""
    items = pred.items() if hasattr(pred, "items") else vars(pred).items()
    out = {}
    for k, v in items:
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [x if isinstance(x, (str, int, float, bool, dict)) or x is None else str(x) for x in v]
        elif isinstance(v, dict):
            out[k] = v
        else:
            out[k] = str(v)
    return out
