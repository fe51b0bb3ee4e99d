"""Property: whatever mix of copies a library holds (byte copies, re-encodes, resizes, edits,
same-pixel twins, copies of copies, in any folders), `dups --plan` writes a plan that
`apply --dry-run` accepts, and no file is in two groups of the report or of the plan.

In-process through the real click commands (the same code path as the CLI, without a
subprocess per step), on a few real photos and the tiny random-init DINOv2, with fixed raw-cosine
thresholds low enough that the random model groups near copies (and some distinct photos).
"""

import functools
import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from search.dups.groups import leader_groups, twin_units
from search.dups.run import _attach_confirmed
from tests.helpers import PHOTOS, invoke
from tests.messy_library import (
    edited,
    encode,
    jpeg,
    load_rgb,
    one_group_violations,
    plan_violations,
    scaled,
)

pytestmark = pytest.mark.slow

POOL = sorted(PHOTOS.glob("*.png"))[:6]
SIDE = 192  # sources are shrunk first: the property is about groups, not pixels
OPS = ("byte-copy", "reencode", "resize", "grey", "crop", "brightness", "webp", "png")
FOLDERS = ("", "Backup/2015", "Phone", "Downloads", "Edits", "a/b")

op = st.tuples(
    st.sampled_from(OPS),
    st.integers(0, 1000),  # which file it copies: any earlier one (copies of copies)
    st.sampled_from(FOLDERS),
    st.integers(30, 95),  # JPEG quality
    st.floats(0.4, 0.95),  # resize factor
)
library_spec = st.fixed_dictionaries(
    {
        "sources": st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=4, unique=True),
        "png": st.booleans(),  # the first source kept as PNG (a same-pixels twin is possible)
        "ops": st.lists(op, min_size=1, max_size=10),
    }
)
dups_spec = st.fixed_dictionaries(
    {
        "threshold": st.sampled_from(["0.8", "0.9", "0.95", "0.99"]),
        "similar": st.booleans(),
        "action": st.sampled_from(["trash", "hardlink", "symlink"]),
    }
)
# Before the one-group rule this put a file in two groups: a PNG, its byte copy, its WebP twin.
OVERLAP = {"sources": [0, 1], "png": True, "ops": [("byte-copy", 0, "Backup/2015", 90, 0.5)]}
OVERLAP["ops"].append(("webp", 0, "Exports", 90, 0.5))


@functools.cache
def source(i: int) -> Image.Image:
    img = load_rgb(POOL[i])
    img.thumbnail((SIDE, SIDE))
    return img


def derive(op_name: str, parent: Path, quality: int, scale: float, seed: int) -> tuple[bytes, str]:
    """A copy of `parent` made by `op_name`: (bytes, file extension)."""
    if op_name == "byte-copy":
        return parent.read_bytes(), parent.suffix
    img = load_rgb(parent)
    if op_name == "webp":
        return encode(img, "WEBP", lossless=True), ".webp"
    if op_name == "png":
        return encode(img, "PNG", compress_level=9), ".png"
    if op_name == "resize":
        return jpeg(scaled(img, scale), quality), ".jpg"
    if op_name == "reencode":
        return jpeg(img, quality), ".jpg"
    return jpeg(edited(img, op_name, random.Random(seed)), 90), ".jpg"


def write_library(folder: Path, spec: dict) -> list[Path]:
    """The sources as camera files, then each op's copy of an earlier file."""
    files = []
    for n, i in enumerate(spec["sources"]):
        as_png = spec["png"] and n == 0
        path = folder / "DCIM" / f"IMG_{n + 1:04d}{'.png' if as_png else '.jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(source(i), "PNG") if as_png else jpeg(source(i), 92))
        files.append(path)
    for k, (name, pick, sub, quality, scale) in enumerate(spec["ops"]):
        parent = files[pick % len(files)]
        data, ext = derive(name, parent, quality, scale, pick)
        path = folder / sub / f"{parent.stem} ({k + 1}){ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append(path)
    return files


@settings(
    max_examples=25,
    deadline=None,
    database=None,  # nothing written into the repository
    phases=(Phase.explicit, Phase.generate),  # no shrinking: each example indexes a library
    suppress_health_check=[HealthCheck.too_slow],
)
@example(spec=OVERLAP, dups={"threshold": "0.9", "similar": False, "action": "trash"})
@given(spec=library_spec, dups=dups_spec)
def test_the_products_own_plan_is_accepted_and_one_group_per_file(tmp_path_factory, spec, dups):
    base = tmp_path_factory.mktemp("plan-property")
    write_library(base / "photos", spec)
    library, plan_path = base / "library", base / "plan.json"
    invoke("index", base / "photos", "--index", library, "--workers", "0", "--json")
    similar = ["--include-similar"] if dups["similar"] else []
    args = ["--threshold", dups["threshold"], *similar, "--action", dups["action"]]
    out = invoke("dups", *args, "--plan", plan_path, "--index", library, "--json")
    report, plan = json.loads(out.stdout), json.loads(plan_path.read_text("utf-8"))
    acted = sum(f["action"] != "keep" for g in plan["groups"] for f in g["files"])
    dry = json.loads(invoke("apply", plan_path, "--dry-run", "--json").stdout)
    assert dry["counts"] == ({"would": acted} if acted else {})
    assert one_group_violations(report) == {}, report["groups"]
    assert plan_violations(plan) == {}


# --- the grouping itself, on synthetic graphs: fast, so many more examples ----------------------


graph = st.integers(3, 40).flatmap(
    lambda n: st.fixed_dictionaries(
        {
            "n": st.just(n),
            "hashes": st.lists(st.integers(0, n // 2), min_size=n, max_size=n),
            "pixels": st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))),
            "pairs": st.lists(
                st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.floats(0.5, 1.0))
            ),
            "confirmed": st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))),
        }
    )
)


@settings(max_examples=300, deadline=None)
@given(graph)
def test_twin_sets_leaders_and_confirmed_copies_put_every_row_in_one_group(g):
    """What `_whole_library` does with the pairs (twin sets, leader groups, pixel-confirmed pairs
    attached, twins following), on random graphs: no row in two groups, every member linked to
    its group's first member, its twin or the member it was confirmed against."""
    n, threshold = g["n"], 0.8
    pixels = [(a, b) for a, b in g["pixels"] if a != b]
    units = twin_units([str(h) for h in g["hashes"]], pixels, list(range(n)))
    twins = units.twins_of()
    is_twin = units.rep != np.arange(n)
    pairs = {(min(a, b), max(a, b)): s for a, b, s in g["pairs"] if a != b}
    confirmed = {(min(a, b), max(a, b)): (0.1, "tone") for a, b in g["confirmed"] if a != b}
    edges = {**pairs, **{p: threshold for p in confirmed}}
    edges = {p: s for p, s in edges.items() if not (is_twin[p[0]] or is_twin[p[1]])}
    rows = np.array([p[0] for p in edges], np.int64)
    cols = np.array([p[1] for p in edges], np.int64)
    sims = np.array(list(edges.values()), np.float32)
    taken = is_twin.copy()
    near = []
    for leader, members in leader_groups(n, rows, cols, sims, threshold, np.zeros(n), taken):
        near.append(("copy", leader, members, {}))
        taken[[leader] + [m for m, _ in members]] = True
    _attach_confirmed(near, confirmed, taken)
    groups = [[leader, *[m for m, _ in members]] for _, leader, members, _ in near]
    groups = [[r for rep in grp for r in [rep, *twins.get(rep, [])]] for grp in groups]
    groups += [[rep, *ts] for rep, ts in twins.items() if not taken[rep]]
    flat = [r for grp in groups for r in grp]
    assert len(flat) == len(set(flat)), groups
    linked = {p for p, s in edges.items() if s >= threshold}
    for _, leader, members, attached in near:
        for m, _ in members:
            via = attached.get(m, leader)
            assert (min(via, m), max(via, m)) in linked
