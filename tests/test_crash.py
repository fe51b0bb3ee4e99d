"""kill -9 in the middle of indexing leaves a consistent library; a re-run finishes the job and
the result equals an uninterrupted run."""

import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest

from search.collection import Collection
from tests.helpers import PHOTOS, ROOT, index_command, run_cli, stored_rows


def library_state(library):
    return {
        r["path"]: (
            r["hash"],
            r["status"],
            None if r["vector"] is None else np.frombuffer(r["vector"], np.float32),
        )
        for r in stored_rows(library)
    }


def committed_rows(library) -> int:
    try:
        # read-only: never create the database before the job does
        uri = f"file:{library / 'library.db'}?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=5) as conn:
            return conn.execute("select count(*) from images").fetchone()[0]
    except sqlite3.Error:
        return 0


def start_index(folder, library):
    return subprocess.Popen(
        index_command(library, folder),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_rows", [1, 7, 15])
def test_kill_9_mid_index_then_resume_equals_uninterrupted(tmp_path, kill_after_rows):
    folder = PHOTOS
    reference = tmp_path / "reference"
    run_cli("index", folder, "--index", reference, "--json")

    library = tmp_path / "killed"
    proc = start_index(folder, library)
    deadline = time.monotonic() + 120
    while committed_rows(library) < kill_after_rows and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # a no-op if the job already finished (then: resume == run)
    proc.wait()

    with sqlite3.connect(library / "library.db") as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    partial = library_state(library)
    assert all(s == "ok" and v is not None for _, s, v in partial.values())  # nothing half-written

    run_cli("index", folder, "--index", library, "--json")
    expected, got = library_state(reference), library_state(library)
    assert got.keys() == expected.keys()
    for path, (digest, status, vector) in expected.items():
        assert got[path][:2] == (digest, status)
        np.testing.assert_allclose(got[path][2], vector, atol=1e-6)
    # and the derived FAISS index answers the same neighbours
    a, b = Collection(reference), Collection(library)
    for path in list(expected)[:5]:
        ra = [h.path for h in a.query([path], k=5).results]
        rb = [h.path for h in b.query([path], k=5).results]
        assert ra == rb
