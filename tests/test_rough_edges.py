"""Rough edges a new user hit, each reproduced as they met it: a library on read-only media,
`check` after apply/undo, a query with a non-image, a library made of nothing, the first progress
tick, a keep reason naming equal values, and an unreachable hub."""

import datetime as dt
import functools
import gc
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import constants

from indexer import model as indexer_model
from indexer.library.store import Store
from search.cleanup.policy import Facts, parse_policy
from search.cli.progress import TerminalProgress
from tests.helpers import PHOTOS, ROOT, invoke, run_cli
from tests.live_server import free_port


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The stderr of a command that failed as a user should see it: one `Error:` line."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


# --- 1. a library on read-only media ------------------------------------------------------------

# In a private mount namespace the library is bind-mounted read-only (EROFS, as on a read-only
# card or share); that needs CAP_SYS_ADMIN. Else the files lose their write bits, which stops
# root only once it has dropped CAP_DAC_OVERRIDE (setpriv).
MOUNT_RO = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && shift && exec "$@"'
DROP_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


@functools.cache
def read_only_way() -> str | None:
    """How this machine can make a directory read-only for the CLI: mount, chmod or None."""
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"dinosearch-ro-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        if shutil.which("unshare"):
            cmd = ["unshare", "-m", "sh", "-c", MOUNT_RO, probe, "x", "touch", probe / "f"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if "Read-only file system" in done.stderr:
                return "mount"
        if os.geteuid() != 0:
            return "chmod"
        if shutil.which("setpriv"):
            probe.chmod(0o555)
            done = subprocess.run([*DROP_OVERRIDE, "touch", probe / "f"], capture_output=True)
            return "chmod" if done.returncode else None
        return None
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe, ignore_errors=True)


def run_read_only(library: Path, *args) -> subprocess.CompletedProcess:
    """The real CLI with `library` read-only, as on read-only media."""
    return read_only_process(library, [sys.executable, "-m", "search.cli.app", *map(str, args)])


def read_only_process(library: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run `command` with `library` read-only."""
    way = read_only_way()
    if way is None:
        pytest.skip("cannot make a directory read-only here (no mount namespace, no setpriv)")
    if way == "mount":
        command = ["unshare", "-m", "sh", "-c", MOUNT_RO, str(library), "x", *command]
    elif os.geteuid() == 0:
        command = [*DROP_OVERRIDE, *command]
    modes = {p: p.stat().st_mode for p in [library, *library.iterdir()]}
    if way == "chmod":
        for path in modes:
            path.chmod(path.stat().st_mode & ~0o222)
    try:
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def snapshot(library: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in library.iterdir()}


@pytest.fixture
def indexed(photos, library, tmp_path):
    """The photos and a byte-identical copy, indexed, and a plan that moves the copy."""
    shutil.copy2(photos / "kodim01.png", photos / "kodim01 copy.png")  # the copy goes
    invoke("index", photos, "--index", library, "--workers", "0")
    plan = tmp_path / "plan.json"
    invoke("dups", "--index", library, "--threshold", "0.999", "--plan", plan, "--action", "move")
    closed(library)
    return photos, library, plan


def closed(library: Path) -> None:
    """Let go of this process's connections: the library is left as a copy on read-only media
    would be, without WAL's -wal and -shm files (the case `mode=ro` alone cannot open)."""
    gc.collect()
    assert not [p for p in library.iterdir() if p.name.endswith(("-wal", "-shm"))]


def test_reading_commands_work_on_a_read_only_library(indexed):
    photos, library, _ = indexed
    check = run_read_only(library, "check", "--index", library, "--json")
    assert check.returncode == 0 and json.loads(check.stdout)["ok"], check.stdout + check.stderr
    # without its FAISS file (copied without it, say) the index is built in memory, not saved
    next(p for p in library.iterdir() if p.suffix == ".faiss").unlink()
    before = snapshot(library)

    info = run_read_only(library, "info", "--index", library, "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["model"] == "facebook/dinov2-small" and data["index"]["vectors"] == 9
    target = sorted(photos.glob("kodim*.png"))[3]
    query = run_read_only(library, "query", target, "--index", library, "--json", "-k", "2")
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["results"][0]["path"] == str(target)
    dups = run_read_only(library, "dups", "--index", library, "--threshold", "0.9", "--json")
    assert dups.returncode == 0, dups.stderr
    groups = [{m["path"] for m in g["members"]} for g in json.loads(dups.stdout)["groups"]]
    assert any({str(photos / "kodim01.png"), str(photos / "kodim01 copy.png")} <= g for g in groups)
    assert snapshot(library) == before


@pytest.mark.parametrize(
    "command",
    [
        ["index", "{photos}"],
        ["apply", "{plan}", "--yes", "--to", "{tmp}/moved"],
        ["undo", "--last"],
        ["calibrate"],
        ["dups"],  # --threshold auto must calibrate and store the result first
        ["dups", "--mark-distinct", "{photos}/kodim01 copy.png", "{photos}/kodim01.png"],
        ["check", "--repair"],  # with something to repair: the FAISS file is gone
    ],
    ids=lambda c: " ".join(c[:2]).replace("{", "").replace("}", ""),
)
def test_writing_commands_on_a_read_only_library_fail_in_one_line(indexed, tmp_path, command):
    photos, library, plan = indexed
    if command[0] == "undo":
        invoke("apply", plan, "--index", library, "--yes", "--to", tmp_path / "moved")
        closed(library)
    if command[0] == "check":
        next(p for p in library.iterdir() if p.suffix == ".faiss").unlink()
    args = [a.format(photos=photos, plan=plan, tmp=tmp_path) for a in command]
    before = snapshot(library)
    proc = run_read_only(library, *args, "--index", library)
    line = one_error_line(proc)
    assert line.startswith(f"Error: library {library} is read-only ("), line
    assert "needs to write to it" in line
    assert snapshot(library) == before
    assert (photos / "kodim01 copy.png").exists() == (command[0] != "undo")


SERVE_READ_ONLY = """
import json, sys
from fastapi.testclient import TestClient
from search.web.app import create_app
from search.collection import Collection

with TestClient(create_app(Collection(sys.argv[1])), base_url="http://127.0.0.1") as c:
    answers = {
        "stats": c.get("/api/stats"),
        "similar": c.get("/api/images/1/similar", params={"k": 2}),
        "duplicates": c.get("/api/duplicates", params={"threshold": "0.9"}),
        "plan": c.post("/api/plan", json={"threshold": "0.9"}),
        "decide": c.post("/api/duplicates/decisions", json={"action": "distinct", "ids": [1, 2]}),
    }
print(json.dumps({k: [r.status_code, r.json()] for k, r in answers.items()}))
"""


def test_the_api_reads_a_read_only_library_and_refuses_writes(indexed):
    _, library, _ = indexed
    before = snapshot(library)
    proc = read_only_process(library, [sys.executable, "-c", SERVE_READ_ONLY, str(library)])
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    assert {k: v[0] for k, v in answers.items()} == {
        "stats": 200,
        "similar": 200,
        "duplicates": 200,
        "plan": 200,  # kept in memory: a read-only library cannot be applied to anyway
        "decide": 409,
    }
    assert answers["decide"][1]["error"]["code"] == "read_only_library"
    assert snapshot(library) == before


def test_creating_a_library_under_a_read_only_folder_fails_in_one_line(photos, tmp_path):
    parent = tmp_path / "media"
    parent.mkdir()
    proc = run_read_only(parent, "index", photos, "--index", parent / "library")
    assert "is read-only (" in one_error_line(proc)
    assert list(parent.iterdir()) == []


# --- 2. check agrees right after apply and undo -------------------------------------------------


def check_json(library) -> dict:
    return json.loads(invoke("check", "--index", library, "--json", expect=None).stdout)


def test_check_agrees_right_after_apply_and_undo(indexed, tmp_path):
    _, library, plan = indexed
    invoke("apply", plan, "--index", library, "--yes", "--to", tmp_path / "moved")
    after_apply = check_json(library)
    assert after_apply["ok"], after_apply["problems"]
    assert after_apply["index_generation"] == after_apply["generation"]
    invoke("undo", "--last", "--index", library)
    after_undo = check_json(library)
    assert after_undo["ok"], after_undo["problems"]
    assert after_undo["images"] == 9


# --- 3. a query with a non-image fails before the model loads -----------------------------------


def test_a_query_that_is_no_image_fails_before_the_model_loads(
    photos, library, tmp_path, monkeypatch
):
    invoke("index", photos, "--index", library, "--workers", "0")
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")
    outside = tmp_path / "outside.png"  # not indexed: would need the model
    shutil.copy(sorted(photos.glob("*.png"))[0], outside)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded for a query that cannot be answered")

    monkeypatch.setattr("indexer.model.load", no_model)
    for images in ([notes], [outside, notes]):
        result = invoke("query", *images, "--index", library, expect=1)
        assert result.stderr.startswith(f"Error: query image {notes}: not an image"), result.stderr


# --- 4. an index run that embeds nothing leaves no library --------------------------------------


def test_indexing_an_empty_folder_leaves_no_library(tmp_path, library):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("index", empty, "--index", library)
    assert "nothing was embedded" in result.stdout
    assert not library.exists()
    info = invoke("info", "--index", library, expect=1)
    assert "no library at" in info.stderr


@pytest.mark.parametrize("model", ["nosuch", "nosuch/model"])
def test_a_model_that_cannot_load_leaves_no_library_folder(photos, tmp_path, model):
    library = tmp_path / "new" / "deeper" / "library"
    result = invoke("index", photos, "--index", library, "--model", model, expect=2)
    assert result.stderr.startswith("Error: ")
    assert not (tmp_path / "new").exists()


def test_a_failed_run_keeps_an_existing_empty_folder(photos, tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    invoke("index", photos, "--index", library, "--model", "nosuch/model", expect=2)
    assert library.is_dir() and list(library.iterdir()) == []


def test_info_never_prints_none(tmp_path):
    library = tmp_path / "library"
    Store.open(library, create=True).close()  # a library without a model (older versions made it)
    out = invoke("info", "--index", library).stdout
    assert "None" not in out and "model:   none yet (nothing embedded)" in out


# --- 5. the first progress tick -----------------------------------------------------------------


def test_progress_shows_no_rate_until_it_means_something(monkeypatch):
    clock = iter([100.0, 100.0 + 1e-7, 101.0, 102.0])
    monkeypatch.setattr("search.cli.progress.time.monotonic", lambda: next(clock))
    stream = io.StringIO()
    progress = TerminalProgress(stream, enabled=True)
    progress("embed", 16, 1000)  # the first batch: done, but over no time we saw
    progress("embed", 17, 1000)  # a tenth of a microsecond later: redraw is throttled
    progress("embed", 32, 1000)
    progress("embed", 48, 1000)
    lines = stream.getvalue().split("\r")[1:]
    assert lines[0].split() == ["embedding", "16/1000", "-/s", "ETA", "-"]
    assert lines[1].split() == ["embedding", "32/1000", "16.0/s", "ETA", "1m00s"]
    assert lines[2].split()[:3] == ["embedding", "48/1000", "16.0/s"]


# --- 6. a keep reason names the value that differs ----------------------------------------------


def mtime_ns(*parts: int, ms: int = 0, us: int = 0) -> int:
    whole = int(dt.datetime(*parts).timestamp())  # local time, as the reason shows it
    return whole * 10**9 + ms * 10**6 + us * 10**3


@pytest.mark.parametrize(
    "kept, other, shown",
    [
        ((21, 29, 3, 120, 0), (21, 29, 3, 480, 0), ("21:29:03.120", "21:29:03.480")),
        ((21, 29, 3, 0, 0), (21, 29, 8, 0, 0), ("21:29:03", "21:29:08")),
        ((21, 29, 3, 120, 0), (21, 29, 3, 120, 7), ("21:29:03.120000", "21:29:03.120007")),
        ((21, 29, 3, 0, 0), (21, 31, 0, 0, 0), ("21:29", "21:31")),
    ],
)
def test_an_age_reason_shows_the_times_as_they_differ(kept, other, shown):
    h, m, s, ms, us = kept
    old = Facts("/p/a.jpg", 10, 10, 100, mtime_ns(2026, 12, 1, h, m, s, ms=ms, us=us))
    h, m, s, ms, us = other
    new = Facts("/p/b.jpg", 10, 10, 100, mtime_ns(2026, 12, 1, h, m, s, ms=ms, us=us))
    for policy, first, second in (("oldest", old, new), ("newest", new, old)):
        ranked = parse_policy(policy).rank([second, first])
        reason = parse_policy(policy).explain(*ranked)
        a, b = shown if policy == "oldest" else shown[::-1]
        assert reason["kept"] == f"2026-12-01 {a} (file)"
        assert reason["runner_up"] == f"2026-12-01 {b} (file)"
        assert reason["text"].startswith(f"{policy}: {reason['kept']} beats {reason['runner_up']}")


def test_a_complete_tie_between_byte_identical_copies_says_so():
    when = mtime_ns(2026, 12, 1, 21, 29, 3)
    a = Facts("/p/a.jpg", 10, 10, 100, when, hash="f00d")
    b = Facts("/p/b/a.jpg", 10, 10, 100, when, hash="f00d")
    policy = parse_policy("resolution > largest-file > oldest")
    reason = policy.explain(*policy.rank([b, a]))
    assert reason["criterion"] == "path"
    assert reason["text"].startswith("byte-identical copies (same SHA-256): every criterion ties")
    other = Facts("/p/c.jpg", 10, 10, 100, when, hash="beef")
    assert "byte-identical" not in policy.explain(a, other)["text"]


# --- 7. an unreachable hub is known in seconds --------------------------------------------------


class SilentHub:
    """A loopback listener that accepts connections and never answers (a hub that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_hub():
    hub = SilentHub()
    yield hub
    hub.close()


def cli_process(*args, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real CLI in exactly this environment (run_cli adds to the test's, offline, one)."""
    command = [sys.executable, "-m", "search.cli.app", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)


def online_env(endpoint: str, hf_home: Path | None = None) -> dict[str, str]:
    """The test environment with the hub online (HF_HUB_OFFLINE unset) at `endpoint`."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env["HF_ENDPOINT"] = endpoint
    if hf_home is not None:
        env.update(HF_HOME=str(hf_home), HF_HUB_CACHE=str(hf_home / "hub"))
    return env


def test_an_unreachable_hub_fails_fast_with_the_clear_error(photos, tmp_path):
    library = tmp_path / "library"
    env = online_env(f"http://127.0.0.1:{free_port()}", tmp_path / "empty-hf")  # nothing listens
    started = time.monotonic()
    proc = cli_process("index", photos, "--index", library, env=env)
    seconds = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: weights for facebook/dinov2-small are not available:")
    assert "Retrying" not in proc.stderr and "thrown while requesting" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 5, f"{seconds:.1f} s to find the hub unreachable"
    assert not library.exists()


def test_a_hub_that_never_answers_is_given_up_on_after_the_probe(silent_hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", silent_hub.url)
    started = time.monotonic()
    why = indexer_model.hub_unreachable()
    assert why and silent_hub.url in why
    assert time.monotonic() - started < indexer_model.HUB_PROBE_TIMEOUT_S + 1


def test_a_cached_model_loads_without_asking_a_hub_that_hangs(photos, library, silent_hub):
    proc = cli_process("index", photos, "--index", library, env=online_env(silent_hub.url))
    assert proc.returncode == 0 and "8 indexed" in proc.stdout, proc.stderr
    assert silent_hub.accepted == [], "a cached model load connected to the hub"


def test_a_usage_mistake_is_one_error_line_too(tmp_path):
    proc = run_cli("apply", tmp_path / "nosuchplan.json", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "nosuchplan.json" in lines[0]
    assert "dinosearch apply --help" in lines[0]


def test_dups_within_a_folder_with_nothing_indexed_says_so(photos, library, tmp_path):
    run_cli("index", photos, "--index", library, "--workers", "0")
    (tmp_path / "empty").mkdir()
    for within in (tmp_path / "typo", tmp_path / "empty"):
        proc = run_cli(
            "dups", "--index", library, "--threshold", "0.9", "--within", within, check=False
        )
        assert proc.returncode == 1 and "no indexed image lies under" in proc.stderr, proc.stderr


def test_against_names_the_new_files(photos, library, tmp_path):
    run_cli("index", photos, "--index", library, "--workers", "0")
    card = tmp_path / "card"
    card.mkdir()
    known = sorted(photos.iterdir())[0]
    shutil.copy(known, card / "DSC_0001.png")
    shutil.copy(PHOTOS / "kodim20.png", card / "DSC_0002.png")  # not among the 8 indexed
    args = ("dups", "--index", library, "--threshold", "0.999", "--against", card)
    out = json.loads(run_cli(*args, "--json").stdout)
    assert out["stats"]["checked"] == 2 and out["new"] == [str(card / "DSC_0002.png")]
    human = run_cli(*args).stdout
    assert "2 checked: 1 already in the library, 1 new:" in human and "DSC_0002.png" in human


def test_apply_without_an_answer_says_how_to_go_on(photos, library, tmp_path):
    shutil.copy(sorted(photos.iterdir())[0], photos / "copy.png")
    run_cli("index", photos, "--index", library, "--workers", "0")
    plan = tmp_path / "plan.json"
    run_cli("dups", "--index", library, "--threshold", "0.999", "--plan", plan)
    proc = run_cli("apply", plan, "--index", library, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "add --yes" in proc.stderr, proc.stderr
    assert (photos / "copy.png").exists()
    dry = run_cli("apply", plan, "--index", library, "--dry-run").stdout
    assert "dry run, nothing changed: 1 would be done" in dry
