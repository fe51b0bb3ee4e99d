"""Shared by the perf_* benchmarks: machine facts, results files, realistic vectors, timing."""

import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / "work"
PHOTOS = ROOT.parent / "shared" / "testdata" / "photos"
REAL_WEIGHTS = Path.home() / ".cache" / "dinosearch-dev" / "dinov2-small-imgfocus"
RANDOM_VITS14 = WORK / "vits14-random"  # full-size ViT-S/14, random init, real config
REAL_LIBRARY = WORK / "lib-real"  # real DINOv2 embeddings of ~900 photos (bench/README.md)
DIM = 384
PYTHON = sys.executable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def machine() -> dict:
    """The facts every result is recorded with."""
    facts = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "flags": _cpu_flags(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    try:
        import torch  # optional here: absent from the imagededup venv; 1.3 s, 200 MB RSS otherwise

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return facts


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma")
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in wanted if f in have]
    return []


def write_results(name: str, data: dict, markdown: str) -> None:
    """bench/results/perf_<name>.json and .md (the .md carries the machine line)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), **data}
    (RESULTS / f"perf_{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    m = data["machine"]
    head = (
        f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['flags'])}), "
        f"torch {m.get('torch', '-')} ({m.get('torch_threads', '-')} threads), "
        f"load average at the end {m['load_average']}, {m['date']}.\n\n"
    )
    (RESULTS / f"perf_{name}.md").write_text(head + markdown.rstrip() + "\n")
    print(head + markdown)


def table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- the duplicate benches' markdown -------------------------------------------


def prf_cell(r: dict, bold_f1: bool = False) -> str:
    """`P / R / F1` of a PRF row, three decimals each (the F1 in bold where asked)."""
    f1 = f"**{r['f1']:.3f}**" if bold_f1 else f"{r['f1']:.3f}"
    return f"{r['precision']:.3f} / {r['recall']:.3f} / {f1}"


def recall_table(columns: dict[str, dict[str, float]], transforms) -> list[str]:
    """A markdown table: one row per transform, one column of recalls per method (nan where a
    method has none for it)."""
    rows = [[t, *(f"{c.get(t, float('nan')):.2f}" for c in columns.values())] for t in transforms]
    return table(["transform", *columns], rows).splitlines()


def median_time(fn, repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def rss_peak_mb_of(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    """Run cmd; return (peak RSS of the child in MB, its stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024, out


# --- realistic vectors ---------------------------------------------------------------------------


def real_embeddings() -> np.ndarray:
    """Real DINOv2 CLS vectors (bench/work/lib-real) if present, else a seeded stand-in."""
    db = REAL_LIBRARY / "library.db"
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            blobs = [
                r[0] for r in con.execute("select vector from images where vector is not null")
            ]
        finally:
            con.close()
        vecs = np.stack([np.frombuffer(b, "<f4") for b in blobs]).astype(np.float32)
        if vecs.shape[1] == DIM and len(vecs) >= 100:
            return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    rng = np.random.default_rng(1)
    spectrum = 1.0 / np.sqrt(np.arange(1, DIM + 1))  # anisotropic, like real embeddings
    vecs = rng.standard_normal((1000, DIM)).astype(np.float32) * spectrum + 0.5 * spectrum[::-1]
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def realistic_vectors(
    n: int, seed: int = 0, dup_fraction: float = 0.03
) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors shaped like a photo library, and the planted near-duplicate pairs (P, 2).

    Drawn from a Gaussian with the mean and covariance of real embeddings (so the anisotropy and
    the typical unrelated-pair cosine are real), grouped into clusters of ~30 (events, scenes);
    `dup_fraction` of them are near-copies (cosine ~0.95-0.99) of another vector.
    """
    rng = np.random.default_rng(seed)
    real = real_embeddings()
    mean = real.mean(0)
    u, s, vt = np.linalg.svd(real - mean, full_matrices=False)
    basis = (s[:, None] * vt / np.sqrt(len(real))).astype(np.float32)  # (r, D)

    def gaussian(m: int) -> np.ndarray:
        return rng.standard_normal((m, len(basis)), dtype=np.float32) @ basis

    centres = gaussian(max(1, n // 30))
    out = np.empty((n, DIM), np.float32)
    block = 100_000
    for start in range(0, n, block):
        m = min(block, n - start)
        which = rng.integers(0, len(centres), m)
        out[start : start + m] = mean + 0.75 * centres[which] + 0.65 * gaussian(m)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    n_dup = int(n * dup_fraction)
    copies = rng.choice(n, n_dup, replace=False)
    sources = rng.choice(np.setdiff1d(np.arange(n), copies), n_dup, replace=False)
    noise = rng.standard_normal((n_dup, DIM), dtype=np.float32)
    noise *= rng.uniform(0.08, 0.2, (n_dup, 1)).astype(np.float32) / np.sqrt(DIM)
    out[copies] = out[sources] + noise
    out[copies] /= np.linalg.norm(out[copies], axis=1, keepdims=True)
    return out, np.stack([sources, copies], 1)


def vectors_cached(n: int, seed: int = 0, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """realistic_vectors(n), memory-mapped (or read into RAM) from bench/work so 1M is generated
    once."""
    path = WORK / f"vectors-{n}-{seed}.npy"
    pairs = WORK / f"vectors-{n}-{seed}-pairs.npy"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        vecs, planted = realistic_vectors(n, seed)
        np.save(pairs, planted)
        np.save(str(path) + ".tmp.npy", vecs)
        os.replace(str(path) + ".tmp.npy", path)
    return np.load(path, mmap_mode="r" if mmap else None), np.load(pairs)
