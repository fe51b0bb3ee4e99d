"""One home each (issue 25): what the library defines (choices, defaults, file extensions, "is
this path under that folder", atomic writes) is written once and read everywhere else.

The command line and the API are introspected (click's command objects, the route signatures,
the request models), and the sources are scanned for the spellings that restate a home."""

import ast
import inspect
import re
import typing
from pathlib import Path

import click

from indexer import config
from indexer.files import FORMAT_NAMES, IMAGE_EXTENSIONS, LIVE_EXTENSIONS, SIDECAR_EXTENSIONS
from search.cli.app import cli
from tests.helpers import ROOT

PRODUCT = [ROOT / "indexer", ROOT / "search"]

# Options offering the library's choices: flag -> (the constant, the default)
CHOICES = {
    "--device": (config.DEVICES, "auto"),
    "--dtype": (config.DTYPES, "auto"),
    "--runtime": (config.RUNTIMES, "auto"),
    "--index-type": (config.INDEX_TYPES, None),  # None: the library's own
    "--action": (config.PLAN_ACTIONS[1:], config.DEFAULT_ACTION),  # "keep" is not offered
    "--format": (config.EXPORT_FORMATS, config.EXPORT_FORMATS[0]),
}
# Options whose default is the library's: flag -> the constant
DEFAULTS = {
    "--precision": config.DEFAULT_PRECISION,
    "--batch-size": config.DEFAULT_BATCH_SIZE,
    "--max-pixels": config.DEFAULT_MAX_PIXELS,
    "--decode-timeout": config.DEFAULT_DECODE_TIMEOUT_S,
    "--decode-memory": config.DEFAULT_DECODE_MEMORY_BYTES >> 20,  # MiB on the command line
    "-k": config.DEFAULT_K,
    "-n": config.DEFAULT_OUTLIERS,
    "--min-size": config.DEFAULT_MIN_CLUSTER,
}
MODEL_PARAMS = ("model", "device", "dtype", "runtime")


def options():
    """(command, option) for every option of every command."""
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                yield name, param


def sources(*suffixes: str, under=PRODUCT):
    for folder in under:
        for path in sorted(folder.rglob("*")):
            if path.suffix in suffixes and "__pycache__" not in path.parts:
                yield path, path.relative_to(ROOT).as_posix()


# --- choices and defaults ----------------------------------------------------------------------


def test_every_choice_offered_is_a_library_constant():
    offered = set()
    for command, opt in options():
        if not isinstance(opt.type, click.Choice):
            continue
        flag = opt.opts[0]
        assert flag in CHOICES, f"{command} {flag}: choices restated; read a library constant"
        constant, default = CHOICES[flag]
        assert tuple(opt.type.choices) == tuple(constant), f"{command} {flag}"
        assert opt.default == default, f"{command} {flag}"
        offered.add(flag)
    assert offered == set(CHOICES)  # a row here for an option that is gone is stale


def test_defaults_are_the_librarys():
    found = set()
    for command, opt in options():
        flag = opt.opts[0]
        if flag in DEFAULTS:
            assert opt.default == DEFAULTS[flag], f"{command} {flag}"
            found.add(flag)
        if flag == "--precision":
            assert (opt.type.min, opt.type.max) == config.PRECISION_RANGE, command
    assert found == set(DEFAULTS)


def test_cli_sources_spell_no_choices_or_library_defaults():
    """Restating a constant with the same values passes the tests above: this catches it."""
    wrong = []
    for path, name in sources(".py", under=[ROOT / "search" / "cli"]):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            callee = ast.unparse(node.func)
            if callee.endswith("Choice") and node.args and not isinstance(node.args[0], ast.Name):
                if isinstance(node.args[0], ast.List | ast.Tuple | ast.Set):
                    wrong.append(f"{name}:{node.lineno}: click.Choice of a literal list")
            flags = [a.value for a in node.args if isinstance(a, ast.Constant)]
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if set(flags) & set(DEFAULTS) and isinstance(default, ast.Constant):
                wrong.append(f"{name}:{node.lineno}: {flags[0]} default={default.value!r}")
    assert not wrong, "\n".join(wrong)


def test_the_flags_option_names_the_librarys_flags():
    """`flags --flag` lists the names in its help (the CLI does not import numpy for --help):
    they must be the library's, in its order."""
    from indexer.quality import FLAGS

    [opt] = [p for p in cli.commands["flags"].params if "--flag" in p.opts]
    assert ", ".join(FLAGS) in " ".join(opt.help.split())


def test_the_library_and_the_api_read_the_same_constants():
    from search.cleanup import plan
    from search.collection import Collection, DupOptions
    from search.curate.facade import Curation
    from search.web import routes_curate, routes_search
    from search.web.schemas import DupQuery, PlanRequest

    assert plan.ACTIONS is config.PLAN_ACTIONS
    assert Collection.plan.__defaults__[1] == config.DEFAULT_ACTION
    assert DupOptions().precision == config.DEFAULT_PRECISION
    for function in (Collection.calibrate, Curation.clusters, routes_curate.clusters):
        assert inspect.signature(function).parameters["precision"].default == (
            config.DEFAULT_PRECISION
        ), function.__qualname__
    assert DupQuery().precision == PlanRequest().precision == config.DEFAULT_PRECISION
    for function, name, constant in (
        (Collection.query, "k", config.DEFAULT_K),
        (Collection.similar, "k", config.DEFAULT_K),
        (routes_search.search, "k", config.DEFAULT_K),
        (routes_search.similar, "k", config.DEFAULT_K),
        (Curation.outliers, "count", config.DEFAULT_OUTLIERS),
        (routes_curate.outliers, "n", config.DEFAULT_OUTLIERS),
        (Curation.clusters, "min_size", config.DEFAULT_MIN_CLUSTER),
        (routes_curate.clusters, "min_size", config.DEFAULT_MIN_CLUSTER),
    ):
        default = inspect.signature(function).parameters[name].default
        assert default == constant, function.__qualname__
    action = PlanRequest.model_fields["action"]
    assert typing.get_args(action.annotation) == config.PLAN_ACTIONS[1:]
    assert action.default == config.DEFAULT_ACTION


def test_the_model_options_are_declared_once():
    loading = [c for c in cli.commands.values() if any(p.name == "model" for p in c.params)]
    assert {c.name for c in loading} >= {"index", "query", "serve"}
    declared = [[p.to_info_dict() for p in c.params if p.name in MODEL_PARAMS] for c in loading]
    assert len(declared[0]) == len(MODEL_PARAMS)
    assert all(d == declared[0] for d in declared), "a command declares its own model options"
    spelled = [
        name
        for path, name in sources(".py", under=[ROOT / "search" / "cli"])
        if re.search(r"""["']--(model|device|dtype|runtime)["']""", path.read_text())
    ]
    assert spelled == ["search/cli/options.py"]


# --- extensions --------------------------------------------------------------------------------

EXTENSIONS = IMAGE_EXTENSIONS | SIDECAR_EXTENSIONS | LIVE_EXTENSIONS
QUOTED = re.compile(r"""["'`](\.[A-Za-z0-9]{2,5})["'`]""")


def spelled_extensions(path: Path) -> list[int]:
    """Lines of a Python file with a string of extensions (".jpg", ".xmp .aae") or a collection
    of bare ones (("jpg", "png")); docstrings and f-string parts (a file's name) do not count."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))  # a docstring
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            words = node.value.lower().split()
            if words and all(w in EXTENSIONS for w in words):
                lines.append(node.lineno)
        if isinstance(node, ast.List | ast.Tuple | ast.Set) and len(node.elts) >= 2:
            names = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(names) == len(node.elts) and all(
                isinstance(n, str) and n.islower() and f".{n}" in IMAGE_EXTENSIONS for n in names
            ):
                lines.append(node.lineno)
    return sorted(lines)


def test_extensions_are_spelled_only_in_files_py():
    wrong = [
        f"{name}:{line}"
        for path, name in sources(".py")
        if name != "indexer/files.py"
        for line in spelled_extensions(path)
    ]
    for path, name in sources(".js", ".html"):
        for number, text in enumerate(path.read_text().split("\n"), 1):
            if any(m.lower() in EXTENSIONS for m in QUOTED.findall(text)):
                wrong.append(f"{name}:{number}")
    assert not wrong, "extensions outside indexer/files.py:\n" + "\n".join(wrong)


def test_the_scan_sees_an_extension_list(tmp_path):
    """The scan above is not blind: each way of restating a list is found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Reads .jpg files."""\n'
        'RAW = {".cr2", ".nef"}\n'
        'SIDECARS = ".xmp .aae".split()\n'
        'NAMES = ("jpg", "png")\n'
        'FORMATS = ("JPEG", "PNG")  # Pillow format names\n'
        'name = f"{1}.jpg"\n'
    )
    assert spelled_extensions(sample) == [2, 2, 3, 4]


def test_every_keep_format_is_indexed():
    """`format:NAME` criteria name only what the walk indexes (no `format:jxl` for no .jxl)."""
    for name, extensions in FORMAT_NAMES.items():
        assert extensions <= IMAGE_EXTENSIONS, name


# --- "path under folder" and atomic writes -----------------------------------------------------

UNDER = re.compile(
    r"rstrip\(os\.sep\)\s*\+\s*os\.sep|\bin\s+[\w.]+\.parents\b|startswith\(os\.pardir\)"
)
# Files outside this helper's owner that still spell it, until their owners switch (each entry
# fails once its file no longer does: the list only shrinks).
UNDER_PENDING: set[str] = set()
# os.replace / mkstemp outside indexer/atomic.py, and why they are not a file's content replaced
REPLACE_ALLOWED = {
    "search/cleanup/apply.py": "puts a hardlink or symlink in a file's place (resumable)",
    "search/knn.py": "its temp file is locked while written, so cleanup never takes it",
}
REPLACE_PENDING: set[str] = set()
REPLACE = re.compile(r"os\.replace\(|mkstemp\(|NamedTemporaryFile\(")


def test_path_under_folder_has_one_home():
    from indexer.paths import is_under, under_any

    assert is_under("/a/b", "/a") and is_under("/a", "/a") and is_under("/a/b", "/a/")
    assert not is_under("/ab", "/a") and not is_under("/a", "/a/b")
    assert is_under("/a", "/") and under_any("/x/y", ["/a", "/x"]) and not under_any("/x", [])
    spelled = {name for path, name in sources(".py") if UNDER.search(path.read_text())}
    assert spelled - UNDER_PENDING <= {"indexer/paths.py"}, sorted(spelled)
    assert UNDER_PENDING <= spelled, "a pending file is done: take it off UNDER_PENDING"


def test_atomic_writes_have_one_home():
    spelled = {name for path, name in sources(".py") if REPLACE.search(path.read_text())}
    assert spelled - REPLACE_PENDING - set(REPLACE_ALLOWED) <= {"indexer/atomic.py"}, spelled
    assert set(REPLACE_ALLOWED) <= spelled, "an allowed file no longer replaces: drop its entry"
    assert REPLACE_PENDING <= spelled, "a pending file is done: take it off REPLACE_PENDING"


def test_an_atomic_write_is_all_or_nothing(tmp_path):
    from indexer.atomic import atomic_open, write_bytes

    target = tmp_path / "plan.json"
    target.write_text("old")
    try:
        with atomic_open(target, "w", encoding="utf-8") as f:
            f.write("half")
            raise RuntimeError("killed mid-write")
    except RuntimeError:
        pass
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
    with atomic_open(target, "w", encoding="utf-8") as f:
        f.write("new")
    assert target.read_text() == "new" and sorted(tmp_path.iterdir()) == [target]
    write_bytes(tmp_path / "deep" / "x.bin", b"1", parents=True)
    assert (tmp_path / "deep" / "x.bin").read_bytes() == b"1"
    plain = tmp_path / "plain.txt"
    plain.write_text("made by open(): the umask's permissions, not mkstemp's 0600")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
