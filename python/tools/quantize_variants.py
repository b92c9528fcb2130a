"""Builds and measures quantised and optimised variants of the MiniLM ONNX export (issue #30 item 1).

    python quantize_variants.py EXPORT_DIR WORK_DIR DATASET_DIR [--only NAME,NAME] [--ndcg]

EXPORT_DIR is `make setup`'s export (model.onnx, tokenizer.json); each variant is written to
WORK_DIR/NAME/ as a complete export directory (model.onnx plus the tokenizer and configs, linked),
so `rag --set embedder.model=WORK_DIR/NAME eval ...` can run it through the real pipeline.

For each variant it prints, side by side in one run on the same texts: the cosine of its vectors
to fp32's on 100 SciFact abstracts and 100 queries (min and mean), passages/s and queries/s with
one session per core and one intra-op thread each (the shape `OnnxEmbedder` runs), and with
`--ndcg` SciFact nDCG@10 of dense retrieval at the document level (one vector per abstract: title
and text, truncated at 256 tokens, as a screen; the pipeline's own figure is `rag eval`'s).
Nothing is downloaded: the calibration texts are the corpus's own.
"""
import argparse
import json
import math
import os
import pathlib
import sys
import threading
import time

import numpy as np

NAMES = ["input_ids", "attention_mask", "token_type_ids"]
LINKED = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "config.json",
          "sentence_bert_config.json", "modules.json", "config_sentence_transformers.json", "1_Pooling",
          "source.sha256"]


def load_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def passage(doc):
    return (doc.get("title", "") + ". " + doc["text"]).strip(". ") if doc.get("title") else doc["text"]


class Encoder:
    """Tokenises like OnnxEmbedder: no padding, truncation at the model's 256 tokens."""

    def __init__(self, export):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(str(export / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(256)

    def feeds(self, text):
        e = self.tok.encode(text)
        ids = np.array([e.ids], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.array([e.type_ids], dtype=np.int64)}


def sessions(model, count=2):
    import onnxruntime as ort
    out = []
    for _ in range(count):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        out.append(ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]))
    return out


def embed(sess_list, enc, texts):
    """Every text alone on one of the sessions, one thread a session (ONNX Runtime drops the GIL)."""
    out = [None] * len(texts)

    def work(k):
        s = sess_list[k]
        for i in range(k, len(texts), len(sess_list)):
            hidden = s.run(["last_hidden_state"], enc.feeds(texts[i]))[0][0]
            v = hidden.sum(0)
            out[i] = v / max(np.linalg.norm(v), 1e-12)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(sess_list))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return np.stack(out)


def timed(sess_list, enc, texts, rounds=2):
    embed(sess_list, enc, texts[:8])  # warm-up
    best = math.inf
    for _ in range(rounds):
        t = time.perf_counter()
        embed(sess_list, enc, texts)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best


def ndcg10(doc_ids, doc_vecs, queries, query_vecs, qrels):
    scores = query_vecs @ doc_vecs.T
    total = 0.0
    for qi, q in enumerate(queries):
        rel = qrels[q["_id"]]
        top = np.argsort(-scores[qi])[:10]
        dcg = sum(rel.get(doc_ids[d], 0) / math.log2(r + 2) for r, d in enumerate(top))
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
        total += dcg / idcg if idcg else 0.0
    return total / len(queries)


def node_names(model, op):
    import onnx
    return [n.name for n in onnx.load(str(model)).graph.node if n.op_type == op]


class Calibration:
    """Corpus passages for static quantisation (ONNX Runtime's CalibrationDataReader)."""

    def __init__(self, enc, texts, length=None):
        feeds = [enc.feeds(t) for t in texts]
        if length:
            # Histogram calibration stacks its inputs: passages of at least `length` tokens, cut there.
            feeds = [{k: v[:, :length] for k, v in f.items()} for f in feeds if f["input_ids"].shape[1] >= length]
        self.items = iter(feeds)

    def get_next(self):
        return next(self.items, None)


def build(name, src, dst, enc, corpus):
    """Writes the variant `name` of `src` to `dst`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst.parent.mkdir(parents=True, exist_ok=True)
    matmuls = node_names(src, "MatMul")
    last_layer = [n for n in matmuls if "layer.5/" in n]
    if name == "fp32":
        dst.write_bytes(src.read_bytes())
    elif name == "fp32-optimised":
        # ONNX Runtime's transformer fusions (attention, layer norm, GELU) saved once, so a
        # session loads the fused graph; the arithmetic stays fp32.
        from onnxruntime.transformers.optimizer import optimize_model
        m = optimize_model(str(src), model_type="bert", num_heads=12, hidden_size=384, opt_level=1)
        m.save_model_to_file(str(dst))
    elif name == "int8-dynamic":  # what `precision = "int8"` runs today
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    elif name == "int8-dynamic-per-channel":
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    elif name == "int8-matmul-only":
        # The word/position embeddings (Gather) stay fp32: only the weight matrices are quantised.
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
    elif name == "int8-matmul-keep-last-layer":
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=last_layer)
    elif name == "int8-matmul-keep-ffn-out":
        outs = [n for n in matmuls if "/output/dense/" in n and "attention" not in n]
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=outs)
    elif name == "int8-optimised":
        # The fused graph, then dynamic int8 (fused attention becomes QAttention).
        fused = dst.with_name("fused.onnx")
        build("fp32-optimised", src, fused, enc, corpus)
        import onnx
        quantize_dynamic(str(fused), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        fused.unlink()
    elif name.startswith("int8-static"):
        # Static QDQ: activations' ranges calibrated on corpus passages (not the eval queries).
        pre = dst.with_name("pre.onnx")
        quant_pre_process(str(src), str(pre), skip_optimization=False, skip_symbolic_shape=True)
        method = CalibrationMethod.Percentile if "percentile" in name else CalibrationMethod.MinMax
        extra = {"CalibPercentile": 99.99} if "percentile" in name else {}
        extra["ActivationSymmetric"] = False
        quantize_static(str(pre), str(dst), Calibration(enc, corpus[:300], 128 if "percentile" in name else None), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=["MatMul"], activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, extra_options=extra)
        pre.unlink()
    else:
        raise SystemExit(f"unknown variant {name}")
    for f in LINKED:
        link = dst.parent / f
        if not link.exists() and (src.parent / f).exists():
            link.symlink_to(src.parent / f)


VARIANTS = ["fp32", "fp32-optimised", "int8-dynamic", "int8-dynamic-per-channel", "int8-matmul-only",
            "int8-matmul-keep-last-layer", "int8-matmul-keep-ffn-out", "int8-optimised", "int8-static-minmax",
            "int8-static-percentile"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("export", type=pathlib.Path)
    p.add_argument("work", type=pathlib.Path)
    p.add_argument("dataset", type=pathlib.Path)
    p.add_argument("--only", default="")
    p.add_argument("--ndcg", action="store_true")
    a = p.parse_args()
    a.export, a.dataset, a.work = a.export.resolve(), a.dataset.resolve(), a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    # ONNX Runtime's quantisation pre-processing leaves temporary files in the working directory.
    os.chdir(a.work)
    src = a.export / "model.onnx"
    enc = Encoder(a.export)
    corpus = load_jsonl(a.dataset / "corpus.jsonl")
    queries_all = {q["_id"]: q for q in load_jsonl(a.dataset / "queries.jsonl")}
    qrels = {}
    with open(a.dataset / "qrels" / "test.tsv") as f:
        for line in f.read().splitlines()[1:]:
            qid, did, g = line.split("\t")
            qrels.setdefault(qid, {})[did] = int(g)
    queries = [queries_all[q] for q in qrels]
    texts = [passage(d) for d in corpus]
    # Calibration uses the corpus's first 200 passages; similarity and speed use others.
    sample_docs = texts[1000:1100]
    sample_queries = [q["text"] for q in queries[:100]]
    speed_docs = texts[2000:2128]
    speed_queries = [q["text"] for q in queries[:256]]
    names = [n for n in a.only.split(",") if n] or VARIANTS
    ref_docs = ref_queries = None
    ref_doc_vecs = None
    for name in ["fp32"] + [n for n in names if n != "fp32"]:
        dst = a.work / name / "model.onnx"
        if not dst.is_file():
            t = time.perf_counter()
            build(name, src, dst, enc, texts)
            print(f"{name}: built in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        ss = sessions(dst)
        d = embed(ss, enc, sample_docs)
        q = embed(ss, enc, sample_queries)
        if ref_docs is None:
            ref_docs, ref_queries = d, q
        cos_d = (d * ref_docs).sum(1)
        cos_q = (q * ref_queries).sum(1)
        row = {"variant": name, "size_mb": round(dst.stat().st_size / 1e6, 1),
               "cos_docs_min": round(float(cos_d.min()), 4), "cos_docs_mean": round(float(cos_d.mean()), 4),
               "cos_queries_min": round(float(cos_q.min()), 4), "cos_queries_mean": round(float(cos_q.mean()), 4),
               "passages_per_s": round(timed(ss, enc, speed_docs), 1), "queries_per_s": round(timed(ss, enc, speed_queries), 1)}
        if a.ndcg:
            dv = embed(ss, enc, texts)
            qv = embed(ss, enc, [x["text"] for x in queries])
            if ref_doc_vecs is None:
                ref_doc_vecs = dv
            ids = [x["_id"] for x in corpus]
            row["ndcg10_dense"] = round(ndcg10(ids, dv, queries, qv, qrels), 4)
            row["ndcg10_fp32_docs"] = round(ndcg10(ids, ref_doc_vecs, queries, qv, qrels), 4)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
