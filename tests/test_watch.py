"""Watched folders and one writer per library, with real file operations and real processes:
`index --watch` keeps the library current through adds, edits, moves, folder renames, deletes
and an unmounted root; a second writer waits or is told who holds the library."""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer.errors import LibraryBusy
from indexer.library import writer
from indexer.watch import Watcher
from search.collection import Collection
from search.web.app import create_app
from search.web.watching import start_watch
from tests.helpers import PHOTOS, ROOT, copy_photos, library_paths, run_cli
from tests.live_server import live_server

BASE_URL = "http://127.0.0.1:8000"  # a loopback Host, as the guard wants
FAST = {"quiet_s": 0.3, "max_delay_s": 3.0, "check_s": 0.2}


def next_batch(watcher: Watcher, timeout_s: float = 10.0, expect: bool = True):
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    try:
        batch = watcher.next_batch(stop)
    finally:
        timer.cancel()
    assert (batch is not None) == expect, batch
    return batch


# --- the watcher: events become batches of folders ----------------------------------------------


def test_events_become_one_batch_of_the_topmost_folders(tmp_path):
    root = tmp_path / "photos"
    (root / "2024" / "june").mkdir(parents=True)
    with Watcher([root], skip=[tmp_path / "lib"], **FAST) as w:
        copy_photos(root / "2024" / "june", 3)
        shutil.copy(PHOTOS / "kodim04.png", root / "2024" / "a.png")
        batch = next_batch(w)
    assert batch.roots == [str(root / "2024")]  # june lies below 2024: walked once
    assert batch.events >= 4


def test_what_is_not_an_image_hidden_or_the_library_makes_no_batch(tmp_path):
    root = tmp_path / "photos"
    lib = root / ".dinosearch"
    lib.mkdir(parents=True)
    (root / "notes").mkdir()
    with Watcher([root], skip=[lib], exclude=["notes/*"], **FAST) as w:
        (root / "readme.txt").write_text("not an image")
        (root / ".partial.jpg").write_bytes(b"hidden")
        (lib / "library.db").write_bytes(b"the library's own writes")
        shutil.copy(PHOTOS / "kodim01.png", root / "notes" / "excluded.png")
        next_batch(w, timeout_s=1.5, expect=False)
        shutil.copy(PHOTOS / "kodim02.png", root / "seen.png")
        batch = next_batch(w)
    assert batch.roots == [str(root)]


def test_a_root_that_goes_away_is_gone_then_back(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    copy_photos(root, 1)
    with Watcher([root], **FAST) as w:
        root.rename(tmp_path / "elsewhere")
        assert next_batch(w).gone == [str(root)]
        root.mkdir()  # an unmounted drive's empty mount point is not "back"
        time.sleep(0.6)
        root.rmdir()
        (tmp_path / "elsewhere").rename(root)
        batch = next_batch(w)
    assert batch.back == [str(root)] and not batch.gone


def test_watch_refuses_what_is_not_a_folder(tmp_path):
    f = tmp_path / "one.png"
    shutil.copy(PHOTOS / "kodim01.png", f)
    proc = run_cli("index", f, "--index", tmp_path / "lib", "--watch", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: --watch needs folders")
    assert "Traceback" not in proc.stderr


def test_a_missing_root_removes_nothing(tmp_path):
    photos = tmp_path / "photos"
    copy_photos(photos, 2)
    coll = Collection(tmp_path / "lib")
    coll.index([photos])
    before = library_paths(tmp_path / "lib")
    photos.rename(tmp_path / "unmounted")
    summary = coll.index([photos])
    coll.close()
    assert summary.removed == 0 and library_paths(tmp_path / "lib") == before


# --- index --watch, a real process --------------------------------------------------------------


def _terminal_signals() -> None:
    """Ctrl-C as a terminal gives it, whatever the test runner's: a job a script starts in the
    background (`pytest ... &`) ignores SIGINT, and its children inherit that, so a watch would
    never hear the test's Ctrl-C (the full suite hung here when started so)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class WatchProcess:
    """`dinosearch index FOLDER --watch --json` and its JSON lines, read as they come."""

    def __init__(self, folder: Path, library: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "search.cli.app", "index", str(folder), "--index",
             str(library), "--watch", "--json", "--workers", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"}, preexec_fn=_terminal_signals,
        )  # fmt: skip
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def wait_for(self, count: int, timeout_s: float = 90.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while len(self.lines) < count:
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline, f"only {len(self.lines)} lines: {self.lines}"
            time.sleep(0.1)
        return self.lines[count - 1]

    def stop(self, how: signal.Signals = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(how)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # show where it hangs: faulthandler dumps on SIGABRT
            self.proc.send_signal(signal.SIGABRT)
            _, err = self.proc.communicate(timeout=30)
            pytest.fail(f"still running 30 s after Ctrl-C; its threads then:\n{err[-6000:]}")
        return self.proc.returncode, err


def test_index_watch_follows_adds_edits_moves_renames_and_deletes(tmp_path):
    photos, library = tmp_path / "photos", tmp_path / "lib"
    (photos / "a").mkdir(parents=True)
    copy_photos(photos / "a", 3)
    watch = WatchProcess(photos, library)
    try:
        first = watch.wait_for(1)
        assert first["batch"] is None and first["summary"]["indexed"] == 3

        shutil.copy(PHOTOS / "kodim05.png", photos / "a" / "new.png")  # added
        assert watch.wait_for(2)["summary"]["embedded"] == 1

        with Image.open(photos / "a" / "new.png") as img:  # edited in place
            img.convert("L").convert("RGB").save(photos / "a" / "new.png")
        assert watch.wait_for(3)["summary"]["embedded"] == 1

        (photos / "a").rename(photos / "renamed")  # a folder renamed: vectors kept
        line = watch.wait_for(4)
        assert line["summary"]["moved"] == 4 and line["summary"]["embedded"] == 0

        (photos / "renamed" / "new.png").unlink()  # deleted
        assert watch.wait_for(5)["summary"]["removed"] == 1
        code, err = watch.stop()
    finally:
        if watch.proc.poll() is None:
            watch.proc.kill()
    assert code == 0 and "stopped watching" in err and "Traceback" not in err
    assert library_paths(library) == {str(p) for p in (photos / "renamed").iterdir()}
    assert run_cli("check", "--index", library).returncode == 0


def test_index_watch_keeps_an_unmounted_folder_and_catches_up_on_return(tmp_path):
    photos, library = tmp_path / "photos", tmp_path / "lib"
    copy_photos(photos, 2)
    watch = WatchProcess(photos, library)
    try:
        watch.wait_for(1)
        photos.rename(tmp_path / "drive")  # the drive is unplugged
        assert watch.wait_for(2)["batch"]["gone"] == [str(photos)]
        assert len(library_paths(library)) == 2
        shutil.copy(PHOTOS / "kodim06.png", tmp_path / "drive" / "while_away.png")
        (tmp_path / "drive").rename(photos)  # ... and comes back with a new photo
        line = watch.wait_for(3)
        assert line["batch"]["back"] == [str(photos)] and line["summary"]["embedded"] == 1
        watch.stop()
    finally:
        if watch.proc.poll() is None:
            watch.proc.kill()
    assert len(library_paths(library)) == 3


# --- two writers --------------------------------------------------------------------------------


def test_a_second_index_is_told_who_holds_the_library(tmp_path):
    photos, library = tmp_path / "photos", tmp_path / "lib"
    copy_photos(photos, 2)
    library.mkdir()
    with writer.writing(library, "apply plan 1234abcd"):
        proc = run_cli("index", photos, "--index", library, check=False)
    assert proc.returncode == 75
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"pid {os.getpid()}" in line and "apply plan 1234abcd" in line and "since" in line
    assert not library_paths(library)  # nothing was written meanwhile


def test_index_wait_waits_for_the_writer_then_indexes(tmp_path):
    photos, library = tmp_path / "photos", tmp_path / "lib"
    copy_photos(photos, 2)
    library.mkdir()
    held = threading.Event()

    def hold():
        with writer.writing(library, "index elsewhere"):
            held.set()
            time.sleep(4)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    started = time.monotonic()
    proc = run_cli("index", photos, "--index", library, "--wait")
    thread.join()
    assert time.monotonic() - started >= 3.5
    assert "waiting: pid" in proc.stderr and len(library_paths(library)) == 2


def test_two_index_processes_at_once_one_waits_none_corrupts(tmp_path):
    folders = [tmp_path / "one", tmp_path / "two"]
    for i, folder in enumerate(folders):
        copy_photos(folder, 3 + i)
    library = tmp_path / "lib"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "search.cli.app",
                "index",
                str(f),
                "--index",
                str(library),
                "--wait",
                "--json",
                "--batch-size",
                "1",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for f in folders
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(library_paths(library)) == 7
    assert run_cli("check", "--index", library).returncode == 0


def test_apply_and_undo_refuse_while_the_library_is_written(dup_lib, tmp_path):
    _, library = dup_lib
    plan = tmp_path / "plan.json"
    run_cli("dups", "--index", library, "--plan", plan)
    with writer.writing(library, "index ~/Pictures"):
        proc = run_cli("apply", plan, "--yes", "--index", library, check=False)
        assert proc.returncode == 75 and "index ~/Pictures" in proc.stderr
        assert writer.holder(library)["doing"] == "index ~/Pictures"
    assert writer.holder(library) is None
    run_cli("apply", plan, "--yes", "--index", library)
    with writer.writing(library, "index ~/Pictures"):
        proc = run_cli("undo", "--last", "--index", library, check=False)
        assert proc.returncode == 75 and "busy" in proc.stderr


def test_the_lock_dies_with_a_killed_holder(tmp_path):
    library = tmp_path / "lib"
    library.mkdir()
    code = (
        "import sys, time; from indexer.library import writer\n"
        f"with writer.writing({str(library)!r}, 'index big'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(LibraryBusy, match=f"pid {proc.pid}"):
        with writer.writing(library, "index"):
            pass
    proc.kill()
    proc.wait()
    with writer.writing(library, "index"):  # no stale lock after kill -9
        assert writer.holder(library) is None or writer.holder(library)["pid"] == os.getpid()


def test_the_pages_index_job_reports_a_busy_library(tmp_path):
    photos, library = tmp_path / "photos", tmp_path / "lib"
    copy_photos(photos, 1)
    Collection(library).index([photos])
    app = create_app(Collection(library), root=[tmp_path])
    with (
        TestClient(app, base_url=BASE_URL) as client,
        writer.writing(library, "index from a terminal"),
    ):
        job = client.post("/api/index", json={"path": str(photos)}).json()["job"]
        deadline = time.monotonic() + 30
        while (body := client.get(f"/api/jobs/{job}").json())["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert body["state"] == "failed"
    assert body["error"]["code"] == "library_busy"
    assert "index from a terminal" in body["error"]["message"]


# --- serve --watch ------------------------------------------------------------------------------


def test_serve_watch_indexes_new_files_as_jobs(tmp_path, monkeypatch):
    monkeypatch.setattr("indexer.watch.QUIET_S", 0.3)
    photos, library = tmp_path / "photos", tmp_path / "lib"
    copy_photos(photos, 2)
    app = create_app(Collection(library))
    with TestClient(app, base_url=BASE_URL) as client:
        watching = start_watch(app.state.dinosearch, [str(photos)])
        try:
            wait_for(lambda: client.get("/api/watch").json()["batches"] == 0
                     and client.get("/api/watch").json()["state"] == "watching")  # fmt: skip
            assert client.get("/api/stats").json()["images"] == 2
            shutil.copy(PHOTOS / "kodim08.png", photos / "new.png")
            wait_for(lambda: client.get("/api/watch").json()["batches"] >= 1)
            status = client.get("/api/watch").json()
            assert status["last"]["summary"]["embedded"] == 1 and status["state"] == "watching"
            assert status["folders"] == [str(photos)]
            wait_for(lambda: client.get("/api/stats").json()["images"] == 3)
        finally:
            watching.stop.set()


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_serve_watch_on_the_page(tmp_path, browser):
    """A real `serve --watch`: a photo copied into the folder shows up on the page's watch line
    and in its image count, without a reload."""
    photos, library = tmp_path / "photos", tmp_path / "lib"
    copy_photos(photos, 2)
    with live_server(library, "--watch", str(photos)) as url:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function(
            "document.getElementById('stats').textContent.startsWith('2 images')", timeout=60_000
        )
        assert page.locator("#watch").is_visible()
        assert f"Watching {photos}" in page.locator("#watch").inner_text()
        shutil.copy(PHOTOS / "kodim09.png", photos / "new.png")
        page.wait_for_function(
            "document.getElementById('watch').textContent.includes('last change')",
            timeout=60_000,
        )
        page.wait_for_function(
            "document.getElementById('stats').textContent.startsWith('3 images')", timeout=30_000
        )
        assert "1 indexed" in page.locator("#watch").inner_text()
        page.screenshot(path=str(tmp_path / "watch.png"))
        page.close()
    assert errors == []


def test_index_watch_stops_on_sigterm_even_where_ctrl_c_is_ignored(tmp_path):
    """A watch a script started in the background ignores SIGINT (the shell's rule for `&`);
    `kill` (SIGTERM), as systemd and `docker stop` send it, stops it as Ctrl-C does."""
    photos, library = tmp_path / "photos", tmp_path / "lib"
    copy_photos(photos, 2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.cli.app", "index", str(photos), "--index", str(library),
         "--watch", "--json", "--workers", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `cmd &` in a script
    )  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 90)  # never a hung suite
        assert ready, "no first line within 90 s"
        assert json.loads(proc.stdout.readline())["summary"]["indexed"] == 2
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped watching" in err and "Traceback" not in err
    assert len(library_paths(library)) == 2
