"""A real `dinosearch serve` in a subprocess on a free loopback port, for HTTP and browser tests."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(
    library: Path, *args: str, env: dict[str, str] | None = None, log_path: Path | None = None
) -> Iterator[str]:
    """Run `python -m search.cli.serve` with args (and extra environment variables); yield its base
    URL until the block ends. The server's stderr goes to `log_path` if given."""
    port = free_port()
    cmd = [sys.executable, "-m", "search.cli.serve", "--index", str(library), "--port", str(port)]
    # a file, not a pipe: a chatty server never blocks
    log = open(log_path, "w+") if log_path else tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [*cmd, *args], cwd=ROOT, env={**os.environ, **(env or {})}, stderr=log, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(proc, url, log)
        yield url
    finally:
        if proc.poll() is not None:  # it died under the test: show why
            log.seek(0)
            sys.stderr.write(f"serve exited with {proc.returncode}:\n{log.read()[-4000:]}\n")
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_until_up(proc: subprocess.Popen, url: str, log) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"serve exited with {proc.returncode}: {log.read()}")
        try:
            httpx.get(f"{url}/healthz", timeout=1)  # any answer (401 with a token) means up
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"serve did not answer on {url} within {STARTUP_TIMEOUT_S}s")
