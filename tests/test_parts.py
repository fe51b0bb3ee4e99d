"""The rooms below the facade receive the library's parts (search/parts.py), never the facade:
a room uses only what `Parts` names, never imports search/collection.py, and `Parts` names no
composition (docs/architecture.md, "Parts, not the facade"). Each room's `facade.py` is the
facade's half (Collection's clean-up methods, Collection.curation()), not the room."""

import ast
import inspect
from pathlib import Path

from search.parts import Parts
from tests.helpers import ROOT

ROOMS = ("dups", "curate", "cleanup", "upkeep")
ROOM_PACKAGES = tuple(f"search.{room}" for room in ROOMS)
FACADE_NAMES = ("coll", "collection")  # what the facade was called when it was passed down


def room_files() -> list[Path]:
    return [
        path
        for room in ROOMS
        for path in sorted((ROOT / "search" / room).glob("*.py"))
        if path.name != "facade.py"
    ]


def members() -> set[str]:
    """The names Parts declares (attributes and methods, not typing's own)."""
    return {n for n in vars(Parts) if not n.startswith("_")} | set(inspect.get_annotations(Parts))


def is_parts(annotation: ast.expr | None) -> bool:
    return isinstance(annotation, ast.Name | ast.Attribute) and ast.unparse(annotation) in (
        "Parts",
        "parts.Parts",
        "search.parts.Parts",
    )


def misuses(source: str, name: str, allowed: set[str]) -> list[str]:
    """Where `source` passes the facade down, or uses a library handed in as `parts` beyond
    `allowed`: a parameter `coll`/`collection`, a `parts` parameter not typed Parts, an
    attribute of it Parts does not name, or a getattr/hasattr that would reach past the type."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):  # the facade held: a field or an attribute `coll`
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id in FACADE_NAMES:
                found.append(f"{name}:{node.lineno} {node.target.id}: the facade held")
            elif is_parts(node.annotation):  # a field: self.<field>.<attr> must be a part
                found += _beyond(tree, name, allowed, ("self", node.target.id))
        if isinstance(node, ast.Attribute) and node.attr in FACADE_NAMES:
            found.append(f"{name}:{node.lineno} .{node.attr}: the facade held")
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        params = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
        held = set()
        for p in params:
            where = f"{name}:{fn.lineno} {fn.name}({p.arg})"
            if p.arg in FACADE_NAMES:
                found.append(f"{where}: the facade passed down (receive `parts: Parts`)")
            elif p.arg == "parts" and not is_parts(p.annotation):
                found.append(f"{where}: `parts` must be typed Parts")
            if p.arg == "parts" or is_parts(p.annotation):
                held.add(p.arg)
        for node in ast.walk(fn):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in held
                and node.attr not in allowed
            ):
                found.append(f"{name}:{node.lineno} {node.value.id}.{node.attr} is not a part")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in held
            ):
                found.append(f"{name}:{node.lineno} {node.func.id}() on {node.args[0].id}")
    return found


def _beyond(tree: ast.AST, name: str, allowed: set[str], field: tuple[str, str]) -> list[str]:
    """Uses of `self.<field>.<attr>` whose attr is not a part."""
    return [
        f"{name}:{node.lineno} {'.'.join(field)}.{node.attr} is not a part"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Name)
        and (node.value.value.id, node.value.attr) == field
        and node.attr not in allowed
    ]


def test_the_scan_catches_a_room_calling_the_facade_back():
    """The checks below can fail: a room reaching a composition, or still taking `coll`."""
    allowed = members()
    bad = (
        "def f(parts: Parts, report):\n"
        "    parts.store()\n"
        "    return parts.duplicates(report)\n"
        "def g(coll, x):\n"
        "    return coll.plan(x)\n"
        "def h(parts):\n"
        "    return getattr(parts, 'flags')()\n"
        "class Held:\n"
        "    coll: Library\n"
        "    lib: Parts\n"
        "    def k(self):\n"
        "        return self.lib.flags(), self.coll.plan()\n"
    )
    found = misuses(bad, "bad.py", allowed)
    assert any("parts.duplicates is not a part" in f for f in found), found
    assert any("g(coll)" in f for f in found), found
    assert any("h(parts): `parts` must be typed" in f for f in found), found
    assert any("getattr() on parts" in f for f in found), found
    assert any("coll: the facade held" in f for f in found), found
    assert any("self.lib.flags is not a part" in f for f in found), found
    assert not misuses("def f(parts: Parts):\n    return parts.store()\n", "ok.py", allowed)


def test_rooms_use_only_the_parts_they_are_given():
    allowed = members()
    wrong = []
    for path in room_files():
        wrong += misuses(path.read_text(), str(path.relative_to(ROOT)), allowed)
    assert not wrong, "rooms reaching past Parts:\n" + "\n".join(wrong)


def test_rooms_receive_parts():
    """The rooms that work on a library do take it as Parts (the scan above is not vacuous)."""
    typed = {
        path.relative_to(ROOT).as_posix()
        for path in room_files()
        for fn in ast.walk(ast.parse(path.read_text()))
        if isinstance(fn, ast.FunctionDef)
        and any(is_parts(a.annotation) for a in fn.args.args + fn.args.kwonlyargs)
    }
    assert {
        "search/dups/run.py",
        "search/dups/against.py",
        "search/dups/calibrated.py",
        "search/dups/rotations.py",
        "search/curate/curation.py",
    } <= typed


def test_no_room_imports_the_facade():
    wrong = []
    for path in [*room_files(), *(ROOT / "search").glob("*/facade.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "search.collection" or n.startswith("search.collection.") for n in names):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong, f"rooms importing search/collection.py: {wrong}"


def room_names(tree: ast.Module) -> set[str]:
    """The names collection.py binds from the rooms' modules (run, query_turned, Curation, ...)."""
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(ROOM_PACKAGES):
            out |= {a.asname or a.name for a in node.names}
    return out


def test_parts_names_no_composition():
    """Each Parts member is, in Collection, a part: opening the store, the model or the FAISS
    file, or a vector look-up on them. None reaches a room (search/dups, cleanup, curate,
    upkeep), directly or through another method of the Collection: that is a composition."""
    tree = ast.parse((ROOT / "search" / "collection.py").read_text())
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Collection"]
    methods = {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}
    rooms = room_names(tree)

    def reaches_a_room(name: str, seen: set[str]) -> str | None:
        seen.add(name)
        for node in ast.walk(methods[name]):
            if isinstance(node, ast.Name) and node.id in rooms:
                return f"{name} uses {node.id}"
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr in methods
                and node.attr not in seen
                and (why := reaches_a_room(node.attr, seen))
            ):
                return why
        return None

    assert rooms >= {"run", "query_turned", "Curation"}  # the scan sees the rooms' names
    assert reaches_a_room("duplicates", set())  # a composition, seen as one
    for member in sorted(members()):
        if member in methods:
            assert reaches_a_room(member, set()) is None, member
        else:  # an attribute: set in __init__
            assert f"self.{member} =" in ast.unparse(methods["__init__"]), member


def test_parts_is_what_collection_passes_down():
    """Collection has every member, with the Protocol's parameters (mypy checks the types)."""
    from search.collection import Collection

    for member in members() - set(inspect.get_annotations(Parts)):
        declared = getattr(Parts, member)
        if isinstance(declared, property):
            continue
        mine = inspect.signature(getattr(Collection, member)).parameters
        assert list(inspect.signature(declared).parameters) == list(mine), member
