"""Load on a real `dinosearch serve` over loopback while index jobs and apply/undo runs write it.

Reader threads send a mix of GET /api/images/{id}/similar, POST /api/search (an upload),
GET /api/images/{id}/thumbnail and GET /api/duplicates for `--seconds`. Meanwhile one writer
loop keeps the library changing, in cycles:

1. the page's index job (POST /api/index) on one of 4 folders (37 photos, 3 files each), whose
   files were just rewritten at a new JPEG quality (new bytes: re-hashed, re-embedded);
2. while it runs, the previous folder's plan is applied: on odd cycles POST /api/apply, which the
   server must refuse with 409 (`busy`); on even cycles a terminal `dinosearch apply PLAN --yes
   --wait --index LIB` (another process), which waits for the job's writer lock;
3. when the job is done: the page applies the plan (odd cycles) or the terminal does (even); while
   the terminal holds the lock, a page index job is started, which must fail `library_busy`;
4. POST /api/undo puts every file back; POST /api/plan makes the plan of this cycle's folder.

The library starts at its steady size (24 photos and the 4 folders, calibrated once), so the
figures are not those of a library growing under the run. Readers also ask for thumbnails and
neighbours of the images being rewritten, trashed and restored. Every
status is counted per endpoint (409 and 404 apart from 5xx), every writer outcome is counted, and
the exception line of any 5xx or failed job is taken from the server's log. At the end: `check`,
and every file of every folder back in place. Uses the tests' tiny real-architecture DINOv2, so
it measures the serving stack (HTTP, locks, SQLite, FAISS, decode), not model compute.

    .venv/bin/python bench/api_load.py [--seconds 300] [--clients 8] [--quick]
    (--quick: 20 s and 2 clients; the report then goes to bench/work/quick-results)
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__":  # not again in decode workers, which import this file as __mp_main__
    HF_HOME = Path(tempfile.mkdtemp(prefix="dinosearch-bench-hf-"))
    os.environ.update(HF_HOME=str(HF_HOME), HF_HUB_CACHE=str(HF_HOME / "hub"), HF_HUB_OFFLINE="1")
import harness  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from indexer.job import IndexOptions  # noqa: E402
from indexer.library import writer  # noqa: E402
from search.collection import Collection, DupOptions  # noqa: E402

REPO = harness.ROOT
SHARED = harness.TESTDATA
ENDPOINTS = ("similar", "search", "thumbnail", "duplicates", "duplicates_auto")
# one client's round: base ids are the 24 photos never touched; fresh ones are being trashed
ROUND = ["similar", "similar_fresh", "thumbnail", "thumbnail_fresh", "thumbnail_fresh"]
ROUND += ["duplicates", "search", "similar", "thumbnail"]
THUMB_SIZES = (64, 128, 256, 512)
PLAN_THRESHOLD = "0.99"  # plans and most duplicate reads: a raw cosine, no pixel checks
AUTO_EVERY_S = 100  # one more client asks threshold=auto (pixel checks under the lock: slow)
FOLDERS = 4  # folders the writer rewrites in turn: the library stays ~470 images
POLL_S = 0.1
WRITER_STOP_TIMEOUT_S = 180  # the cycle under way finishes (its undo included) before the end


def prepare(work: Path) -> tuple[Path, Path, list[Path]]:
    """The 24 Kodak photos (copied, so no plan could ever reach the shared ones) and FOLDERS
    folders, indexed; the calibration made once (as the page's first duplicate search would)."""
    photos = work / "photos"
    photos.mkdir()
    for src in sorted((SHARED / "photos").glob("*.png")):
        shutil.copy2(src, photos / src.name)
    root = work / "root"
    root.mkdir()
    folders = Folders(root)
    made = [folders.make(n) for n in range(FOLDERS)]
    library = work / "library"
    coll = Collection(library)
    coll.index([photos, *made], IndexOptions(workers=0))
    coll.duplicates(DupOptions())
    coll.close()
    return library, root, sorted(photos.iterdir())


class Folders:
    """FOLDERS folders, each of the 37 photos-more images at a JPEG quality, an exact copy of
    each and a re-encode 20 points lower (a near-duplicate to plan for); make(n) rewrites folder
    n % FOLDERS at quality 60 + n % 35."""

    per_folder = 3  # files per source image

    def __init__(self, root: Path):
        self.root = root
        paths = sorted((SHARED / "photos-more").glob("*"))
        self.sources = [(p.stem, Image.open(p).convert("RGB")) for p in paths]

    def make(self, n: int) -> Path:
        quality = 60 + n % 35
        folder = self.root / f"f{n % FOLDERS}"
        folder.mkdir(exist_ok=True)
        for stem, img in self.sources:
            img.save(folder / f"{stem}.jpg", quality=quality)
            shutil.copy2(folder / f"{stem}.jpg", folder / f"{stem} copy.jpg")
            img.save(folder / f"{stem} lower.jpg", quality=quality - 20)
        return folder


# --- readers -----------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


class Readers:
    """`clients` threads sending ROUND, in a shuffled order each, until the deadline."""

    def __init__(self, url: str, base_ids: list[int], query: bytes, fresh_ids: list[int]):
        self.url, self.base_ids, self.query, self.fresh_ids = url, base_ids, query, fresh_ids
        self.tallies = {e: Tally() for e in ENDPOINTS}
        self.lock = threading.Lock()

    def run(self, clients: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with ThreadPoolExecutor(clients + 1) as pool:
            auto = pool.submit(self.auto_client, deadline)
            list(pool.map(lambda c: self.client(c, deadline), range(clients)))
            auto.result()

    def auto_client(self, deadline: float) -> None:
        """GET /api/duplicates at the page's default, threshold=auto, every AUTO_EVERY_S."""
        with httpx.Client(base_url=self.url, timeout=300) as http:
            while (start := time.monotonic()) < deadline:
                self.one(http, random.Random(0), "duplicates_auto")
                time.sleep(
                    max(
                        0.0,
                        min(AUTO_EVERY_S - (time.monotonic() - start), deadline - time.monotonic()),
                    )
                )

    def client(self, seed: int, deadline: float) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while time.monotonic() < deadline:
                for kind in rng.sample(ROUND, len(ROUND)):
                    self.one(http, rng, kind)

    def one(self, http: httpx.Client, rng: random.Random, kind: str) -> None:
        ids = self.fresh_ids if kind.endswith("_fresh") and self.fresh_ids else self.base_ids
        image = rng.choice(ids)
        endpoint = kind.removesuffix("_fresh")
        params = {} if endpoint == "duplicates_auto" else {"threshold": PLAN_THRESHOLD}
        started = time.perf_counter()
        try:
            if endpoint == "similar":
                status = http.get(f"/api/images/{image}/similar", params={"k": 10}).status_code
            elif endpoint == "thumbnail":
                size = rng.choice(THUMB_SIZES)
                status = http.get(f"/api/images/{image}/thumbnail?size={size}").status_code
            elif endpoint.startswith("duplicates"):
                status = http.get("/api/duplicates", params=params).status_code
            else:
                files = {"file": ("q.png", self.query)}
                status = http.post("/api/search", files=files, data={"k": 10}).status_code
        except httpx.TransportError as exc:
            status = f"transport: {type(exc).__name__}"
        took = time.perf_counter() - started
        with self.lock:
            self.tallies[endpoint].latencies.append(took)
            self.tallies[endpoint].statuses[status] += 1


# --- the writer loop ---------------------------------------------------------------------------


@dataclass
class Writes:
    cycles: int = 0
    jobs_done: int = 0
    indexed: int = 0
    page_apply_busy_409: int = 0  # POST /api/apply while the page's job runs
    page_apply_after_job: int = 0  # ... that reached the server once the job had ended
    page_applies: int = 0
    terminal_applies: int = 0
    terminal_waited: int = 0  # of those, how many waited for the page's job
    page_jobs_library_busy: int = 0  # page index jobs refused while the terminal held the lock
    page_jobs_ran_anyway: int = 0  # ... or that got the lock after the terminal released it
    undos: int = 0
    files_acted: Counter = field(default_factory=Counter)  # apply outcomes by state
    files_restored: Counter = field(default_factory=Counter)  # undo outcomes by state
    failures: list[str] = field(default_factory=list)  # anything else that went wrong


class Writer(threading.Thread):
    """The cycles of the module docstring, until `stop` is set (the cycle under way finishes)."""

    def __init__(self, url: str, library: Path, root: Path, env: dict, fresh_ids: list[int]):
        super().__init__(daemon=True)
        self.url, self.library, self.root, self.env = url, library, root, env
        self.folders, self.fresh_ids = Folders(root), fresh_ids
        self.stop = threading.Event()
        self.w = Writes()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as http:
            self.http, plan = http, None
            while not self.stop.is_set():
                try:
                    plan = self.cycle(FOLDERS + self.w.cycles, plan)
                except Exception as exc:  # recorded, and the run goes on
                    self.w.failures.append(f"cycle {self.w.cycles}: {type(exc).__name__}: {exc}")
                    self.put_back(plan)
                    plan = None
                self.w.cycles += 1

    def cycle(self, n: int, plan: dict | None) -> dict:
        folder = self.folders.make(n)
        job = self.start_job(folder)
        terminal = run = None
        if plan and n % 2 == 0:
            terminal = self.terminal_apply(plan)
        elif plan:
            run = self.page_apply_while_busy(plan)
        self.finish_job(job)
        if terminal:
            self.terminal_done(terminal, folder)
        elif plan:
            self.page_apply(plan, run)
        if plan:
            self.undo(plan)
        return self.make_plan(folder, "trash" if n % 4 < 2 else "move")

    # page index jobs

    def start_job(self, folder: Path) -> str:
        for _ in range(600):
            r = self.http.post("/api/index", json={"path": str(folder)})
            if r.status_code == 202:
                return r.json()["job"]
            self.expect(r, 409, "POST /api/index")
            time.sleep(POLL_S)
        raise RuntimeError(f"no index job could start on {folder}")

    def finish_job(self, job: str) -> dict:
        state = self.wait(f"/api/jobs/{job}")
        if state["state"] == "done":
            self.w.jobs_done += 1
            self.w.indexed += state["summary"].get("indexed", 0)
        else:
            self.w.failures.append(f"index job failed: {state['error']}")
        return state

    # applies

    def page_apply_while_busy(self, plan: dict) -> str | None:
        """POST /api/apply while the job runs: refused (409), or, when the request reached the
        server after the job had ended (it waits for the read lock first), a run started."""
        r = self.http.post("/api/apply", json={"plan_id": plan["id"], "confirm": True})
        if r.status_code == 409:
            self.w.page_apply_busy_409 += 1
            return None
        self.expect(r, 202, "POST /api/apply during a job")
        self.w.page_apply_after_job += 1
        return r.json()["run"]

    def page_apply(self, plan: dict, run_id: str | None = None) -> None:
        if run_id is None:
            r = self.http.post("/api/apply", json={"plan_id": plan["id"], "confirm": True})
            self.expect(r, 202, "POST /api/apply")
            run_id = r.json()["run"]
        run = self.wait(f"/api/apply/{run_id}")
        if run["state"] != "done":
            raise RuntimeError(f"apply run failed: {run['error']}")
        self.w.page_applies += 1
        self.w.files_acted.update(run["result"]["counts"])

    def terminal_apply(self, plan: dict) -> subprocess.Popen:
        plan_path = Collection(self.library).plan_file(plan["id"])
        cmd = [sys.executable, "-m", "search.cli.app", "apply", str(plan_path), "--yes", "--wait"]
        cmd += ["--index", str(self.library), "--json"]
        return subprocess.Popen(
            cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def terminal_done(self, proc: subprocess.Popen, folder: Path) -> None:
        """While the terminal holds the lock, a page job must fail `library_busy`."""
        while proc.poll() is None:
            who = writer.holder(self.library)
            if who and who.get("pid") == proc.pid:
                self.page_job_while_terminal_writes(folder)
                break
            time.sleep(0.02)
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"terminal apply exited {proc.returncode}: {err.strip()[-300:]}")
        self.w.terminal_applies += 1
        self.w.terminal_waited += "waiting: pid" in err
        self.w.files_acted.update(json.loads(out)["counts"])

    def page_job_while_terminal_writes(self, folder: Path) -> None:
        r = self.http.post("/api/index", json={"path": str(folder)})  # indexed: nothing to add
        self.expect(r, 202, "POST /api/index")
        state = self.wait(f"/api/jobs/{r.json()['job']}")
        if state["state"] == "failed" and state["error"]["code"] == "library_busy":
            self.w.page_jobs_library_busy += 1
        elif state["state"] == "done":
            self.w.page_jobs_ran_anyway += 1  # the terminal had finished before the job began
        else:
            self.w.failures.append(f"index job during a terminal apply: {state['error']}")

    # undo and plans

    def put_back(self, plan: dict | None) -> None:
        """After a failed cycle: undo its plan if it was applied, so no file stays away."""
        if not plan:
            return
        try:
            self.undo(plan)
        except Exception as exc:
            self.w.failures.append(f"undo after a failed cycle: {exc}")

    def undo(self, plan: dict) -> None:
        r = self.http.post("/api/undo", json={"plan_id": plan["id"], "confirm": True})
        self.expect(r, 202, "POST /api/undo")
        run = self.wait(f"/api/apply/{r.json()['run']}")
        if run["state"] != "done":
            raise RuntimeError(f"undo run failed: {run['error']}")
        self.w.undos += 1
        self.w.files_restored.update(run["result"]["counts"])

    def make_plan(self, folder: Path, action: str) -> dict:
        body = {"threshold": PLAN_THRESHOLD, "within": str(folder), "action": action}
        if action == "move":
            body["move_to"] = str(self.root / "moved")
        r = self.http.post("/api/plan", json=body)
        self.expect(r, 200, "POST /api/plan")
        plan = r.json()
        self.fresh_ids[:] = list(plan["image_ids"].values()) or self.fresh_ids
        return plan

    # helpers

    def wait(self, url: str) -> dict:
        while (state := self.http.get(url).json())["state"] == "running":
            time.sleep(POLL_S)
        return state

    def expect(self, r: httpx.Response, status: int, what: str) -> None:
        if r.status_code != status:
            raise RuntimeError(f"{what} answered {r.status_code}: {r.text[:300]}")


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = harness.parser(__doc__, quick="smoke run: 20 s, 2 clients")
    parser.add_argument("--seconds", type=float, default=300.0, help="of load, in all")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.clients = 20.0, 2
    harness.tests_module("checkpoints").populate_hub_cache(HF_HOME / "hub")
    work = Path(tempfile.mkdtemp(prefix="dinosearch-bench-"))
    try:
        report = run(work, args.seconds, args.clients)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(HF_HOME, ignore_errors=True)
    harness.write_results("api_load", report, {"seconds": args.seconds, "clients": args.clients})


def private_env(work: Path) -> dict[str, str]:
    """The server's and the terminal's environment: a trash of their own, under `work`."""
    home = work / "home"
    (home / ".local" / "share").mkdir(parents=True)
    return {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share")}


def run(work: Path, seconds: float, clients: int) -> str:
    started = time.perf_counter()
    library, root, photos = prepare(work)
    env, log, fresh_ids = private_env(work), work / "serve.log", []
    live_server = harness.tests_module("live_server").live_server
    with (
        live_server(library, "--root", str(root), env=env, log_path=log) as url,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        base_ids = [base_id(http, p) for p in photos]
        readers = Readers(url, base_ids, photos[5].read_bytes(), fresh_ids)
        keeper = Writer(url, library, root, env, fresh_ids)
        keeper.start()
        readers.run(clients, seconds)
        keeper.stop.set()
        keeper.join(WRITER_STOP_TIMEOUT_S)
        images = http.get("/api/stats").json()["images"]
    wall = time.perf_counter() - started
    causes = server_causes(log)
    if causes:
        print(log.read_text()[-8000:], file=sys.stderr)
    after = aftermath(library, root, env)
    return render(seconds, clients, readers, keeper, images, causes, after, wall)


def base_id(http: httpx.Client, photo: Path) -> int:
    files = {"file": (photo.name, photo.read_bytes())}
    results = http.post("/api/search", files=files, data={"k": 3}).json()["results"]
    return next(r["id"] for r in results if r["path"] == str(photo))


def server_causes(log: Path) -> list[str]:
    """The exception lines of the server's log (a traceback's last, unindented line)."""
    lines = [x for x in log.read_text().splitlines() if x and not x.startswith(" ")]
    return sorted({x for x in lines if "Error:" in x or "Exception:" in x or "Error(" in x})


def aftermath(library: Path, root: Path, env: dict) -> dict:
    """`check --json` of the library, and whether every file of every folder is back."""
    out = subprocess.run(
        [sys.executable, "-m", "search.cli.app", "check", "--index", str(library), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    check = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {"ok": out.stderr}
    folders = [f for f in root.iterdir() if f.name != "moved"]
    per_folder = Folders.per_folder * len(list((SHARED / "photos-more").glob("*")))
    missing = sum(per_folder - len(list(f.iterdir())) for f in folders)
    moved = root / "moved"
    left_moved = sum(1 for p in moved.rglob("*") if p.is_file()) if moved.exists() else 0
    trash = Path(env["XDG_DATA_HOME"]) / "Trash" / "files"
    left_trash = len(list(trash.iterdir())) if trash.exists() else 0
    return {"check": check, "folders": len(folders), "missing": missing,
            "left_moved": left_moved, "left_trash": left_trash}  # fmt: skip


# --- the report --------------------------------------------------------------------------------


def row(name: str, tally: Tally, seconds: float) -> str:
    ms = np.array(tally.latencies) * 1000
    p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (float("nan"),) * 2
    s = tally.statuses
    five = sum(n for k, n in s.items() if _server_error(k))
    other = sum(n for k, n in s.items() if k not in (200, 404, 409) and not _server_error(k))
    return (
        f"| {name} | {len(ms)} | {s[200]} | {s[404]} | {s[409]} | {other} | {five} "
        f"| {p50:.1f} | {p99:.1f} | {len(ms) / seconds:.1f} |"
    )


NAMES = {
    "similar": "GET /api/images/{id}/similar?k=10",
    "search": "POST /api/search (500x500 PNG upload, k=10)",
    "thumbnail": "GET /api/images/{id}/thumbnail?size=64..512",
    "duplicates": f"GET /api/duplicates?threshold={PLAN_THRESHOLD}",
    "duplicates_auto": f"GET /api/duplicates (threshold=auto), 1 client every {AUTO_EVERY_S} s",
}


def render(seconds, clients, readers, keeper, images, causes, after, wall) -> str:
    w, t = keeper.w, readers.tallies
    total = sum(len(x.latencies) for x in t.values())
    fives = sum(n for x in t.values() for k, n in x.statuses.items() if _server_error(k))
    statuses = "; ".join(f"{e}: {dict(sorted(t[e].statuses.items(), key=str))}" for e in ENDPOINTS)
    check = after["check"]
    not_tried = w.terminal_applies - w.page_jobs_library_busy - w.page_jobs_ran_anyway
    return "\n".join(
        [
            "# API load: four endpoints under concurrent clients while jobs and applies write",
            "",
            f"{wall:.0f} s in all, set-up included; CPU only, the cores shared with other work."
            " Real server (`python -m"
            " search.cli.serve --root ROOT`) on 127.0.0.1; clients are httpx threads in the"
            " benchmark process. Model: the tests' tiny random-init DINOv2 (real architecture),"
            " so these figures are the serving stack, not DINOv2-S compute.",
            f"Library: 24 Kodak photos and {FOLDERS} folders of 111 JPEGs ({37 * FOLDERS} photos,"
            f" each also as an exact copy and a re-encode), {images} images at the end.",
            "",
            f"## Readers: {clients} clients, {seconds:g} s, {total} requests,"
            f" {fives} server errors",
            "",
            "| endpoint | requests | 200 | 404 | 409 | other | 5xx* | p50 ms | p99 ms | req/s |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *(row(NAMES[e], t[e], seconds) for e in ENDPOINTS),
            "",
            f"Status counts: {statuses}. *5xx or no answer (a dropped connection, a timeout)."
            " 404 and 409 are for images being trashed or moved by the"
            " writers at that moment (gone from disk, or not an indexed image any more).",
            "",
            f"## Writers: {w.cycles} cycles",
            "",
            "| write | completed |",
            "|---|---|",
            f"| page index jobs (POST /api/index), back to back | {w.jobs_done}"
            f" ({w.indexed} images indexed) |",
            "| page applies posted while a page job ran: refused 409 `busy` / reached the server"
            f" after the job ended | {w.page_apply_busy_409} / {w.page_apply_after_job} |",
            f"| page applies (POST /api/apply, confirm) | {w.page_applies} |",
            f"| terminal applies (`dinosearch apply PLAN --yes --wait`) | {w.terminal_applies}"
            f" ({w.terminal_waited} of them waited for the page's job) |",
            "| page index jobs started while a terminal apply held the lock: failed"
            " `library_busy` / got the lock after it / not tried (the apply ended first) |"
            f" {w.page_jobs_library_busy} / {w.page_jobs_ran_anyway} / {not_tried} |",
            f"| undos (POST /api/undo, confirm) | {w.undos} |",
            "",
            f"File outcomes: applies {dict(w.files_acted) or 'none'}, undos"
            f" {dict(w.files_restored) or 'none'}. Plans alternate trash and move (the groups"
            f" within the cycle's folder at threshold {PLAN_THRESHOLD}).",
            f"Writer failures: {'; '.join(w.failures) or 'none'}.",
            f"Exception lines in the server's log: {' | '.join(causes) or 'none'}.",
            "",
            f"After the run: `dinosearch check` ok: {check.get('ok')}"
            f" ({check.get('images')} images,"
            f" problems: {check.get('problems') or 'none'}); {after['folders']} folders, files"
            f" missing from them: {after['missing']}; left in moved/: {after['left_moved']}; left"
            f" in the trash: {after['left_trash']}.",
            "",
            HISTORY,
        ]
    )


HISTORY = """## History

- Before the FAISS temp-file fix (a3e6b25): 5 server errors in 2,079 requests.
- After it, four runs of the old two-phase bench (similar, then search; index jobs only, no
  applies): 1 server error (500) in 6,523 requests and 2 index jobs failed `internal`; the cause
  was not in the logs kept then.
- First run of this bench (a new folder each cycle, so the library grew to 2,709 images and
  throughput fell to 2,898 requests in 400 s): 1 server error, `KeyError: 1057` in
  `search/dups/run.py` `load_library`: GET /api/duplicates read the vectors, then their rows, and
  an apply removed a row in between. Fixed there (rows gone since the first read are left out);
  regression test in tests/test_api.py:
  `test_duplicates_survive_a_writer_removing_rows_between_their_reads`.
  The writer loop also had its own bug (an apply that reached the server after the job ended was
  not undone: 90 files left in the trash); both fixed before the run above.
"""


def _server_error(status: int | str) -> bool:
    """A 5xx, or no answer at all (a dropped connection counts as a server error here)."""
    return not isinstance(status, int) or status >= 500


if __name__ == "__main__":
    main()
