"""bench/ keeps one harness (issue 24): every script is run by bench/run_all.sh, none edits
sys.path, each goes through bench/harness.py for its results, and each answers --help.

No benchmark runs here: the scripts are read (ast) and started with --help only."""

import ast
import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RUN_ALL = BENCH / "run_all.sh"
# Modules the scripts import or run, not benchmarks of their own (run_all.sh names them too).
HELPERS = {
    "harness.py",  # the preamble
    "dups_eval.py",  # pair scoring, imported by the duplicate benches
    "cli_marks.py",  # run by runtime_speed.py
    "ort_variant.py",  # run by hand to diagnose runtime_speed.py
    "naive_loop.py",  # run by index_speed.py and runtime_speed.py
}
SCRIPTS = sorted(p for p in BENCH.glob("*.py"))
BENCHMARKS = [p for p in SCRIPTS if p.name not in HELPERS]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _sys_path_edits(tree: ast.Module) -> list[int]:
    """Lines that change sys.path: sys.path.insert/append/extend/..., or assign to it."""

    def is_sys_path(node) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        )

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if is_sys_path(node.func.value):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)):
                    lines.append(node.lineno)
    return lines


def _own_results_writes(path: Path, tree: ast.Module) -> list[str]:
    """Writes into the results folder that bypass harness.write_results."""
    source = path.read_text()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        target = None
        if isinstance(f, ast.Attribute) and f.attr in ("write_text", "write_bytes"):
            target = f.value
        elif isinstance(f, ast.Name) and f.id == "open" and node.args:
            target = node.args[0]
        text = ast.get_source_segment(source, target) if target is not None else None
        if text and ("RESULTS" in text or "results" in text.lower()):
            found.append(f"{path.name}:{node.lineno}: {text}")
    return found


def test_every_script_is_run_by_run_all():
    text = RUN_ALL.read_text()
    missing = [p.name for p in SCRIPTS if p.stem not in text]
    assert not missing, f"bench/run_all.sh does not name: {missing}"
    runs = {line.split()[1] for line in text.splitlines() if line.strip().startswith("bench ")}
    runs |= {line.split()[2] for line in text.splitlines() if "in_venv " in line and "$" in line}
    absent = sorted(n for n in runs if n.isidentifier() and not (BENCH / f"{n}.py").exists())
    assert not absent, f"bench/run_all.sh runs scripts that do not exist: {absent}"


def test_run_all_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(RUN_ALL)], capture_output=True).returncode == 0


def test_helpers_are_used_by_some_script():
    """A helper nobody runs or imports would be a benchmark run_all.sh skips."""
    texts = {p.name: p.read_text() for p in SCRIPTS}
    texts["README.md"] = (BENCH / "README.md").read_text()  # what is run by hand, and how
    for helper in HELPERS - {"harness.py"}:
        users = [n for n, t in texts.items() if n != helper and Path(helper).stem in t]
        assert users, f"{helper} is listed as a helper but no script or bench/README.md uses it"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_no_sys_path_edits(path):
    assert not _sys_path_edits(_tree(path)), f"{path.name} edits sys.path"


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_each_goes_through_the_harness(path):
    tree = _tree(path)
    assert "harness" in _imports(tree), f"{path.name} does not import the harness"
    assert "perf_common" not in _imports(tree), f"{path.name} imports the old perf_common"
    assert not _own_results_writes(path, tree)
    assert "/proc/cpuinfo" not in path.read_text(), "its own machine record"


def test_a_script_that_writes_its_results_itself_is_caught(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import sys\nsys.path.insert(0, '..')\nfrom perf_common import RESULTS\n"
        "(RESULTS / 'x.md').write_text('x')\n"
    )
    tree = _tree(bad)
    assert _sys_path_edits(tree) == [2]
    assert _own_results_writes(bad, tree)
    assert "harness" not in _imports(tree)


def test_every_script_answers_help():
    """`python bench/X.py --help` for each, in parallel: usage, exit 0, no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def helps(path: Path) -> tuple[str, int, str]:
        proc = subprocess.run(
            [sys.executable, str(path), "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
        )
        return path.name, proc.returncode, proc.stdout + proc.stderr

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(helps, SCRIPTS))
    bad = [(name, rc, out[-400:]) for name, rc, out in results if rc != 0 or "Traceback" in out]
    assert not bad, bad
    assert all(out.strip() for _, _, out in results)


# --- the harness itself ------------------------------------------------------------------------


@pytest.fixture
def harness(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_harness_under_test", BENCH / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.delenv("BENCH_RESULTS", raising=False)
    return module


def test_write_results_writes_md_and_json_with_machine_and_command(harness, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(BENCH / "x.py"), "--sizes", "10,20"])
    md = harness.write_results(
        "x", "# Title\n\nbody", {"rows": [1, 2]}, directory=tmp_path, quiet=True
    )
    text = md.read_text()
    assert text.splitlines()[0] == "# Title"
    assert "Machine: " in text and "load average" in text
    assert "Command: `python bench/x.py --sizes 10,20`" in text
    assert text.rstrip().endswith("body")
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["rows"] == [1, 2] and doc["command"] == "python bench/x.py --sizes 10,20"
    m = doc["machine"]
    for key in ("cpu", "flags", "cores", "load_average_start", "load_average", "python", "date"):
        assert key in m, key
    assert "commit" in m and isinstance(m["dirty"], bool)


def test_a_quick_run_never_writes_the_committed_results(harness, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench/x.py"])
    assert harness.results_dir() == harness.RESULTS
    monkeypatch.setattr(sys, "argv", ["bench/x.py", "--quick"])
    assert harness.results_dir() == harness.QUICK_RESULTS != harness.RESULTS


def test_model_dir_refuses_a_missing_model_in_one_line(harness, tmp_path):
    with pytest.raises(SystemExit, match="no config.json"):
        harness.model_dir(tmp_path)
    with pytest.raises(SystemExit, match="pass --model"):
        harness.model_dir(None)


def test_cli_runner_is_offline(harness):
    assert harness.cli_env()["HF_HUB_OFFLINE"] == "1"
    assert harness.cli_command("info")[1:] == ["-m", "search.cli.app", "info"]
    assert harness.median_time(lambda: None, repeat=3) >= 0
