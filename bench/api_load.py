"""Load on a real `dinosearch serve` over loopback while index jobs write the same library.

p50/p99 latency of GET /api/images/{id}/similar and POST /api/search at 8 concurrent clients,
each phase bounded in time; index jobs are kept running throughout (a new folder each time one
finishes). Uses the tests' tiny real-architecture DINOv2 in a temporary Hugging Face cache, so it
measures the serving stack (HTTP, locking, SQLite, FAISS, decode) rather than model compute.

    .venv/bin/python bench/api_load.py [--seconds 10] [--clients 8]
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HF_HOME = Path(tempfile.mkdtemp(prefix="dinosearch-bench-hf-"))
os.environ.update(HF_HOME=str(HF_HOME), HF_HUB_CACHE=str(HF_HOME / "hub"), HF_HUB_OFFLINE="1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from indexer.job import IndexOptions  # noqa: E402
from search.collection import Collection  # noqa: E402
from tests.checkpoints import populate_hub_cache  # noqa: E402
from tests.live_server import live_server  # noqa: E402

SHARED = REPO.parent / "shared" / "testdata"
RESULTS = REPO / "bench" / "results" / "api_load.md"
JOB_FOLDERS = 20  # folders of fresh (never seen) images for back-to-back index jobs
JOB_QUALITIES = range(70, 70 + JOB_FOLDERS)  # each folder re-encodes the photos differently


def prepare(work: Path) -> tuple[Path, Path, list[Path]]:
    """A library of the 24 Kodak photos, and a root of folders with new images to index."""
    photos = sorted((SHARED / "photos").glob("*.png"))
    library = work / "library"
    Collection(library).index([SHARED / "photos"], IndexOptions(workers=0))
    root = work / "root"
    more = sorted((SHARED / "photos-more").glob("*"))
    for q in JOB_QUALITIES:
        folder = root / f"q{q}"
        folder.mkdir(parents=True)
        for src in more:
            Image.open(src).convert("RGB").save(folder / f"{src.stem}.jpg", quality=q)
    return library, root, photos


class JobKeeper(threading.Thread):
    """Keeps an index job running: starts the next folder whenever one finishes."""

    def __init__(self, url: str, folders: list[str]):
        super().__init__(daemon=True)
        self.url, self.folders = url, folders
        self.stop = threading.Event()
        self.jobs_done = self.indexed = self.jobs_failed = 0
        self.errors: list[str] = []  # why failed jobs failed

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as http:
            for folder in self.folders:
                job = http.post("/api/index", json={"path": folder}).json()["job"]
                while not self.stop.is_set():
                    state = http.get(f"/api/jobs/{job}").json()
                    if state["state"] != "running":
                        self.jobs_done += 1
                        self.jobs_failed += state["state"] == "failed"
                        if state["state"] == "failed":
                            error = state["error"] or {}
                            self.errors.append(f"{error.get('code')}: {error.get('message')}")
                        self.indexed += (state["summary"] or {}).get("indexed", 0)
                        break
                    time.sleep(0.05)
                if self.stop.is_set():
                    return


def hammer(url: str, clients: int, seconds: float, request):
    """Run `request(client)` from `clients` threads for `seconds`: latencies (s), errors, 5xx
    and the count of each non-200 status."""
    deadline = time.monotonic() + seconds
    latencies, errors, server_errors = [], [0], [0]
    statuses: Counter = Counter()
    lock = threading.Lock()

    def client(_: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status = request(http).status_code
                took = time.perf_counter() - started
                with lock:
                    latencies.append(took)
                    errors[0] += status != 200
                    server_errors[0] += status >= 500
                    statuses[status] += status != 200

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return latencies, errors[0], server_errors[0], +statuses


def row(name: str, seconds: float, result) -> str:
    latencies, errors, server_errors, _ = result
    ms = np.array(latencies) * 1000
    p50, p99 = np.percentile(ms, [50, 99])
    rate = len(ms) / seconds
    return (
        f"| {name} | {len(ms)} | {errors} | {server_errors} | {p50:.1f} | {p99:.1f} | {rate:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    populate_hub_cache(HF_HOME / "hub")
    work = Path(tempfile.mkdtemp(prefix="dinosearch-bench-"))
    try:
        report = run(work, args.seconds, args.clients)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(HF_HOME, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(report)


def run(work: Path, seconds: float, clients: int) -> str:
    library, root, photos = prepare(work)
    query = photos[5].read_bytes()
    log = work / "serve.log"
    with (
        live_server(library, "--root", str(root), log_path=log) as url,
        httpx.Client(base_url=url) as http,
    ):
        files = {"file": ("q.png", query)}
        first = http.post("/api/search", files=files, timeout=120).json()["results"][0]["id"]
        keeper = JobKeeper(url, sorted(str(p) for p in root.iterdir()))
        keeper.start()
        time.sleep(0.5)  # the first job is under way
        similar = hammer(url, clients, seconds, lambda h: h.get(f"/api/images/{first}/similar"))
        search = hammer(url, clients, seconds, lambda h: h.post("/api/search", files=files))
        busy = keeper.is_alive()  # jobs ran back to back, so one ran throughout
        keeper.stop.set()
        images = httpx.get(f"{url}/api/stats", timeout=60).json()["images"]  # fresh connection
    if keeper.errors or similar[2] or search[2]:  # the server logged why: keep the causes
        lines = [x for x in log.read_text().splitlines() if x and not x.startswith(" ")]
        causes = sorted({x for x in lines if "Error:" in x or "Exception:" in x})
        keeper.errors.append(f"server log: {' | '.join(causes) or 'no traceback'}")
        print(log.read_text()[-8000:], file=sys.stderr)
    return render(seconds, clients, similar, search, keeper, busy, images)


def render(seconds, clients, similar, search, keeper, busy, images) -> str:
    return "\n".join(
        [
            "# API load: latency under concurrent clients while an index job writes",
            "",
            f"Command: `.venv/bin/python bench/api_load.py --seconds {seconds:g} "
            f"--clients {clients}`",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, {platform.python_version()},"
            " CPU only. Real server (`python -m search.cli.serve`) on 127.0.0.1; clients are httpx"
            " threads in the benchmark process.",
            "Model: the tests' tiny random-init DINOv2 (real architecture), so these figures are"
            " the serving stack (HTTP, locks, SQLite, FAISS, PNG decode), not DINOv2-S compute.",
            f"Library: 24 Kodak photos at start; index jobs of 37 fresh images each ran back to"
            f" back throughout ({keeper.jobs_done} finished, {keeper.jobs_failed} of them failed,"
            f" {keeper.indexed} images added;"
            f" a job was still running at the end: {busy}); {images} images at the end.",
            "",
            f"{clients} concurrent clients, {seconds:g} s per endpoint:",
            "",
            "| endpoint | requests | non-200 | 5xx | p50 ms | p99 ms | req/s |",
            "|---|---|---|---|---|---|---|",
            row("GET /api/images/{id}/similar?k=10", seconds, similar),
            row("POST /api/search (500x500 PNG upload)", seconds, search),
            "",
            f"Non-200 answers by status: similar {dict(similar[3]) or 'none'}, "
            f"search {dict(search[3]) or 'none'}. Failed index jobs and server errors: "
            f"{'; '.join(keeper.errors) or 'none'}. Code at commit {_commit()}.",
            "",
        ]
    )


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
