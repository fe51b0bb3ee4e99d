"""The near-duplicate set inside a library of more than 5,000 images (issue 23): does `dups`
keep the set's F1 and keep every set file away from the distractors?

usage: python bench/dups_distractors.py [--distractors bench/work/distractors-5200] [--model DIR]
           [--work bench/work/dups-distractors] [--libraries set,all] [--reindex]
           [--name dups_distractors]

Two libraries, each built through the real CLI (whole processes, HF_HUB_OFFLINE=1, default
options; `--workers 1` is the default on 2 cores):

    set: dinosearch index NEARDUP MIXED --index LIB --model DIR --workers 1 --json
    all: dinosearch index NEARDUP MIXED DISTRACTORS --index LIB --model DIR --workers 1 --json
    dinosearch dups --index LIB --json                  (default options: --threshold auto)
    dinosearch dups --index LIB --json --plan PLAN      (what would be trashed)

The CLI is that of a commit (`--commit`, default HEAD: `git archive` into --work, run with
PYTHONPATH), so uncommitted edits of others in a shared working tree are not measured.
NEARDUP and MIXED are bench/make_neardup_set.py's sets (built when missing); DISTRACTORS is
bench/make_distractors.py's folder of procedural pictures that are copies of nothing. A library
is cached under --work with its index result and its first (calibrating) `dups` run, so a rerun
scores again without re-indexing (`--reindex` builds it afresh).

Scored per library: pair P/R/F1 of the acted-on tiers (exact+pixels+copy) on each set
(dups_quality.product_eval), groups joining a set file and a distractor, groups of distinct
distractors (every one a false group; listed with paths, tier, scores, confidence, evidence),
the plan's losses (files trashed with no file of their own picture kept in their group:
lookalike.score_plan), `stats.estimate`, the seconds of index and of the first dups.
Results: bench/results/NAME.{md,json}, with machine facts (CPU, flags, load), date and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import harness
import lookalike
from dups_eval import DEFAULT_TRUTH, load_sets
from dups_quality import product_eval, read_library
from lookalike import (
    WEIGHTS_LABEL,
    code_state,
    dinosearch_bin,
    export_commit,
    rel,
    run_json,
    score_plan,
    score_report,
)

BENCH = harness.BENCH
ACTED = ("exact", "pixels", "copy")
SCORED = "exact+pixels+copy"  # product_eval's cumulative key for the acted-on tiers
# distractor kinds -> the low-information names lookalike.classify knows
KIND_AS = {"dark": "near-black", "page": "document", "flat": "graphic"}
FS_ROOT = Path("/")  # truth keys are absolute paths without the leading slash
MEMBER_KEYS = (
    "score",
    "similarity",
    "confidence",
    "match",
    "verified",
    "via",
    "twin_of",
    "transform",
    "width",
    "height",
)


def build_truth(truth_path: Path, distractors: Path | None) -> tuple[dict, dict]:
    """Ground truth in lookalike's shape (files -> source and kind) plus distractor facts."""
    files: dict[str, dict] = {}
    sources: dict[str, dict] = {}
    for s in json.loads(truth_path.read_text())["sets"]:
        for g in s["groups"]:
            source = f"{s['name']}:{g['id']}"
            sources[source] = {"kind": f"set:{s['name']}"}
            for f in g["files"]:
                files[rel(f["path"], FS_ROOT)] = {"source": source, "kind": f"set:{s['name']}"}
    facts: dict = {}
    if distractors is not None:
        manifest = json.loads((distractors / "manifest.json").read_text())
        facts = {k: manifest[k] for k in ("count", "kinds", "formats", "in_series", "series")}
        facts["check"] = {k: v for k, v in manifest["check"].items() if k != "redrawn"}
        facts["check"]["redrawn"] = len(manifest["check"]["redrawn"])
        facts["seed"] = manifest["seed"]
        for name, info in manifest["files"].items():
            r = rel(str(distractors / name), FS_ROOT)
            kind = KIND_AS.get(info["kind"], info["kind"])
            files[r] = {"source": r, "kind": kind, "series": info["series"]}
            sources[r] = {"kind": kind}
    return {"files": files, "sources": sources, "planted_pairs": []}, facts


def ensure_neardup(truth_path: Path, log: list) -> None:
    if truth_path.exists():
        return
    _, doc, err = run_json([sys.executable, str(BENCH / "make_neardup_set.py")], log)
    if not truth_path.exists():
        raise SystemExit(f"building the near-duplicate set failed: {err}")


def member_row(m: dict, truth: dict) -> dict:
    r = rel(m["path"], FS_ROOT)
    info = truth["files"].get(r, {})
    return {
        "path": "/" + r,
        "source": info.get("source"),
        "kind": info.get("kind"),
        "series": info.get("series"),
        **{k: m.get(k) for k in MEMBER_KEYS},
    }


def classify_groups(report: dict, truth: dict) -> dict:
    """Groups joining a set file with a distractor, and groups among distinct distractors."""
    joined, among, touched = [], [], set()
    for number, g in enumerate(report.get("groups", []), 1):
        members = [member_row(m, truth) for m in g["members"]]
        kinds = [str(m["kind"]) for m in members]
        n_set = sum(k.startswith("set:") for k in kinds)
        n_dis = sum(not k.startswith("set:") and k != "None" for k in kinds)
        if n_dis:
            touched.update(m["path"] for m in members if not str(m["kind"]).startswith("set:"))
        entry = {"group": number, "tier": g["tier"], "members": members}
        if n_set and n_dis:
            joined.append(entry)
        elif n_dis >= 2 and len({m["source"] for m in members}) > 1:
            among.append(entry)
    acted = lambda xs: [x for x in xs if x["tier"] in ACTED]  # noqa: E731
    return {
        "set_with_distractor_groups": len(acted(joined)),
        "distractor_groups": len(acted(among)),
        "similar_tier": {
            "set_with_distractor": len(joined) - len(acted(joined)),
            "distractor_groups": len(among) - len(acted(among)),
        },
        "distractors_in_any_group": len(touched),
        "set_with_distractor": joined,
        "among_distractors": among,
    }


def library(
    name: str, folders: list[Path], args: argparse.Namespace, model: str, truth: dict
) -> dict:
    log: list = []
    exe = dinosearch_bin()
    lib = args.work / f"lib-{name}"
    marker = args.work / f"lib-{name}.run.json"
    out: dict = {"library": str(lib), "folders": [str(f) for f in folders], "commands": log}
    cached = marker.exists() and (lib / "library.db").exists() and not args.reindex
    if cached:
        first = json.loads(marker.read_text())
        out["cached_from"] = first["started"]
        print(f"{name}: reusing {lib} (indexed {first['started']})", flush=True)
    else:
        shutil.rmtree(lib, ignore_errors=True)
        marker.unlink(missing_ok=True)
        first = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": load()}
        print(f"{name}: indexing {', '.join(map(str, folders))} -> {lib}", flush=True)
        cmd = [exe, "index", *map(str, folders), "--index", str(lib), "--model", model]
        seconds, index, err = run_json([*cmd, "--workers", "1", "--json"], log)
        if err:
            out["error"] = f"index: {err}"
            return out
        first["index"] = {
            "seconds": round(seconds, 1),
            "command": log[-1]["cmd"],
            **{k: index.get(k) for k in ("indexed", "embedded", "unchanged", "skipped")},
            "failed": index.get("failed"),
            "load_after": load(),
        }
        print(f"{name}: index {seconds:.0f} s; first dups", flush=True)
        seconds, report, err = run_json([exe, "dups", "--index", str(lib), "--json"], log)
        if err:
            out["error"] = f"first dups: {err}"
            return out
        first["first_dups"] = {
            "seconds": round(seconds, 1),
            "command": log[-1]["cmd"],
            "load_after": load(),
        }
        (args.work / f"lib-{name}.dups-first.json").write_text(json.dumps(report))
        marker.write_text(json.dumps(first, indent=1))
    out["index"] = first["index"]
    out["first_dups"] = first["first_dups"]
    saved = args.work / f"lib-{name}.result.json"
    plan_path = args.work / f"lib-{name}.plan.json"
    later = args.work / f"lib-{name}.dups.json"
    if args.rescore and cached and saved.exists() and later.exists() and plan_path.exists():
        before = json.loads(saved.read_text())
        out["commands"] = log = before["commands"]
        out["dups_seconds"] = before["dups_seconds"]
        out["load_after_dups"] = before["load_after_dups"]
        out["rescored"] = "reports of the run above, scored again (--rescore)"
        report = json.loads(later.read_text())
    else:
        seconds, report, err = run_json([exe, "dups", "--index", str(lib), "--json"], log)
        if err:
            out["error"] = f"dups: {err}"
            return out
        out["dups_seconds"] = round(seconds, 1)
        out["load_after_dups"] = load()
        later.write_text(json.dumps(report))
    first_report = args.work / f"lib-{name}.dups-first.json"
    if first_report.exists():
        out["first_and_later_dups_same_groups"] = membership(
            json.loads(first_report.read_text())
        ) == membership(report)
    stats = report.get("stats") or {}
    cal = report.get("calibration") or {}
    out["threshold"] = report.get("threshold")
    out["calibration"] = {
        k: cal.get(k)
        for k in ("normalisation", "threshold", "precision", "recall", "sample", "positives")
    }
    out["stats"] = {k: v for k, v in stats.items() if k != "seconds"}
    paths, _ = read_library(lib)
    out["library_rows"] = len(paths)
    out["sets"] = {
        ts.name: product_eval(ts, report, set(paths))[SCORED] for ts in load_sets(args.truth)
    }
    quality = score_report(report, truth, FS_ROOT)
    out["groups"] = {
        "acted": quality["groups_acted"],
        "by_tier": {t: v["groups"] for t, v in quality["tiers"].items()},
        "mixed_acted": quality["mixed_groups_acted"],
        "mixed_by_why": quality["mixed_by_why"],
        "false_pairs_acted": quality["false_pairs_acted"],
        "unknown_paths": quality["unknown_paths"][:20],
    }
    out["distractors"] = classify_groups(report, truth)
    if out.get("rescored"):
        seconds, err = before.get("plan", {}).get("seconds", 0.0), None
    else:
        plan_path.unlink(missing_ok=True)
        seconds, _, err = run_json(
            [exe, "dups", "--index", str(lib), "--json", "--plan", str(plan_path)], log
        )
    if err or not plan_path.exists():
        out["plan"] = {"error": err or "no plan written"}
    else:
        out["plan"] = {
            "seconds": round(seconds, 1),
            **score_plan(json.loads(plan_path.read_text()), truth, FS_ROOT),
        }
    saved.write_text(json.dumps(out, indent=1))
    return out


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def membership(report: dict) -> list[tuple[str, tuple[str, ...]]]:
    """A report's groups as (tier, sorted member paths), sorted: to compare two runs."""
    return sorted(
        (g["tier"], tuple(sorted(m["path"] for m in g["members"]))) for g in report["groups"]
    )


# ---------------------------------------------------------------------------- report


def f3(x: object) -> str:
    return f"{x:.3f}" if isinstance(x, float) else "-" if x is None else str(x)


def group_lines(entries: list[dict], limit: int = 40) -> list[str]:
    lines = []
    for e in entries[:limit]:
        lines.append(
            f"- group {e['group']} ({e['tier']}): "
            + "; ".join(
                f"`{m['path']}` [{m['kind']}"
                + (f", series {m['series']}" if m.get("series") else "")
                + f", {m['match']}"
                + (f", {m['verified']}" if m.get("verified") else "")
                + (f", score {m['score']:.3f}" if isinstance(m.get("score"), float) else "")
                + (
                    f", confidence {m['confidence']:.3f}"
                    if isinstance(m.get("confidence"), float)
                    else ""
                )
                + "]"
                for m in e["members"]
            )
        )
    if len(entries) > limit:
        lines.append(f"- ... {len(entries) - limit} more in the JSON")
    return lines


def markdown(doc: dict) -> str:
    d = doc.get("distractor_set") or {}
    lines = [
        "# The near-duplicate set inside a library of more than 5,000 images (issue 23)",
        "",
        f"Model: {doc['model_label']}; `index` and `dups` with default options "
        "(`--threshold auto`).",
        "",
        f"Code: {doc['code']['commit'][:10]} ({doc['code']['subject']})"
        + (
            "; uncommitted product files in the tree: "
            + ", ".join(doc["code"]["uncommitted_product_files"])
            if doc["code"]["uncommitted_product_files"]
            else ""
        )
        + f". The 2 cores are shared with other workers; this scoring run started "
        f"{doc['started']} ({doc.get('seconds', 0):.0f} s); each library's own runs are dated "
        "below.",
        "",
    ]
    lines += findings(doc)
    if d:
        lines += [
            f"Distractors: `{doc['distractors']}` "
            f"(`bench/make_distractors.py --seed {d['seed']}`): "
            f"{d['count']} procedural pictures, copies of nothing: {d['kinds']}; {d['formats']}; "
            f"{d['in_series']} in {d['series']} look-alike series (same style, every noise "
            "field, shape and word drawn anew). Pairwise check: highest correlation of 32 px grey "
            f"thumbnails {d['check']['grey']['highest']}, of 64 px Laplacian (detail) thumbnails "
            f"{d['check']['detail']['highest']} ({d['check']['redrawn']} redrawn, "
            f"{len(d['check']['still_too_close'])} left over the limits).",
            "",
        ]
    lines += [
        "| library | rows | index s | first dups s | threshold (normalisation) "
        "| neardup P / R / F1 | mixed_images P / R / F1 | groups | set+distractor groups "
        "| distractor groups "
        "| plan: trashed / distinct lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in doc["libraries"].items():
        if "sets" not in r:
            lines.append(f"| {name} | error: {r.get('error')} |")
            continue
        cal = r["calibration"]

        def prf(s: str, r: dict = r) -> str:
            p = r["sets"].get(s, {}).get("pairs", {})
            return f"{f3(p.get('precision'))} / {f3(p.get('recall'))} / **{f3(p.get('f1'))}**"

        dis = r["distractors"]
        plan = r.get("plan", {})
        lines.append(
            f"| {name} | {r['library_rows']} | {r['index']['seconds']} "
            f"| {r['first_dups']['seconds']} | {f3(r['threshold'])} ({cal.get('normalisation')}) "
            f"| {prf('neardup')} | {prf('imagededup_mixed')} | {r['groups']['acted']} "
            f"| **{dis['set_with_distractor_groups']}** | **{dis['distractor_groups']}** "
            f"| {plan.get('acted', plan.get('error'))} / **{plan.get('not_a_copy', '-')}** |"
        )
    lines.append("")
    for key, text in doc.get("ratios", {}).items():
        lines.append(f"- {key}: {text}")
    for name, r in doc["libraries"].items():
        if "sets" not in r:
            continue
        dis = r["distractors"]
        lines += ["", f"## {name}: `{r['library']}`", ""]
        lines.append(
            f"Index: `{r['index']['command']}` ({r['index']['seconds']} s, indexed "
            f"{r['index'].get('indexed')}, failed {len(r['index'].get('failed') or [])}); first "
            f"dups {r['first_dups']['seconds']} s (load after {r['first_dups']['load_after']}); "
            f"this run's dups {r['dups_seconds']} s"
            + (f"; library cached from {r['cached_from']}" if r.get("cached_from") else "")
            + (f"; {r['rescored']}" if r.get("rescored") else "")
            + "; first and later dups give the same groups: "
            + str(r.get("first_and_later_dups_same_groups", "-"))
            + "."
        )
        lines.append("")
        lines.append(
            f"Groups by tier {r['groups']['by_tier']}; acted-on groups mixing distinct pictures "
            f"{r['groups']['mixed_acted']} ({r['groups']['mixed_by_why'] or 'none'}); false pairs "
            f"{r['groups']['false_pairs_acted']}; distractors in any group "
            f"{dis['distractors_in_any_group']}; similar tier (not acted on): "
            f"{dis['similar_tier']}."
        )
        est = r["stats"].get("estimate")
        if est is not None:
            lines += ["", f"`stats.estimate`: `{json.dumps(est)}`"]
        lines += ["", f"Calibration: `{json.dumps(r['calibration'])}`"]
        if dis["set_with_distractor"]:
            lines += ["", "Groups joining a set file with a distractor:", ""]
            lines += group_lines(dis["set_with_distractor"])
        if dis["among_distractors"]:
            lines += ["", "Groups of distinct distractors (false groups):", ""]
            lines += group_lines(dis["among_distractors"])
        wrong = r.get("plan", {}).get("not_a_copy_files", [])
        if wrong:
            lines += ["", f"The plan would trash {len(wrong)} distinct picture(s):", ""]
            lines += [
                f"- `/{w['path']}` ({w['kind']}, {w['tier']}, score {f3(w['score'])}) for "
                f"`/{w['kept']}`"
                for w in wrong[:40]
            ]
    lines += [
        "",
        "Commands (the CLI of the commit above: `git archive` into the work folder, run with "
        "PYTHONPATH=that folder and HF_HUB_OFFLINE=1):",
        "",
    ]
    for name, r in doc["libraries"].items():
        for c in r.get("commands", []):
            lines.append(f"- {name}: `{c['cmd']}` -> rc {c['rc']}, {c['seconds']} s")
    return "\n".join(lines) + "\n"


def evidence_counts(entries: list[dict]) -> dict:
    """Members other than each group's first, by the pixel evidence that joined them."""
    out: dict[str, int] = {}
    for e in entries:
        for m in e["members"]:
            if m.get("match") != "first":
                key = str(m.get("verified") or "embeddings alone")
                out[key] = out.get(key, 0) + 1
    return out


def findings(doc: dict) -> list[str]:
    """The answer in a few lines: F1 alone vs inside, set+distractor groups, false groups."""
    libs = doc["libraries"]
    a, b = libs.get("set"), libs.get("all")
    if not a or not b or "sets" not in a or "sets" not in b:
        return []
    dis = b["distractors"]
    kinds: dict[str, int] = {}
    for e in dis["among_distractors"]:
        for k in {str(m["kind"]) for m in e["members"]}:
            kinds[k] = kinds.get(k, 0) + 1
    flagged = set((doc.get("distractor_set") or {}).get("check", {}).get("still_too_close", []))
    in_groups = {Path(m["path"]).name for e in dis["among_distractors"] for m in e["members"]}
    plan = b.get("plan", {})
    f1 = lambda r, s: r["sets"].get(s, {}).get("pairs", {}).get("f1")  # noqa: E731
    return [
        "## Findings",
        "",
        f"- Pair F1 on the near-duplicate set: {f3(f1(a, 'neardup'))} alone, "
        f"{f3(f1(b, 'neardup'))} inside {b['library_rows']} rows (imagededup mixed_images: "
        f"{f3(f1(a, 'imagededup_mixed'))} / {f3(f1(b, 'imagededup_mixed'))}).",
        f"- Groups joining a set file with a distractor: **{dis['set_with_distractor_groups']}**.",
        f"- Groups of distinct distractors (false groups, acted-on tiers): "
        f"**{dis['distractor_groups']}**, holding {len(in_groups)} distractors; by kind "
        f"{kinds}; members joined by {evidence_counts(dis['among_distractors'])}; "
        f"{len(in_groups & flagged)} of those distractors are among the "
        f"{len(flagged)} the generator's thumbnail check left over its limits.",
        f"- The default plan trashes {plan.get('acted')} files, **{plan.get('not_a_copy')}** "
        "of them distinct pictures (a distractor trashed for another distractor).",
        "",
    ]


def ratios(doc: dict) -> dict:
    libs = doc["libraries"]
    a, b = libs.get("set"), libs.get("all")
    if not a or not b or "sets" not in a or "sets" not in b:
        return {}
    out = {}
    for s in a["sets"]:
        fa = a["sets"][s]["pairs"]["f1"]
        fb = b["sets"].get(s, {}).get("pairs", {}).get("f1")
        out[f"{s} F1"] = f"set alone {f3(fa)}, inside the large library {f3(fb)}"
    per_a = a["index"]["seconds"] / max(1, a["library_rows"])
    per_b = b["index"]["seconds"] / max(1, b["library_rows"])
    out["index seconds per row"] = (
        f"set {per_a:.3f}, all {per_b:.3f} (ratio {per_b / per_a:.2f}"
        "; the two ran at different times on a shared machine: see each one's load)"
    )
    out["first dups"] = (
        f"set {a['first_dups']['seconds']} s, all {b['first_dups']['seconds']} s (ratio "
        f"{b['first_dups']['seconds'] / a['first_dups']['seconds']:.2f} for "
        f"{b['library_rows'] / a['library_rows']:.1f}x the rows)"
    )
    return out


def main() -> None:
    ap = harness.parser(
        __doc__,
        quick="smoke run: the 'all' library, make_distractors.py --quick's 40, in bench/work/quick",
        model=True,
        work=harness.WORK / "dups-distractors",
    )
    ap.add_argument("--distractors", type=Path, default=harness.WORK / "distractors-5200")
    ap.add_argument("--truth", type=Path, default=DEFAULT_TRUTH)
    ap.add_argument("--libraries", default="set,all", help="which of set,all to build and score")
    ap.add_argument("--reindex", action="store_true", help="build the libraries afresh")
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="score the saved reports of a cached library again instead of running dups",
    )
    ap.add_argument("--name", default="dups_distractors")
    ap.add_argument("--out-dir", type=Path, help="where NAME.{md,json} go (default: bench/results)")
    ap.add_argument(
        "--commit",
        default="HEAD",
        help="run the CLI of this commit (git archive into --work; default HEAD, so others' "
        "uncommitted edits in a shared tree are not measured); 'tree' for the working tree",
    )
    args = ap.parse_args()
    if args.quick:
        args.distractors = harness.WORK / "quick" / "distractors-40"
        args.work, args.libraries = harness.WORK / "quick" / "dups-distractors", "all"
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.commit != "tree":
        lookalike.CODE_DIR = export_commit(args.commit, args.work)
    distractors = args.distractors.resolve()
    names = [x.strip() for x in args.libraries.split(",") if x.strip()]
    have = (distractors / "manifest.json").exists()
    if "all" in names and not have:
        raise SystemExit(f"no {distractors}/manifest.json: run bench/make_distractors.py first")
    log: list = []
    ensure_neardup(args.truth, log)
    sets = json.loads(args.truth.read_text())["sets"]
    folders = [Path(s["root"]) for s in sets]
    model = harness.model_dir(args.model)
    truth, facts = build_truth(args.truth, distractors if have else None)
    started = time.time()
    doc: dict = {
        "name": args.name,
        "model": model,
        "model_label": WEIGHTS_LABEL,
        "command": shlex.join([".venv/bin/python", "bench/dups_distractors.py", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%d %H:%M %Z"),
        "code": code_state(),
        "truth": str(args.truth),
        "distractors": str(distractors),
        "distractor_set": facts,
        "libraries": {},
    }
    plan = {"set": folders, "all": [*folders, distractors]}
    for name in names:
        doc["libraries"][name] = library(name, plan[name], args, model, truth)
        r = doc["libraries"][name]
        print(
            f"{name}: "
            + (
                f"F1 { ({s: v['pairs']['f1'] for s, v in r['sets'].items()}) }, set+distractor "
                f"groups {r['distractors']['set_with_distractor_groups']}, distractor groups "
                f"{r['distractors']['distractor_groups']}, plan lost {r['plan'].get('not_a_copy')}"
                if "sets" in r
                else f"ERROR {r.get('error')}"
            ),
            flush=True,
        )
        doc["seconds"] = time.time() - started
        doc["ratios"] = ratios(doc)
        harness.write_results(args.name, markdown(doc), doc, directory=args.out_dir, quiet=True)
    doc["seconds"] = time.time() - started
    md = harness.write_results(args.name, markdown(doc), doc, directory=args.out_dir, quiet=True)
    print(f"wrote {md} and .json ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
