"""Kills while the FAISS file is written, a full disk, and queries racing an index job: the
library stays consistent and usable, and `dinosearch check` agrees once the job is re-run."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from search.collection import Collection
from search.upkeep.check import check_library
from tests.helpers import (
    PHOTOS,
    ROOT,
    index_command,
    invoke,
    make_plan,
    run_cli,
    stored_rows,
)
from tests.helpers import library_paths as stored_paths

# Runs the real CLI with an audit hook that SIGKILLs the process at one moment of the index save.
# No product code changes: Python's audit events fire inside os.replace / open / os.unlink.
KILL_AT = """
import os, signal, sys
moment = sys.argv.pop(1)
def hook(event, args):
    name = os.fsdecode(args[0]) if args and isinstance(args[0], (str, bytes)) else ""
    if moment == "before_fsync" and event == "open" and name.endswith(".tmp"):
        os.kill(os.getpid(), signal.SIGKILL)
    if moment == "before_rename" and event == "os.rename" and name.endswith(".tmp"):
        os.kill(os.getpid(), signal.SIGKILL)
    if moment == "before_cleanup" and event == "os.remove" and name.endswith(".faiss"):
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
from search.cli.app import main
sys.argv[0] = "dinosearch"
main()
"""


def index_killed_at(
    moment: str, folder, library, *extra: str, **run
) -> subprocess.CompletedProcess:
    """`dinosearch index FOLDER --workers 0 EXTRA` under KILL_AT's hook, killed at `moment`."""
    command = ["index", str(folder), "--index", str(library), "--workers", "0", *extra]
    return subprocess.run(
        [sys.executable, "-c", KILL_AT, moment, *command], cwd=ROOT, timeout=300, **run
    )


def state(library) -> dict:
    return {r["path"]: (r["hash"], r["status"], r["vector"]) for r in stored_rows(library)}


def integrity(library) -> str:
    with sqlite3.connect(library / "library.db") as conn:
        return conn.execute("pragma integrity_check").fetchone()[0]


def copy_photos(folder, names):
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy2(PHOTOS / name, folder / name)
    return folder


FIRST = [f"kodim{i:02d}.png" for i in range(1, 4)]
MORE = [f"kodim{i:02d}.png" for i in range(4, 7)]


@pytest.mark.parametrize("moment", ["before_fsync", "before_rename", "before_cleanup"])
def test_kill_9_while_the_index_file_is_written(tmp_path, moment):
    folder = copy_photos(tmp_path / "photos", FIRST)
    library, reference = tmp_path / "lib", tmp_path / "ref"
    run_cli("index", folder, "--index", library, "--workers", "0")
    copy_photos(folder, MORE)
    run_cli("index", folder, "--index", reference, "--workers", "0")

    proc = index_killed_at(moment, folder, library, "--json", capture_output=True, text=True)
    assert proc.returncode == -9, (moment, proc.returncode, proc.stderr[-2000:])
    assert integrity(library) == "ok"
    assert state(library) == state(reference) or moment != "before_cleanup"
    # usable as it is: a query rebuilds whatever index file is missing or stale
    hits = Collection(library).query([str(folder / MORE[0])], k=3).results
    assert hits[0].path == str(folder / MORE[0])

    run_cli("index", folder, "--index", library, "--workers", "0")
    assert {p: v[:2] for p, v in state(library).items()} == {
        p: v[:2] for p, v in state(reference).items()
    }
    for path, (_, _, vector) in state(reference).items():
        np.testing.assert_allclose(
            np.frombuffer(state(library)[path][2], np.float32),
            np.frombuffer(vector, np.float32),
            atol=1e-6,
        )
    assert check_library(library).problems == []


@pytest.mark.parametrize("moment", ["before_rename", "before_cleanup"])
def test_kill_9_leaves_no_leftover_files_after_rerun(tmp_path, moment):
    folder = copy_photos(tmp_path / "photos", FIRST)
    library = tmp_path / "lib"
    run_cli("index", folder, "--index", library, "--workers", "0")
    copy_photos(folder, MORE)
    index_killed_at(moment, folder, library, capture_output=True)
    run_cli("index", folder, "--index", library, "--workers", "0")
    assert not list(library.glob(".*.tmp")) and len(list(library.glob("*.faiss"))) == 1
    assert check_library(library).ok


# --- full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 3 MiB tmpfs of our own (root), or skip saying why."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount, leave_bytes: int):
    free = shutil.disk_usage(mount).free
    filler = mount / "filler"
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


@pytest.mark.parametrize("leave_kib", [0, 24, 64])
def test_full_disk_keeps_the_previous_library(small_fs, tmp_path, leave_kib):
    folder = copy_photos(tmp_path / "photos", FIRST)
    library = small_fs / "lib"
    run_cli("index", folder, "--index", library, "--workers", "0")
    before = state(library)
    copy_photos(folder, [f"kodim{i:02d}.png" for i in range(4, 25)])
    filler = fill(small_fs, leave_kib << 10)

    proc = run_cli("index", folder, "--index", library, "--workers", "0", check=False)
    if proc.returncode == 0:  # it fitted: then it must all be there
        assert len(state(library)) == 24
    filler.unlink()
    assert integrity(library) == "ok"
    after = state(library)
    assert {p: after[p] for p in before} == before  # nothing committed before was lost
    hits = Collection(library).query([str(folder / FIRST[0])], k=2).results
    assert hits[0].path == str(folder / FIRST[0])
    run_cli("index", folder, "--index", library, "--workers", "0")
    assert len(state(library)) == 24 and check_library(library).ok
    if proc.returncode != 0:
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert proc.stderr.startswith("Error:") and "space" in proc.stderr.lower()


# --- concurrent readers -------------------------------------------------------------------------


@pytest.mark.parametrize("readers", [1, 2])  # 2: threads of one process save one generation
def test_queries_while_an_index_job_writes(tmp_path, readers):
    folder = copy_photos(tmp_path / "photos", FIRST)
    library = tmp_path / "lib"
    run_cli("index", folder, "--index", library, "--workers", "0")
    copy_photos(folder, [f"kodim{i:02d}.png" for i in range(4, 25)])
    writer = subprocess.Popen(
        index_command(library, folder),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: list[str] = []
    latencies: list[float] = []

    def reader():
        coll = Collection(library)
        while writer.poll() is None:
            started = time.perf_counter()
            try:
                hits = coll.query([str(folder / FIRST[0])], k=5).results
                assert hits and hits[0].path == str(folder / FIRST[0])
                coll.info()
            except Exception as exc:  # any error at all is a failure of the promise
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - started)
        coll.close()

    threads = [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    out, err = writer.communicate(timeout=600)
    for t in threads:
        t.join()
    assert writer.returncode == 0, err
    assert json.loads(out)["indexed"] == 21
    assert errors == [] and len(latencies) > 5
    Collection(library).vector_index()  # a reader may have saved an older generation last
    assert check_library(library).ok


# --- kills during undo (bench/kill_apply.py found these) ----------------------------------------

# `dinosearch undo` under an audit hook that SIGKILLs it as it removes a .trashinfo: the trashed
# file is back in place, its journal row still says done (the window bench/kill_apply.py hit).
UNDO_KILLED_AFTER_RESTORE = """
import os, signal, sys
def hook(event, args):
    if event == "os.remove" and os.fsdecode(args[0]).endswith(".trashinfo"):
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
from search.cli.app import main
sys.argv[0] = "dinosearch"
main()
"""


def test_undo_killed_after_putting_a_file_back_finishes_on_rerun(dup_lib, tmp_path, trash):
    folder, library = dup_lib
    before, rows_before = sorted(os.listdir(folder)), sorted(stored_paths(library))
    plan_path = tmp_path / "plan.json"
    make_plan(library).write(str(plan_path))
    invoke("apply", plan_path, "--yes")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(trash.parent)}
    killed = subprocess.run(
        [sys.executable, "-c", UNDO_KILLED_AFTER_RESTORE, "undo", str(plan_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(os.listdir(trash / "files")) == 1  # one file back, its row not yet marked undone

    undone = json.loads(invoke("undo", plan_path, "--json").stdout)
    assert undone["counts"] == {"undone": 2}, undone
    assert sorted(os.listdir(folder)) == before
    assert os.listdir(trash / "files") == [] and os.listdir(trash / "info") == []
    assert sorted(stored_paths(library)) == rows_before
    assert check_library(library).ok


# `dinosearch apply` under an audit hook that SIGKILLs it as send2trash moves a file into the
# trash: its .trashinfo is written (or, "empty", created but its text not yet on disk), the file
# not yet moved (the window bench/kill_apply.py hit).
APPLY_KILLED_INSIDE_TRASH = """
import os, signal, sys
empty = sys.argv.pop(1) == "empty"
def hook(event, args):
    if event == "os.rename" and "/Trash/files/" in os.fsdecode(args[1]):
        dest = os.fsdecode(args[1])
        info = os.path.join(dest.split("/files/")[0], "info", os.path.basename(dest) + ".trashinfo")
        if empty:
            open(info, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(hook)
from search.cli.app import main
sys.argv[0] = "dinosearch"
main()
"""


@pytest.mark.parametrize("info", ["written", "empty"])
def test_apply_killed_inside_the_trash_move_leaves_no_orphan_trashinfo(
    dup_lib, tmp_path, trash, info
):
    folder, library = dup_lib
    before = sorted(os.listdir(folder))
    plan_path = tmp_path / "plan.json"
    make_plan(library).write(str(plan_path))
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(trash.parent)}
    killed = subprocess.run(
        [sys.executable, "-c", APPLY_KILLED_INSIDE_TRASH, info, "apply", str(plan_path), "--yes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(os.listdir(trash / "info")) == 1 and os.listdir(trash / "files") == []

    applied = json.loads(invoke("apply", plan_path, "--yes", "--json").stdout)
    assert applied["counts"] == {"done": 2}, applied
    assert len(os.listdir(trash / "info")) == len(os.listdir(trash / "files")) == 2
    invoke("undo", plan_path)
    assert sorted(os.listdir(folder)) == before
    assert os.listdir(trash / "files") == [] and os.listdir(trash / "info") == []
