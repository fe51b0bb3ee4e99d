"""Start-up: `dinosearch --help`, a cold `dinosearch query` (imports + model load + one embed),
and where the time goes (`python -X importtime`, heavy imports one by one, model load).

    python bench/startup.py [--quick] [--model DIR]
"""

import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import harness

DINOSEARCH = str(Path(harness.PYTHON).with_name("dinosearch"))  # the console script itself


def timed(cmd: list[str], repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=harness.cli_env())
        times.append(time.perf_counter() - t)
    return {"median": statistics.median(times), "min": min(times), "runs": times}


def importtime(module: str, top: int = 8) -> list[tuple[str, float]]:
    """The slowest top-level-ish imports (cumulative ms) when importing `module`."""
    err = subprocess.run(
        [harness.PYTHON, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rows = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 2:  # direct imports of `module` (and itself)
            rows.append((m.group(3), int(m.group(1)) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def import_seconds(module: str, repeat: int) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [
        float(
            subprocess.run(
                [harness.PYTHON, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeat)
    ]
    return statistics.median(runs)


def main() -> None:
    ap = harness.parser(__doc__, quick="3 runs instead of 7", model=True)
    args = ap.parse_args()
    args.model = harness.model_dir(args.model)
    repeat = 3 if args.quick else 7
    photos = sorted(harness.PHOTOS.glob("*.png"))
    lib = Path(tempfile.mkdtemp(prefix="perf-startup-", dir=harness.WORK))
    corpus = lib / "photos"
    corpus.mkdir()
    for p in photos[:4]:
        shutil.copy(p, corpus / p.name)
    try:
        base = ["--index", str(lib / "lib")]
        subprocess.run(
            [DINOSEARCH, "index", str(corpus), *base, "--model", args.model, "--json"],
            capture_output=True,
            check=True,
            env=harness.cli_env(),
        )
        data = {
            "help": timed([DINOSEARCH, "--help"], repeat),
            "python_bare": timed([harness.PYTHON, "-c", "pass"], repeat),
            # a stored vector: no model load (the common case for files in the library)
            "query_indexed": timed(
                [DINOSEARCH, "query", str(corpus / photos[0].name), *base, "--json"], repeat
            ),
            # a new image: imports torch + transformers, loads the model, embeds once
            "query_cold": timed([DINOSEARCH, "query", str(photos[5]), *base, "--json"], repeat),
        }
        imports = {
            m: import_seconds(m, repeat)
            for m in ("click", "numpy", "PIL.Image", "faiss", "torch", "transformers")
        }
        load_code = (
            "import time, json; t = time.perf_counter(); from indexer import model; "
            f"e = model.load({args.model!r}, device='cpu'); "
            "print(json.dumps(time.perf_counter() - t))"
        )
        load = statistics.median(
            json.loads(
                subprocess.run(
                    [harness.PYTHON, "-c", load_code],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=harness.ROOT,
                ).stdout
            )
            for _ in range(max(3, repeat // 2))
        )
    finally:
        shutil.rmtree(lib, ignore_errors=True)
    cli_imports = importtime("search.cli.app")
    data.update(
        {
            "imports_s": imports,
            "model_load_incl_imports_s": load,
            "cli_importtime_ms": cli_imports,
            "quick": args.quick,
        }
    )
    rows = [
        ["python -c pass", data["python_bare"]["median"]],
        ["dinosearch --help (target < 0.3 s)", data["help"]["median"]],
        ["dinosearch query, indexed image (stored vector)", data["query_indexed"]["median"]],
        ["dinosearch query, new image (cold: imports + model load)", data["query_cold"]["median"]],
        ["model.load() incl. torch/transformers imports", load],
    ] + [[f"import {m}", s] for m, s in imports.items()]
    md = (
        f"Medians of {repeat} runs as subprocesses (page cache warm).\n\n"
        + harness.table(["what", "seconds"], rows)
        + "\n`python -X importtime -c 'import search.cli.app'`, slowest direct imports (ms): "
        + ", ".join(f"{m} {ms:.0f}" for m, ms in cli_imports)
        + "\n"
    )
    harness.write_results("perf_startup", md, data)


if __name__ == "__main__":
    main()
