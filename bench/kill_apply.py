"""SIGKILL `dinosearch apply` and `dinosearch undo` at random moments of a plan that trashes,
moves, hardlinks and symlinks hundreds of files; after each kill check every file and the
journal, resume, and after each undo compare every byte with what was there before.

    python bench/kill_apply.py [--originals 150] [--rounds 7] [--kills-per-run 3] [--seed 1]
                               [--out bench/results/reliability_kill_apply.md]
    python bench/kill_apply.py --quick        # smoke run: 20 originals, 1 round, 1 kill a run

The folder: `--originals` distinct 64x64 tiles of the real photos (bench/kill_index.py) under
originals/, each with 2 or 3 byte-identical copies under copies-N/; indexed with the tiny test
checkpoint, `dups --plan` (kept: the file under originals/), and the plan's actions set in turn to
trash, move, hardlink and symlink. Each round applies the plan, killed `--kills-per-run` times
(every run after the first resumes and is killed again), then runs apply to the end; then undoes
it the same way. A kill waits (read-only poll of the journal) for a random step of its run, then
a random part of one step's time. The system trash is a private freedesktop trash (HOME and
XDG_DATA_HOME point into the temp dir).

After every kill and every completed run: no file lost (its bytes at its path, in the trash, at
its move target, or a link to the kept file), none in two places, kept files untouched, the
journal agrees with the disk and the library rows, PRAGMA integrity_check, and `check` finds
nothing the journal does not explain (a file trashed or moved whose row update had not
committed; the FAISS file lagging). After each completed apply and undo, `dinosearch check` is
clean; after each undo every original file is back with its SHA-256 and mtime, no link, nothing
left in the trash or the move folder, and the library rows (path, id, hash, vector) are those
before the first apply.
"""

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import harness
from harness import ROOT
from kill_index import cli_check, integrity, private_model_cache, rows, small_images

from indexer.files import sha256_file
from search.cleanup.apply import TMP_SUFFIX
from search.upkeep.check import check_library

ACTIONS = ("trash", "move", "hardlink", "symlink")  # given to the plan's files in turn
FINAL = {"trash": "trashed", "move": "moved", "hardlink": "hardlink", "symlink": "symlink"}
DERIVED = {"index_stale", "index_missing", "index_mismatch", "temp_file", "stale_index_file"}
POLL_S = 0.005
# Raw cosine for `dups`: the tiny random-init model puts distinct tiles close together, and the
# bench wants groups of byte-identical copies only (they score 1: one vector per content).
THRESHOLD = "0.99999"
RUN_TIMEOUT_S = 300


@dataclass
class Step:
    path: str
    action: str
    keep: str
    target: str | None  # where `move` puts it
    digest: str


@dataclass
class World:
    folder: Path
    library: Path
    moved: Path
    trash: Path
    plan: Path
    plan_id: str
    env: dict
    steps: list[Step]
    files: dict[str, tuple[str, int]]  # every file before the first apply: (sha256, mtime_ns)
    rows: dict  # library rows before the first apply

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "search.cli.app", *args]

    def apply_cmd(self) -> list[str]:
        return self.cli("apply", str(self.plan), "--yes", "--to", str(self.moved), "--json")

    def undo_cmd(self) -> list[str]:
        return self.cli("undo", str(self.plan), "--json")


# --- building the folder and the plan ------------------------------------------------------------


def build(work: Path, originals: int, seed: int) -> World:
    rng = random.Random(seed)
    folder, library = work / "photos", work / "library"
    home = work / "home"
    data = home / ".local" / "share"
    data.mkdir(parents=True)
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(data)}
    for src in small_images(folder / "originals", originals, seed):
        for n in range(1, rng.choice((2, 3)) + 1):
            dst = folder / f"copies-{n}" / src.relative_to(folder / "originals")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    run(env, "index", str(folder), "--index", str(library), "--workers", "1", "--json")
    plan = work / "plan.json"
    keep = f"folder:{folder / 'originals'} > oldest"
    run(
        env,
        "dups",
        "--index",
        str(library),
        "--threshold",
        THRESHOLD,
        "--plan",
        str(plan),
        "--keep",
        keep,
    )
    moved = work / "moved"
    world = World(folder, library, moved, data / "Trash", plan, "", env, [], {}, {})
    mix_actions(world)
    world.files = {p: (sha256_file(p), os.lstat(p).st_mtime_ns) for p in walk(folder)}
    world.rows = rows(library)
    return world


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "search.cli.app", *args]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    if proc.returncode:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{proc.stderr}")
    return proc


def mix_actions(world: World) -> None:
    """Give the plan's files trash, move, hardlink, symlink in turn; note each step."""
    data = json.loads(world.plan.read_text())
    turn = 0
    for group in data["groups"]:
        hashes = {f["hash"] for f in group["files"]}
        if len(hashes) != 1:
            raise SystemExit(f"group {group['group']} mixes contents: raise THRESHOLD")
        for f in group["files"]:
            if f["path"] == group["keep"]:
                continue
            f["action"] = ACTIONS[turn % len(ACTIONS)]
            turn += 1
            target = None
            if f["action"] == "move":
                target = os.path.join(world.moved, os.path.relpath(f["path"], data["root"]))
            world.steps.append(Step(f["path"], f["action"], group["keep"], target, f["hash"]))
    world.plan.write_text(json.dumps(data, indent=1))
    world.plan_id = data["id"]


def walk(folder: Path) -> list[str]:
    return sorted(
        os.path.join(d, n) for d, _, names in os.walk(folder) for n in names if n != ".keep"
    )


# --- what is where -------------------------------------------------------------------------------


def trash_index(trash: Path) -> tuple[dict[str, list[str]], int]:
    """Original path -> trashed copies that exist; and the .trashinfo files without a file."""
    found: dict[str, list[str]] = {}
    orphans = 0
    for info in sorted((trash / "info").glob("*.trashinfo")):
        stored = trash / "files" / info.name[: -len(".trashinfo")]
        original = next(
            (
                unquote(line[5:].strip())
                for line in info.read_text().splitlines()
                if "Path=" in line
            ),
            None,
        )
        if not os.path.lexists(stored) or original is None:
            orphans += 1
            continue
        found.setdefault(original, []).append(str(stored))
    return found, orphans


def locations(step: Step, trashed: dict[str, list[str]]) -> list[str]:
    """Every place the step's file is now: home, hardlink, symlink, moved, trashed, temp (a
    `-changed` suffix where the bytes are not the plan's)."""
    out, path = [], step.path
    if os.path.islink(path):
        out.append("symlink" if os.readlink(path) == step.keep else "wrong-link")
    elif os.path.isfile(path):
        if os.path.samefile(path, step.keep):
            out.append("hardlink")
        else:
            out.append(_named("home", path, step.digest))
    if step.target and os.path.lexists(step.target):
        out.append(_named("moved", step.target, step.digest))
    out += [_named("trashed", t, step.digest) for t in trashed.get(path, [])]
    if os.path.lexists(path + TMP_SUFFIX):
        out.append("temp")
    return out


def _named(place: str, path: str, digest: str) -> str:
    return place if sha256_file(path) == digest else f"{place}-changed"


def file_problems(world: World, where: dict[str, list[str]]) -> list[str]:
    """Files lost, in two places, or changed; kept files touched."""
    out = []
    for step in world.steps:
        places = [p for p in where[step.path] if p != "temp"]
        holding = [p for p in places if p in ("home", "moved", "trashed")]
        if not places:
            out.append(f"lost: {step.path}")
        elif len(places) > 1:
            out.append(f"in two places: {step.path} {places}")
        elif not holding and places[0] not in ("hardlink", "symlink"):
            out.append(f"changed: {step.path} {places}")
    for keep in {s.keep for s in world.steps}:
        digest, mtime = world.files[keep]
        if os.path.islink(keep) or (sha256_file(keep), os.lstat(keep).st_mtime_ns) != (
            digest,
            mtime,
        ):
            out.append(f"kept file touched: {keep}")
    return out


# --- the journal and the library -----------------------------------------------------------------


def read_db(world: World) -> tuple[dict[str, dict], set[str]]:
    """The plan's journal rows by path, and the paths the library holds (read-only)."""
    uri = f"file:{world.library / 'library.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        query = "select path, action, state, target from journal where plan_id = ?"
        journal = {r["path"]: dict(r) for r in conn.execute(query, [world.plan_id])}
        paths = {r[0] for r in conn.execute("select path from images")}
    return journal, paths


def journal_problems(world: World, phase: str, where: dict, journal: dict, paths: set) -> list[str]:
    """Each step's journal state against its file and its library row."""
    out = []
    pending = [p for p, r in journal.items() if r["state"] == "pending"]
    if len(pending) > 1:
        out.append(f"{len(pending)} pending rows (apply acts on one file at a time)")
    for step in world.steps:
        row = journal.get(step.path)
        state = row["state"] if row else None
        places = [p for p in where[step.path] if p != "temp"]
        final, indexed = FINAL[step.action], library_path(step, paths)
        if state in (None, "undone"):
            ok = places == ["home"] and indexed == step.path
        elif state == "done" and phase == "undo":  # not undone yet, or put back but not marked
            ok = places in ([final], ["home"]) and indexed == done_row(step)
        elif state == "done":
            ok = places == [final] and indexed == done_row(step)
        elif state == "pending":  # journalled: acted or not; the library not yet updated
            ok = places in ([final], ["home"]) and indexed == step.path
        else:
            ok = False
        if not ok:
            out.append(f"{step.path}: journal {state}, file {places}, library row {indexed}")
    return out


def library_path(step: Step, paths: set) -> str | None:
    """Which of the step's paths the library has a row for."""
    held = [p for p in (step.path, step.target) if p in paths]
    return held[0] if len(held) == 1 else (None if not held else "both")


def done_row(step: Step) -> str | None:
    return {"trash": None, "move": step.target}.get(step.action, step.path)


def moment(world: World, phase: str, where: dict, journal: dict) -> str:
    """Where the kill fell: between two steps, or inside one (and which part)."""
    states = [journal.get(s.path, {}).get("state") for s in world.steps]
    temps = sum("temp" in places for places in where.values())
    if phase == "apply":
        for step in world.steps:
            row = journal.get(step.path)
            if row and row["state"] == "pending":
                acted = FINAL[step.action] in where[step.path]
                return (
                    f"{step.action}: {'acted, not yet done' if acted else 'journalled, not acted'}"
                )
        if all(s == "done" for s in states):
            return "after the last step (saving the index)"
    else:
        for step in world.steps:
            row = journal.get(step.path)
            if row and row["state"] == "done" and where[step.path] == ["home"]:
                return f"{step.action}: restored, not yet marked undone"
        if all(s == "undone" for s in states):
            return "after the last row (saving the index)"
    return "between two steps" + (" (a temp link/copy left)" if temps else "")


# --- one kill ------------------------------------------------------------------------------------


def progress(world: World, state: str) -> int:
    try:
        journal, _ = read_db(world)
    except sqlite3.Error:
        return 0
    return sum(r["state"] == state for r in journal.values())


def kill_at(world: World, cmd: list[str], state: str, target: int, jitter_s: float) -> bool:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=world.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while proc.poll() is None and progress(world, state) < target:
        time.sleep(POLL_S)
    time.sleep(jitter_s)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def inspect(world: World, phase: str) -> dict:
    """Files, journal, library and check after a kill or a run."""
    trashed, orphans = trash_index(world.trash)
    where = {s.path: locations(s, trashed) for s in world.steps}
    journal, paths = read_db(world)
    report = check_library(world.library)
    explained = explained_paths(world, phase, where, journal)
    other = [
        p.to_json()
        for p in report.problems
        if p.kind not in DERIVED and not (p.path in explained and p.kind in EXPLAINABLE)
    ]
    return {
        "moment": moment(world, phase, where, journal),
        "states": {s: sum(r["state"] == s for r in journal.values()) for s in STATES},
        "orphan_trashinfo": orphans,
        "temps": sum("temp" in places for places in where.values()),
        "file_problems": file_problems(world, where),
        "journal_problems": journal_problems(world, phase, where, journal, paths),
        "integrity": integrity(world.library),
        "check_kinds": sorted({p.kind for p in report.problems}),
        "unexplained": other,
    }


STATES = ("pending", "done", "undone", "skipped", "failed")
EXPLAINABLE = {"missing_file", "changed_file"}


def explained_paths(world: World, phase: str, where: dict, journal: dict) -> set[str]:
    """Rows `check` may find off because the journal says a step is mid-way: acted (apply) or
    put back (undo) with the row update not yet committed."""
    out = set()
    for step in world.steps:
        row = journal.get(step.path)
        mid = row and (
            (row["state"] == "pending" and FINAL[step.action] in where[step.path])
            or (phase == "undo" and row["state"] == "done" and where[step.path] == ["home"])
        )
        if mid:
            out |= {step.path, step.target} - {None}
    return out


def next_target(rng: random.Random, before: int, total: int, kills_left: int) -> int:
    spread = max(1, (total - before - 1) * 2 // (kills_left + 1))
    return before + rng.randint(1, max(1, min(spread, total - before - 2)))


def killed_runs(world, rng, phase: str, kills: int, step_s: float, log: list) -> None:
    """`kills` SIGKILLs of apply (or undo), each run resuming the last, then one to the end."""
    cmd, state = (world.apply_cmd(), "done") if phase == "apply" else (world.undo_cmd(), "undone")
    total = len(world.steps)
    done = 0
    while done < kills and progress(world, state) < total - 2:
        before = progress(world, state)
        target = next_target(rng, before, total, kills - done)
        jitter = rng.uniform(0, step_s)
        killed = kill_at(world, cmd, state, target, jitter)
        entry = {"phase": phase, "before": before, "target": target, "killed": killed}
        entry.update(inspect(world, phase))
        log.append(entry)
        print(json.dumps(entry), file=sys.stderr)
        done += killed


def finish_run(world: World, phase: str) -> dict:
    """Run apply (or undo) to the end: its counts, the seconds between its first and last step
    (polled), then everything checked."""
    cmd, state = (world.apply_cmd(), "done") if phase == "apply" else (world.undo_cmd(), "undone")
    started = time.perf_counter()
    out = tempfile.TemporaryFile("w+")  # not a pipe: the JSON outgrows a pipe's buffer
    proc = subprocess.Popen(cmd, cwd=ROOT, env=world.env, stdout=out, stderr=subprocess.DEVNULL)
    before, first, last = progress(world, state), None, None
    while proc.poll() is None:
        now = progress(world, state)
        if now > before:
            first = first or time.perf_counter()
            last, before = time.perf_counter(), now
        time.sleep(POLL_S)
    out.seek(0)
    stdout = out.read()
    out.close()
    entry = {
        "phase": phase,
        "exit": proc.returncode,
        "counts": json.loads(stdout)["counts"] if stdout.strip() else {},
        "seconds": time.perf_counter() - started,
        "stepping_s": (last - first) if first and last else 0.0,
    }
    entry.update(inspect(world, phase))
    code, report = cli_check(world.library)
    entry["check_exit"], entry["check_problems"] = code, report["problems"]
    entry["end_problems"] = end_problems(world, phase)
    return entry


def end_problems(world: World, phase: str) -> list[str]:
    trashed, orphans = trash_index(world.trash)
    journal, _ = read_db(world)
    want = "done" if phase == "apply" else "undone"
    out = [f"{p}: journal {r['state']}" for p, r in journal.items() if r["state"] != want]
    for step in world.steps:
        places = locations(step, trashed)
        expect = [FINAL[step.action]] if phase == "apply" else ["home"]
        if places != expect:
            out.append(f"{step.path}: {places}, expected {expect}")
    if phase == "undo":
        out += restored_problems(world, orphans)
    return out


def restored_problems(world: World, orphans: int) -> list[str]:
    """After undo: every byte and mtime back, no link, nothing left over, the same rows."""
    now = walk(world.folder)
    out = [f"extra file: {p}" for p in set(now) - world.files.keys()]
    out += [f"missing: {p}" for p in world.files.keys() - set(now)]
    for path in set(now) & world.files.keys():
        st = os.lstat(path)
        if os.path.islink(path) or st.st_nlink != 1:
            out.append(f"still linked: {path}")
        elif (sha256_file(path), st.st_mtime_ns) != world.files[path]:
            out.append(f"bytes or mtime differ: {path}")
    left = walk(world.moved) if world.moved.exists() else []
    left += walk(world.trash / "files") if (world.trash / "files").exists() else []
    out += [f"left over: {p}" for p in left]
    out += [f"{orphans} .trashinfo files without their file"] if orphans else []
    now_rows = rows(world.library)
    if now_rows != world.rows:
        changed = {
            p for p in now_rows.keys() | world.rows.keys() if now_rows.get(p) != world.rows.get(p)
        }
        out += [f"library row differs: {p}" for p in sorted(changed)]
    return out


# --- the bench -----------------------------------------------------------------------------------


def main() -> int:
    parser = harness.parser(__doc__, quick="smoke run: 20 originals, 1 round, 1 kill a run")
    parser.add_argument("--originals", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--kills-per-run", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="the report (reliability_kill_apply.md)")
    args = parser.parse_args()
    if args.quick:
        args.originals, args.rounds, args.kills_per_run = 20, 1, 1
    args.out = args.out or harness.results_dir() / "reliability_kill_apply.md"
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="dinosearch-kill-apply-"))
    try:
        return bench(args, work, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(args, work: Path, started: float) -> int:
    private_model_cache(work)
    world = build(work, args.originals, args.seed)
    rng = random.Random(args.seed)
    log: list[dict] = []
    ends = [finish_run(world, "apply"), finish_run(world, "undo")]  # round 0: no kills
    step_s = {e["phase"]: e["stepping_s"] / len(world.steps) for e in ends}
    for _ in range(args.rounds):
        for phase in ("apply", "undo"):
            killed_runs(world, rng, phase, args.kills_per_run, step_s[phase], log)
            ends.append(finish_run(world, phase))
            print(json.dumps({k: v for k, v in ends[-1].items() if k != "states"}), file=sys.stderr)
    sizes = {
        "originals": args.originals,
        "files": len(world.files),
        "steps": len(world.steps),
        "actions": {a: sum(s.action == a for s in world.steps) for a in ACTIONS},
        "apply_s": ends[0]["seconds"],
        "undo_s": ends[1]["seconds"],
        "bench_s": time.perf_counter() - started,
    }
    write_report(args.out, sizes, log, ends)
    return 0 if not failures(log, ends) else 1


def failures(log: list[dict], ends: list[dict]) -> list[str]:
    out = []
    for e in log + ends:
        out += e["file_problems"] + e["journal_problems"] + [str(p) for p in e["unexplained"]]
        out += [] if e["integrity"] == "ok" else [f"integrity: {e['integrity']}"]
    for e in ends:
        out += e["end_problems"] + [str(p) for p in e["check_problems"]]
        out += [f"{e['phase']} exit {e['exit']}"] if e["exit"] else []
    return out


def write_report(out: Path, sizes: dict, log: list[dict], ends: list[dict]) -> None:
    kills = [e for e in log if e["killed"]]
    by_phase = {p: [e for e in kills if e["phase"] == p] for p in ("apply", "undo")}
    acts = ", ".join(f"{n} {a}" for a, n in sizes["actions"].items())
    fails = failures(log, ends)
    lines = [
        "# Reliability: SIGKILL during `dinosearch apply` and `dinosearch undo`",
        "",
        f"Folder: {sizes['originals']} distinct 64x64 tiles of `shared/testdata/photos`, each with "
        f"2–3 byte-identical copies: {sizes['files']} files. The plan (`dups --plan`, edited) "
        f"acts on {sizes['steps']}: {acts}. Uninterrupted apply {sizes['apply_s']:.1f} s, undo "
        f"{sizes['undo_s']:.1f} s; the whole bench {sizes['bench_s']:.0f} s on 2 shared cores "
        "(sizes and method in bench/kill_apply.py's docstring).",
        "",
        f"- kills during apply: **{len(by_phase['apply'])}**, during undo: "
        f"**{len(by_phase['undo'])}** (plus {len(log) - len(kills)} runs that finished first); "
        f"each followed by a resume to the end; {len(ends)} completed runs in all",
        f"- files lost: **{count(log + ends, 'lost')}**; files in two places: "
        f"**{count(log + ends, 'in two places')}**; kept files touched: "
        f"**{count(log + ends, 'kept file touched')}**",
        f"- journal disagreeing with the disk or the library rows: "
        f"**{sum(len(e['journal_problems']) for e in log + ends)}**; `PRAGMA integrity_check` "
        f"not ok: **{sum(e['integrity'] != 'ok' for e in log + ends)}**; `check` problems the "
        f"journal does not explain: **{sum(len(e['unexplained']) for e in log + ends)}**",
        f"- after each completed apply and undo: `dinosearch check` clean "
        f"**{sum(e['check_exit'] == 0 for e in ends)} of {len(ends)}**; end-state problems "
        f"(journal not all done/undone, a file not where its action puts it; after undo: a byte, "
        f"mtime, link, leftover or library row differing from before): "
        f"**{sum(len(e['end_problems']) for e in ends)}**",
        "",
        "Kill moments (journal state at each kill):",
        "",
        "| moment | apply | undo |",
        "|---|---|---|",
    ]
    moments = sorted({e["moment"] for e in kills})
    for m in moments:
        n = {p: sum(e["moment"] == m for e in by_phase[p]) for p in by_phase}
        lines.append(f"| {m} | {n['apply']} | {n['undo']} |")
    lines += [
        "",
        "| # | phase | steps before | aimed at | journal at kill (pending/done/undone) | moment | "
        "temp files | orphan .trashinfo | `check` kinds | problems |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, e in enumerate(log, 1):
        s = e["states"]
        problems = len(e["file_problems"]) + len(e["journal_problems"]) + len(e["unexplained"])
        lines.append(
            f"| {n} | {e['phase']}{'' if e['killed'] else ' (finished)'} | {e['before']} | "
            f"{e['target']} | {s['pending']}/{s['done']}/{s['undone']} | {e['moment']} | "
            f"{e['temps']} | {e['orphan_trashinfo']} | {', '.join(e['check_kinds']) or 'clean'} | "
            f"{problems} |"
        )
    lines += ["", "| completed run | exit | counts | seconds | check | end problems |"]
    lines += ["|---|---|---|---|---|---|"]
    for e in ends:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(e["counts"].items()))
        lines.append(
            f"| {e['phase']} | {e['exit']} | {counts} | {e['seconds']:.1f} | "
            f"{'clean' if e['check_exit'] == 0 else 'NOT clean'} | {len(e['end_problems'])} |"
        )
    if fails:
        lines += ["", "## Problems found", ""] + [f"- {f}" for f in sorted(set(fails))[:200]]
    data = {"sizes": sizes, "kills": log, "completed_runs": ends, "problems": sorted(set(fails))}
    harness.write_results(out.stem, lines, data, directory=out.parent, quiet=True)
    print(f"wrote {out}", file=sys.stderr)


def count(entries: list[dict], prefix: str) -> int:
    return sum(p.startswith(prefix) for e in entries for p in e["file_problems"])


if __name__ == "__main__":
    sys.exit(main())
