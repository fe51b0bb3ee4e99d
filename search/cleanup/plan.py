"""A reviewable plan: for each duplicate group, the file kept, what happens to the others, and why.

The plan is JSON a person can edit (change a file's "action") and a diff can review; `dinosearch
apply` carries it out. Each file records the size, mtime and hash it had when the plan was made,
so a file changed since is skipped rather than acted on.
"""

import csv
import datetime as dt
import json
import os
import uuid
from dataclasses import asdict, dataclass, field

from indexer.atomic import atomic_open
from indexer.config import DEFAULT_ACTION, PLAN_ACTIONS
from indexer.errors import BadQuery
from indexer.files import is_image_name, sha256_file
from indexer.library.store import Store
from indexer.paths import under_any
from search.cleanup import captures
from search.cleanup.policy import EXIF_KEYS, Facts, Policy, copy_folders, parse_policy
from search.dups.groups import DupReport, Group, Member

PLAN_VERSION = 1
ACTIONS = PLAN_ACTIONS
REMOVING = frozenset({"trash", "move", "delete"})  # actions after which the path is gone
LINKS = frozenset({"hardlink", "symlink"})
FREEING = frozenset({"trash", "delete", "hardlink", "symlink"})  # space back on this disk


class PlanError(BadQuery):
    """A plan file that is missing, malformed or inconsistent."""


class NotAPlan(PlanError):
    """A file that is no plan at all (an image, other text or JSON, empty): bad input, as a
    missing PLAN argument is."""

    exit_code = 2


class PlanForAnotherLibrary(PlanError):
    """A plan made for another library than the one it would act through."""

    http_status = 409
    code = "plan_for_another_library"


@dataclass
class PlanFile:
    path: str
    action: str
    hash: str | None
    size: int | None
    mtime_ns: int | None
    width: int | None = None
    height: int | None = None
    taken: str | None = None
    score: float | None = None
    confidence: float | None = None
    match: str = "first"
    verified: str | None = None  # a copy confirmed by pixels: "tone" or "crop"
    transform: str | None = None  # dups --rotations: this file is the kept one turned/mirrored
    note: str | None = None
    deltas: dict | None = None  # against the kept file
    companions: list[dict] = field(default_factory=list)  # {path, role, follows, size, mtime_ns}


@dataclass
class PlanGroup:
    group: int
    tier: str
    keep: str  # the file every other one is a duplicate of (and the target of links)
    reason: dict
    files: list[PlanFile]


@dataclass
class Plan:
    id: str
    created: str
    library: str
    policy: str
    action: str
    move_to: str | None
    root: str | None  # common folder of the files acted on: `move` keeps paths relative to it
    threshold: float | None
    groups: list[PlanGroup] = field(default_factory=list)
    reference: list[str] = field(default_factory=list)  # folders whose files are only kept
    library_id: str | None = None  # the library's own id (Store.library_id); None: an old plan

    def to_json(self) -> dict:
        data = asdict(self)
        return {"version": PLAN_VERSION, **data, "summary": self.summary()}

    def summary(self) -> dict:
        counts = {a: 0 for a in ACTIONS}
        freed = 0
        for f in (f for g in self.groups for f in g.files):
            counts[f.action] += 1
            freed += (f.size or 0) if f.action in FREEING else 0
        return {
            "groups": len(self.groups),
            "actions": counts,
            "bytes_freed": freed,
            "emptied_folders": self.emptied_folders(),
        }

    def emptied_folders(self) -> list[dict]:
        """Folders the plan takes every picture out of: {folder, files}, files the count it
        removes; those not named like backups or copies first. A folder of originals emptied in
        favour of a backup is worth a second look (`--reference FOLDER` keeps its files)."""
        leaving: dict[str, set[str]] = {}
        for _, f in self.files():
            if f.action in REMOVING:
                leaving.setdefault(os.path.dirname(f.path), set()).add(f.path)
        out = []
        for folder, paths in sorted(leaving.items()):
            try:
                names = os.listdir(folder)
            except OSError:  # gone already (applied): every picture it held left with the plan
                names = []
            stays = [
                n
                for n in names
                if is_image_name(n)
                and not n.startswith(".")
                and os.path.join(folder, n) not in paths
            ]
            if not stays:
                out.append({"folder": folder, "files": len(paths)})
        # the folders not named like backups or copies first: those likely hold originals
        return sorted(out, key=lambda e: len(copy_folders(os.path.join(e["folder"], "_"))))

    def write(self, path: str) -> None:
        with atomic_open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=2, ensure_ascii=False)
            f.write("\n")

    def write_csv(self, path: str) -> None:
        fields = ["group", "tier", "path", "action", "kept", "reason", "note", "score", "bytes"]
        with atomic_open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=fields)
            writer.writeheader()
            for g in self.groups:
                for f in g.files:
                    writer.writerow(_csv_row(g, f))

    def files(self):
        """(group, file) for every file of the plan."""
        return ((g, f) for g in self.groups for f in g.files)


def _csv_row(g: PlanGroup, f: PlanFile) -> dict:
    return {
        "group": g.group,
        "tier": g.tier,
        "path": f.path,
        "action": f.action,
        "kept": f.path == g.keep,
        "reason": g.reason.get("text") if f.path == g.keep else "",
        "note": f.note or "",
        "score": f.score,
        "bytes": f.size,
    }


# --- reading -------------------------------------------------------------------------------------


def read_plan(path: str) -> Plan:
    """Load and check a plan file (edited or not); a file that is not a plan is one NotAPlan."""
    make = "make one with `dinosearch dups --plan PLAN`"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise NotAPlan(f"cannot read plan {path}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise NotAPlan(f"{path} is empty, not a plan: {make}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise NotAPlan(f"{path} is not a plan (not text: an image?): {make}") from None
    except json.JSONDecodeError as exc:
        raise NotAPlan(f"{path} is not a plan (not valid JSON: {exc}): {make}") from None
    if not isinstance(data, dict) or "groups" not in data or "version" not in data:
        raise NotAPlan(f"{path} is JSON but not a plan: {make}")
    try:
        plan = from_json(data)
        check_plan(plan)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NotAPlan(f"plan {path} is malformed ({exc!r}); {make}") from None
    return plan


def from_json(data: dict) -> Plan:
    """A Plan from its JSON (not checked: see check_plan)."""
    if data.get("version") != PLAN_VERSION:
        raise ValueError(f"version {data.get('version')}")
    groups = [
        PlanGroup(
            g["group"], g["tier"], g["keep"], g["reason"], [PlanFile(**f) for f in g["files"]]
        )
        for g in data["groups"]
    ]
    keys = ("id", "created", "library", "policy", "action", "move_to", "root", "threshold")
    return Plan(
        **{k: data[k] for k in keys},
        groups=groups,
        reference=data.get("reference", []),
        library_id=data.get("library_id"),
    )


def check_plan(plan: Plan) -> None:
    """Refuse plans that would act on a kept file or name an unknown action."""
    kept = {g.keep for g in plan.groups}
    for g, f in plan.files():
        if f.action not in ACTIONS:
            raise PlanError(f"group {g.group}: unknown action {f.action!r} for {f.path}")
        if f.path in kept and f.action != "keep":
            raise PlanError(f"group {g.group}: {f.path} is a kept file; its action must be keep")
        if f.action != "keep" and under_any(f.path, plan.reference):
            raise PlanError(
                f"group {g.group}: {f.path} is in a reference folder; its action must be keep"
            )
    for g in plan.groups:
        if not any(f.path == g.keep for f in g.files):
            raise PlanError(f"group {g.group}: the kept file {g.keep} is not among its files")


# --- building ------------------------------------------------------------------------------------


def build_plan(
    report: DupReport,
    store: Store,
    policy: Policy | str | None = None,
    action: str = DEFAULT_ACTION,
    move_to: str | None = None,
) -> Plan:
    """The plan for a duplicate report: keep the policy's best file of each group."""
    if action not in ACTIONS or action == "keep":
        raise PlanError(f"--action: one of {', '.join(ACTIONS[1:])}, not {action!r}")
    policy = policy if isinstance(policy, Policy) else parse_policy(policy)
    if report.reference:  # a reference file is the one kept, whatever else the policy says
        policy = parse_policy(f"folder:{','.join(report.reference)} > {policy.text}")
    rows = _rows(store, report)
    refs = report.reference
    groups = [
        _plan_group(n, g, rows, policy, action, refs) for n, g in enumerate(report.groups, start=1)
    ]
    attach_companions(groups)
    plan = Plan(
        id=uuid.uuid4().hex,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        library=str(store.directory),
        library_id=store.library_id(),
        policy=policy.text,
        action=action,
        move_to=os.path.abspath(move_to) if move_to else None,
        root=common_root([f.path for g in groups for f in g.files if f.action != "keep"]),
        threshold=report.threshold,
        groups=groups,
        reference=list(report.reference),
    )
    return plan


def _rows(store: Store, report: DupReport) -> dict[str, dict]:
    """Library facts per member path; files outside the library are read from disk."""
    ids = [m.id for g in report.groups for m in g.members if m.id >= 0]
    cols = "id, path, hash, size, mtime_ns, width, height, taken"
    by_id = store.images_by_ids(ids, cols)
    out = {r["path"]: r for r in by_id.values()}
    for m in (m for g in report.groups for m in g.members):
        if m.path not in out:
            out[m.path] = _disk_row(m)
    return out


def _disk_row(m: Member) -> dict:
    st = os.stat(m.path)
    return {
        "path": m.path,
        "hash": sha256_file(m.path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "width": m.width,
        "height": m.height,
        "taken": None,
    }


def facts_for(row: dict) -> Facts:
    return Facts(
        path=row["path"],
        width=row.get("width"),
        height=row.get("height"),
        bytes=row.get("size"),
        mtime_ns=row.get("mtime_ns"),
        taken=row.get("taken"),
        exif_fields=exif_field_count(row["path"]),
        capture_formats=captures.capture_formats(row["path"]),
        hash=row.get("hash"),
    )


def exif_field_count(path: str) -> int:
    """How many of the EXIF fields a photographer cares about the file carries (header read)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            exif = img.getexif()
            sub = exif.get_ifd(0x8769)
            gps = exif.get_ifd(0x8825)
    except Exception:  # unreadable header: no EXIF to count
        return 0
    present = [36867 in sub or 306 in exif, 271 in exif, 272 in exif, 42036 in sub, 33434 in sub]
    return sum(present) + bool(gps)


def _plan_group(
    number: int, group: Group, rows: dict, policy: Policy, action: str, reference=()
) -> PlanGroup:
    facts = {m.path: facts_for(rows[m.path]) for m in group.members}
    if group.best:  # a burst: a stack to look at, every shot kept; the best one suggested
        return _stack_group(number, group, rows, facts)
    ranked = policy.rank(list(facts.values()))
    kept = ranked[0]
    key = captures.capture_key(kept.path)
    others = [f for f in ranked[1:] if captures.capture_key(f.path) != key]
    reason = policy.explain(kept, others[0] if others else None)
    files = [
        _plan_file(m, rows[m.path], rows[kept.path], facts, action, key, reference)
        for m in group.members
    ]
    files.sort(key=lambda f: f.path != kept.path)  # the kept file first
    return PlanGroup(number, group.tier, kept.path, reason, files)


def _stack_group(number: int, group: Group, rows: dict, facts: dict) -> PlanGroup:
    if group.best is None:
        raise PlanError("a burst's group names no best shot")
    best = rows[group.best]
    files = [_plan_file(m, rows[m.path], best, facts, "keep", None, ()) for m in group.members]
    for f in files:
        f.note = "a burst: every shot is kept unless you change its action"
    files.sort(key=lambda f: f.path != group.best)
    reason = {
        "criterion": "sharpness",
        "kept": os.path.basename(group.best),
        "text": "the sharpest shot of the burst, suggested; every shot is kept",
    }
    return PlanGroup(number, group.tier, group.best, reason, files)


def _plan_file(m: Member, row: dict, kept: dict, facts: dict, action: str, key, refs) -> PlanFile:
    note = None
    if m.path == kept["path"]:
        act = "keep"
    elif under_any(m.path, refs):
        act, note = "keep", "in a reference folder: never acted on"
    elif captures.capture_key(m.path) == key:
        act, note = "keep", "same capture as the kept file (another rendition)"
    elif action in LINKS and row["hash"] != kept["hash"]:
        act, note = "keep", f"not byte-identical to the kept file: {action} would lose it"
    else:
        act = action
    return PlanFile(
        path=m.path,
        action=act,
        hash=row["hash"],
        size=row["size"],
        mtime_ns=row["mtime_ns"],
        width=row.get("width"),
        height=row.get("height"),
        taken=row.get("taken"),
        score=round(m.score, 6),
        confidence=None if m.confidence is None else round(m.confidence, 4),
        match=m.match,
        verified=m.verified,
        transform=m.transform,
        note=note,
        deltas=None if m.path == kept["path"] else deltas(facts[m.path], facts[kept["path"]]),
    )


def deltas(f: Facts, kept: Facts) -> dict:
    """How this file differs from the kept one: pixels (%), bytes, days (+: newer)."""
    pixels = round(100 * (f.pixels - kept.pixels) / kept.pixels, 1) if kept.pixels else None
    a, b = f.date[0], kept.date[0]
    return {
        "pixels_pct": pixels,
        "bytes": (f.bytes or 0) - (kept.bytes or 0),
        "days": round((a - b).total_seconds() / 86400, 2) if a and b else None,
        "exif_fields": f.exif_fields - kept.exif_fields,
        "exif_of": EXIF_KEYS,
    }


def attach_companions(groups: list[PlanGroup]) -> None:
    """Record each file's capture companions; sidecars of a removed file follow it (once)."""
    leaving = {f.path for g in groups for f in g.files if f.action in REMOVING}
    in_plan = {f.path for g in groups for f in g.files}
    claimed: set[str] = set()
    for f in (f for g in groups for f in g.files):
        follow = {c.path for c in captures.followers(f.path, leaving)} if f.path in leaving else ()
        for c in captures.companions(f.path):
            if c.path in in_plan:
                continue
            follows = c.path in follow and c.path not in claimed
            claimed.update([c.path] if follows else [])
            st = os.stat(c.path)
            f.companions.append(
                {
                    "path": c.path,
                    "role": c.role,
                    "follows": follows,
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                }
            )


def common_root(paths: list[str]) -> str | None:
    """The common folder of the files acted on (`move` keeps paths relative to it)."""
    if not paths:
        return None
    return os.path.commonpath([os.path.dirname(p) for p in paths])
