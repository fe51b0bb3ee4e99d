"""Run the dinosearch CLI and record when things happen in it (for bench/runtime_speed.py).

    python bench/cli_marks.py MARKS.json index|query|... ARGS...

Same as `dinosearch ARGS...`, plus MARKS.json at exit: wall-clock times (time.time()) of the
interpreter reaching this file, the start of the first forward pass (the first Embedder.embed or
OnnxEmbedder.embed call: both embed one blank image while loading) and of the first forward on
real pixels, and the seconds spent exporting / quantizing / gating the ONNX file when that
happened in this process. Only light modules are imported before the CLI (indexer.model and
indexer.onnx_runtime import neither torch nor onnxruntime at module level).
"""

import json
import sys
import time

T_START = time.time()
if sys.argv[1:2] in (["-h"], ["--help"]):  # a helper other scripts run: its usage, nothing else
    print(__doc__.strip())
    sys.exit(0)


def main() -> None:
    marks_path, args = sys.argv[1], sys.argv[2:]
    from indexer import model, onnx_runtime

    marks: dict = {"python_start": T_START, "embed_calls": 0}

    def wrap_embed(cls, kind: str) -> None:
        original = cls.embed

        def embed(self, pixels):
            now = time.time()
            marks["embed_calls"] += 1
            marks.setdefault("first_forward", now)
            marks.setdefault("first_forward_kind", f"{kind}/{self.dtype}")
            if pixels.any():
                marks.setdefault("first_real_forward", now)
            return original(self, pixels)

        cls.embed = embed

    def wrap_seconds(module, name: str) -> None:
        original = getattr(module, name)

        def timed(*a, **k):
            started = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                marks[f"{name.strip('_')}_s"] = time.perf_counter() - started

        setattr(module, name, timed)

    wrap_embed(model.Embedder, "torch")
    wrap_embed(onnx_runtime.OnnxEmbedder, "onnx")
    for name in ("_export", "_quantize", "measure_gate", "_torch_embedder"):
        wrap_seconds(onnx_runtime, name)
    code = 1
    try:
        sys.argv = ["dinosearch", *args]
        from search.cli.app import main as cli

        code = cli()
    except SystemExit as exc:
        code = exc.code
    finally:
        marks["exit"] = time.time()
        marks["torch_imported"] = "torch" in sys.modules
        marks["onnxruntime_imported"] = "onnxruntime" in sys.modules
        with open(marks_path, "w") as f:
            json.dump(marks, f)
    sys.exit(code)


if __name__ == "__main__":
    main()
