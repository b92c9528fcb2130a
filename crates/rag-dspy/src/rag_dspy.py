# Python side of rag-dspy: DSPy programs whose retrieval is a Rust retriever, and helpers that
# run any program under a per-call `dspy.context`, so pipelines with different LMs never share
# DSPy's global settings.
import importlib.util
import os
import re
import sys

import dspy


def _patch_retrieve_state():
    """dspy.Retrieve's dump_state/load_state predate `json_mode` / `allow_unsafe_lm_state`, so
    `module.save()` fails on any program holding a dspy.Retrieve (DSPy 3.x). Accept and ignore
    the newer keywords, keeping Retrieve's own state (its `k`)."""
    retrieve = dspy.Retrieve
    dump, load = retrieve.dump_state, retrieve.load_state
    if "json_mode" in getattr(dump, "__code__", dump).co_varnames:
        return
    retrieve.dump_state = lambda self, *args, **kwargs: dump(self)
    retrieve.load_state = lambda self, state, *args, **kwargs: load(self, state)


_patch_retrieve_state()


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


def start_local(path, n_ctx, threads, parallel=1):
    """Starts llama.cpp's OpenAI-compatible server in this process (xllamacpp), once per
    (model, context, threads, slots); returns its base URL. It lives as long as the process.
    `parallel` slots each get `n_ctx` tokens and are decoded together (continuous batching)."""
    key = (path, n_ctx, threads, parallel)
    if key not in _LOCAL_SERVERS:
        import xllamacpp
        p = xllamacpp.CommonParams()
        p.model.path = path
        p.n_parallel = parallel
        p.cont_batching = True
        p.kv_unified = False  # each slot its own n_ctx: one long answer cannot starve the others
        p.n_ctx = n_ctx * parallel
        p.cpuparams.n_threads = threads
        p.verbosity = -1  # llama.cpp logs every request at length otherwise
        server = xllamacpp.Server(p)
        _LOCAL_SERVERS[key] = (server, server.listening_address.rstrip("/"))
    return _LOCAL_SERVERS[key][1]


def chain_of_thought(signature):
    return dspy.ChainOfThought(signature)


def load_answer_predictor(cot, path):
    """Loads the answer predictor of a program compiled by `rag optimize` (its demos and
    instructions) into a ChainOfThought: the key `generate.predict` of BasicRag / MultiHopRag, else
    the only predictor the file holds. The pipeline then answers with the compiled prompt."""
    import json
    with open(path) as f:
        state = json.load(f)
    keys = [k for k, v in state.items() if isinstance(v, dict) and "demos" in v]
    key = "generate.predict" if "generate.predict" in keys else (keys[0] if len(keys) == 1 else None)
    if key is None:
        raise ValueError(f"{path}: no answer predictor to load (predictors: {', '.join(keys) or 'none'}); "
                         "save BasicRag / MultiHopRag programs with `rag optimize`")
    cot.predict.load_state(state[key])
    return len(state[key].get("demos") or [])


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


def _import_file(path):
    name = "rag_user_program_" + re.sub(r"\W", "_", os.path.abspath(path))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a Python module from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _attribute(path, module, attr):
    found = getattr(module, attr, None)
    if found is None:
        raise AttributeError(f"{path} defines no `{attr}` (found: {', '.join(n for n in dir(module) if not n.startswith('_'))})")
    return found


def load_program(path, class_name, kwargs):
    """Imports a user's DSPy program file and instantiates `class_name(**kwargs)`."""
    return _attribute(path, _import_file(path), class_name)(**kwargs)


def load_metric(path, function):
    """A user's metric `function(example, prediction, trace=None) -> float | bool` from a file."""
    fn = _attribute(path, _import_file(path), function)
    if not callable(fn):
        raise TypeError(f"{path}: `{function}` is not a function")
    return lambda ex, pred, trace=None: float(fn(ex, pred, trace))


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


# ---------------------------------------------------------------------------------------------
# Optimisation: DSPy optimisers over a program whose retrieval is the Rust retriever.

ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCT = re.compile(r"[^\w\s]")
CITE_MARK = re.compile(r"\[\d+\]")


def normalise(text):
    """SQuAD's answer normalisation: lower case, no punctuation, articles or citation marks."""
    text = CITE_MARK.sub(" ", str(text or "").lower())
    return " ".join(ARTICLES.sub(" ", PUNCT.sub(" ", text)).split())


def exact_match(gold, answer):
    return float(normalise(gold) == normalise(answer))


def token_f1(gold, answer):
    g, a = normalise(gold).split(), normalise(answer).split()
    if not g or not a:
        return float(g == a)
    common = {}
    for w in a:
        if w in g:
            common[w] = min(a.count(w), g.count(w))
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(a), same / len(g)
    return 2 * precision * recall / (precision + recall)


def cited_docs(pred, rm):
    """Document ids of the passages the answer cites (its [n], else its reasoning's, else
    attribution by shared words, as the generator reports citations)."""
    passages = list(pred.get("passages") or [])
    nums = citations(str(pred.get("answer", "")), pred.get("reasoning"), passages)
    return {d for d in (rm.doc_id(str(passages[i - 1])) for i in nums) if d}


def retrieved_docs(pred, rm):
    """Document ids of every passage any hop retrieved."""
    out = set()
    for hop in pred.get("hops") or []:
        for p in hop.get("passages") or []:
            d = rm.doc_id(str(p))
            if d:
                out.add(d)
    return out


def recall(gold, found):
    gold = set(gold or [])
    return len(gold & found) / len(gold) if gold else 0.0


def make_metric(name, rm):
    """The metric `name` as DSPy calls it: metric(example, prediction, trace=None) -> float."""
    if name == "em":
        return lambda ex, pred, trace=None: exact_match(ex.answer, pred.get("answer", ""))
    if name == "f1":
        return lambda ex, pred, trace=None: token_f1(ex.answer, pred.get("answer", ""))
    if name == "citation-recall":
        return lambda ex, pred, trace=None: recall(ex.doc_ids, cited_docs(pred, rm))
    if name == "retrieval-recall":
        return lambda ex, pred, trace=None: recall(ex.doc_ids, retrieved_docs(pred, rm))
    raise ValueError(f"unknown metric `{name}`")


def to_examples(rows):
    return [dspy.Example(question=r["question"], answer=r.get("answer") or "", doc_ids=r.get("doc_ids") or []).with_inputs("question")
            for r in rows]


def score(module, lm, rm, metric, examples):
    """Mean metric over `examples`, run one at a time; a failed run scores 0 (and is counted)."""
    total, failures = 0.0, 0
    with dspy.context(lm=lm, rm=rm):
        for ex in examples:
            try:
                total += float(metric(ex, module(question=ex.question)))
            except Exception:  # noqa: BLE001 - a program that fails on an example scores 0 there
                failures += 1
    return (total / len(examples) if examples else 0.0), failures


def make_optimizer(name, metric, max_demos, labeled, seed):
    """`labeled`: raw training examples may be demos too (only when they carry answers)."""
    if name == "bootstrap":
        return dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=max_demos, max_labeled_demos=labeled,
                                     max_rounds=1)
    if name == "random-search":
        return dspy.BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=max_demos,
                                                     max_labeled_demos=labeled, num_candidate_programs=4,
                                                     num_threads=1)
    if name == "labeled":
        return dspy.LabeledFewShot(k=max_demos)
    if name == "mipro":
        return dspy.MIPROv2(metric=metric, auto="light", num_threads=1, seed=seed,
                            max_bootstrapped_demos=max_demos, max_labeled_demos=labeled)
    raise ValueError(f"unknown optimizer `{name}`")


def demo_count(module):
    return sum(len(getattr(p, "demos", []) or []) for _, p in module.named_predictors())


def optimize(module, lm, rm, trainset, devset, optimizer, metric_name, max_demos, seed, out_path, program_spec,
             metric_fn=None):
    """Scores `module` on the devset, compiles it on the trainset, scores the compiled program,
    and saves it in DSPy's own JSON format, with `rag_program` (how to rebuild the module before
    `.load`) beside DSPy's keys (DSPy's `load` reads only the predictors' keys)."""
    import json
    import random
    import time

    random.seed(seed)
    metric = load_metric(*metric_fn) if metric_fn else make_metric(metric_name, rm)
    train, dev = to_examples(trainset), to_examples(devset)
    start = time.time()
    before, failures_before = score(module, lm, rm, metric, dev)
    labeled = max_demos if all(r.get("answer") for r in trainset) else 0
    opt = make_optimizer(optimizer, metric, max_demos, labeled, seed)
    # MIPROv2 also takes the devset (to choose among candidates) and asks before spending calls.
    extra = {"valset": dev or None, "requires_permission_to_run": False} if optimizer == "mipro" else {}
    with dspy.context(lm=lm, rm=rm):
        compiled = opt.compile(module, trainset=train, **extra)
    after, failures_after = score(compiled, lm, rm, metric, dev)
    compiled.save(out_path)
    with open(out_path) as f:
        state = json.load(f)
    state["rag_program"] = program_spec
    with open(out_path, "w") as f:
        json.dump(state, f, indent=2)
    return {
        "before": before, "after": after,
        "failures_before": failures_before, "failures_after": failures_after,
        "demos": demo_count(compiled), "seconds": time.time() - start,
    }


def build_program(spec):
    """The module a program spec names: {"kind": "basic", "k"}, {"kind": "multihop", "hops", "k"},
    or {"kind": "file", "path", "class", "args"}."""
    kind = spec["kind"]
    if kind == "basic":
        return BasicRag(k=spec["k"])
    if kind == "multihop":
        return MultiHopRag(max_hops=spec["hops"], k=spec["k"])
    if kind == "file":
        return load_program(spec["path"], spec["class"], spec.get("args") or {})
    raise ValueError(f"unknown program kind `{kind}`")


def load_compiled(module, path):
    """Loads a program saved by `optimize` (or DSPy's `save`) into a freshly built module."""
    module.load(path)
    return module


def last_prompt(lm):
    """The messages of the LM's last call, as one string (to check what a program sends)."""
    if not lm.history:
        return ""
    return "\n".join(str(m.get("content", "")) for m in lm.history[-1].get("messages") or [])
