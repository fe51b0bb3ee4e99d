"""apply and undo: dry run, confirmation, stale files, every action, a kill mid-apply."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from indexer.library.store import Store
from search.cleanup.apply import apply_plan, undo_plan
from search.cleanup.plan import read_plan
from tests.helpers import ROOT, invoke, library_paths, make_plan

KILL_AFTER_S = 60  # give up waiting for the subprocess to reach the kill point


def write_plan(library, tmp_path, **kwargs):
    plan = make_plan(library, **kwargs)
    target = tmp_path / "plan.json"
    plan.write(str(target))
    return plan, target


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def apply_json(*args, input=None):
    return json.loads(invoke("apply", *args, "--json", input=input).stdout)


def test_dry_run_changes_nothing(dup_lib, tmp_path, trash):
    folder, library = dup_lib
    before = listing(folder)
    _, plan_path = write_plan(library, tmp_path)
    out = apply_json(plan_path, "--dry-run")
    assert out["dry_run"] and out["counts"] == {"would": 2}
    assert listing(folder) == before
    assert Store.open(library).db["journal"].count == 0
    human = invoke("apply", plan_path, "--dry-run").stdout
    assert "would trash" in human and "kodim01 copy.png" in human


def test_confirmation_then_trash_then_undo(dup_lib, tmp_path, trash):
    folder, library = dup_lib
    before, rows_before = listing(folder), library_paths(library)
    _, plan_path = write_plan(library, tmp_path)
    refused = invoke("apply", plan_path, input="n\n", expect=1)
    assert "2 trash" in refused.stdout and "Apply it?" in refused.stdout
    assert listing(folder) == before
    invoke("apply", plan_path, input="y\n")
    assert "kodim01 copy.png" not in listing(folder) and "kodim01.png" in listing(folder)
    assert "kodim01 copy.png" in listing(trash / "files")
    assert library_paths(library) == rows_before - {
        str(folder / "kodim01 copy.png"),
        str(folder / "kodim02-export.webp"),
    }
    again = apply_json(plan_path, "--yes")  # idempotent
    assert again["counts"] == {"already": 2}
    undone = json.loads(invoke("undo", "--last", "--index", library, "--json").stdout)
    assert undone["counts"] == {"undone": 2}
    assert listing(folder) == before and listing(trash / "files") == []
    assert library_paths(library) == rows_before
    store = Store.open(library)
    ids, vectors = store.vectors()
    assert len(ids) == len(rows_before) and np.allclose(np.linalg.norm(vectors, axis=1), 1)


def test_changed_files_are_skipped_and_reported(dup_lib, tmp_path, trash):
    folder, library = dup_lib
    _, plan_path = write_plan(library, tmp_path)
    with open(folder / "kodim01 copy.png", "ab") as f:
        f.write(b"edited")  # a duplicate changed since the plan
    os.utime(folder / "kodim01.png", ns=(1, 1))  # a kept file touched: same bytes, fine
    with open(folder / "kodim02.png", "ab") as f:
        f.write(b"edited")  # the kept file of the other group changed: its group waits
    result = invoke("apply", plan_path, "--yes")
    assert "skipped" in result.stderr and "changed since the plan" in result.stderr
    assert "kept file" in result.stderr
    assert "kodim01 copy.png" in listing(folder) and "kodim02-export.webp" in listing(folder)


def test_same_size_and_mtime_but_other_bytes_is_caught_by_the_hash(dup_lib, tmp_path, trash):
    folder, library = dup_lib
    _, plan_path = write_plan(library, tmp_path)
    target = folder / "kodim01 copy.png"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = apply_json(plan_path, "--yes")
    skipped = [f for f in out["files"] if f["state"] == "skipped"]
    assert [f["path"] for f in skipped] == [str(target)] and "hash" in skipped[0]["detail"]


def test_move_keeps_relative_paths_and_updates_the_library(dup_lib, tmp_path):
    folder, library = dup_lib
    _, plan_path = write_plan(library, tmp_path, action="move")
    with pytest.raises(AssertionError, match="destination"):
        invoke("apply", plan_path, "--yes")
    dest = tmp_path / "set-aside"
    invoke("apply", plan_path, "--yes", "--to", dest)
    assert listing(dest) == ["kodim01 copy.png", "kodim02-export.webp"]
    paths = library_paths(library)
    assert str(dest / "kodim01 copy.png") in paths and str(folder / "kodim01 copy.png") not in paths
    invoke("undo", plan_path)
    assert listing(dest) == [] and str(folder / "kodim01 copy.png") in library_paths(library)


@pytest.mark.parametrize("action", ["hardlink", "symlink"])
def test_links_replace_identical_copies_and_undo_restores_them(dup_lib, tmp_path, action):
    folder, library = dup_lib
    _, plan_path = write_plan(library, tmp_path, action=action)
    copy, kept = folder / "kodim01 copy.png", folder / "kodim01.png"
    mtime = copy.stat().st_mtime_ns
    out = apply_json(plan_path, "--yes")
    assert out["counts"] == {"done": 1}
    assert os.path.samefile(copy, kept) and (copy.is_symlink() == (action == "symlink"))
    assert str(copy) in library_paths(library)
    invoke("undo", plan_path)
    assert not copy.is_symlink() and not os.path.samefile(copy, kept)
    assert copy.read_bytes() == kept.read_bytes() and copy.stat().st_mtime_ns == mtime


def test_delete_cannot_be_undone_and_says_so(dup_lib, tmp_path):
    folder, library = dup_lib
    _, plan_path = write_plan(library, tmp_path, action="delete")
    invoke("apply", plan_path, "--yes")
    assert "kodim01 copy.png" not in listing(folder)
    result = invoke("undo", plan_path)
    assert "not restored" in result.stderr and "cannot be restored" in result.stderr


PAUSE_S = 1.5  # between journalling an action and carrying it out: the window the kill aims at
# apply in a subprocess, paused there: the pause is this test's, patched in, not a product hook.
APPLY_SCRIPT = f"""
import sys, time
from search.cleanup import apply
from search.cli.cleanup import apply_cmd
perform = apply._perform
apply._perform = lambda *args: (time.sleep({PAUSE_S}), perform(*args))[1]
apply_cmd(sys.argv[1:], prog_name='dinosearch')
"""


def kill_mid_apply(plan_path, library, home, data) -> list[tuple]:
    """Run apply in a subprocess that pauses before each action; SIGKILL it once one action is
    done and the next is journalled but not carried out. Returns the journal states."""
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(data)}
    proc = subprocess.Popen(
        [sys.executable, "-c", APPLY_SCRIPT, str(plan_path), "--yes"], cwd=ROOT, env=env
    )
    deadline = time.monotonic() + KILL_AFTER_S
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            states = journal_states(library)
            if [s for _, s in states] == ["done", "pending"]:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return journal_states(library)


def journal_states(library) -> list[tuple]:
    with sqlite3.connect(library / "library.db", timeout=30) as db:
        try:
            return db.execute("select path, state from journal order by id").fetchall()
        except sqlite3.OperationalError:
            return []


@pytest.mark.parametrize("then", ["resume", "undo"])
def test_a_kill_mid_apply_resumes_and_undoes(dup_lib, tmp_path, trash, then):
    folder, library = dup_lib
    before, rows_before = listing(folder), library_paths(library)
    plan, plan_path = write_plan(library, tmp_path)
    states = kill_mid_apply(plan_path, library, tmp_path / "home", trash.parent)
    assert [s for _, s in states] == ["done", "pending"], states
    assert len(listing(trash / "files")) == 1
    store = Store.open(library)
    if then == "resume":
        result = apply_plan(store, read_plan(str(plan_path)))
        assert result.counts() == {"already": 1, "done": 1}
        assert len(listing(trash / "files")) == 2
    undone = undo_plan(store, plan.id)
    assert all(o.state == "undone" for o in undone.outcomes), undone.to_json()
    assert listing(folder) == before and listing(trash / "files") == []
    assert library_paths(library) == rows_before
