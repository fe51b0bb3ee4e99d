"""`dinosearch dups` judged by stored pixel evidence, at 100k and 1M rows: time per stage, peak
memory, library size on disk.

Each size gets a real library (indexer.library.store.Store, cached under bench/work/evscale-N/):
the realistic vectors of bench/harness.vectors_cached (the mean and covariance of real DINOv2
embeddings, events of ~30, 3 % planted near-copy pairs) and an evidence record per row
(indexer.library.evidence.write). The evidence is synthetic but made of real pixels:

- an ordinary row's picture is a blend of two random crops of the shared photos
  (/work/shared/testdata/photos, photos-more; each in its 8 turns and mirrors), at the aspect of
  the row's size (camera sizes: 4032x3024 most of all), so nearly every pair is two distinct
  pictures (a crop of one photo alone would make overlapping crops of the 61 photos copies of one
  another); its grey thumbnail is rendered at 64 px, its low-information measures (and, for the
  2 of 61 photos near low information, colour and detail) are those indexer.evidence.measure
  took of one of the shared photos;
- a planted near-copy's thumbnail is its partner's picture at 128 px, re-toned (gain, offset),
  JPEG'd (q 40-90) and reduced to 64 px; 15 % are crops (80-95 % of the frame), 10 % also grey;
- 2 % are black-and-white photos (greyscale), 1 % low-information pictures (flat colours,
  gradients, pages of text-like marks) measured for real by indexer.evidence.measure, 0.5 %
  byte-identical twins (same hash, vector and evidence as another row).

Then, in a fresh process per size (ru_maxrss its own), the stages of search/dups/run.py
_whole_library with `auto` thresholds, timed one by one: load_library; the whitening (its fit is
calibration's work, reported apart; its apply is the run's); the pair search at the floor; Seen
.of_library (the evidence load); twin_units/pixel_pairs; _with_raw_neighbours; _with_layout_pairs;
_judged (an Estimate made by hand: target 0.99, calibrated threshold = the floor, evidence rate
0.95, positives 100); leader_groups. The floor is the whitened score giving `--pairs-per-image`
candidate pairs per image (3 by default), found on a sample; the copy threshold is the floor.

Every stage runs as the product runs it (the neighbour searches are bounded k-NN searches,
pair scores are taken in blocks), except:
- _judged is timed on a random sample of the pairs first; when all of them would take more than
  `--judge-budget-min`, only the sample is judged (the rest: the planted pairs taken as admitted,
  for leader_groups alone) and the whole is extrapolated.

    .venv/bin/python bench/dups_evidence_scale.py [--quick] [--sizes 100000,1000000]

Results: bench/results/dups_evidence_scale.md (+ .json).
"""

import argparse
import dataclasses
import glob
import io
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import harness as pc
import numpy as np
from PIL import Image

from indexer.evidence import Evidence, measure
from indexer.library import evidence as stored
from indexer.library.rows import ImageRow, ModelInfo
from indexer.library.store import Store
from search.dups import pairs as P
from search.dups import run, verify
from search.dups.evidence import VERIFY_MIN_COSINE, Seen, _cores, pixel_pairs
from search.dups.groups import leader_groups, twin_units
from search.dups.precision import Estimate
from search.dups.whitening import fit_whitening

PHOTO_DIRS = [pc.PHOTOS, pc.PHOTOS.parent / "photos-more"]
SOURCE_PX = 256  # long side of the grey sources the crops are cut from
WRITE_BATCH = 5000
SHARES = {"grey": 0.02, "low": 0.01, "twin": 0.005}
COPY_KINDS = {"tone": 0.75, "crop": 0.15, "grey": 0.10}
CAMERA_SIZES = [  # (width, height, share)
    (4032, 3024, 0.45), (3024, 4032, 0.15), (4000, 3000, 0.10), (1920, 1080, 0.08),
    (6000, 4000, 0.07), (1600, 1200, 0.05), (1080, 1920, 0.05), (2048, 2048, 0.05),
]  # fmt: skip
JUDGE_SAMPLE = 5000  # pairs judged first, to time _judged per pair
# (read from search/dups/pairs.py: per-list parts, their concatenation, merge_join's unique;
# checked against the exact path's RSS growth at --quick)
RAW_K = run.RAW_NEIGHBOURS


def real_embeddings() -> np.ndarray:
    """As bench/curate_scale.py: lib-real's vectors live in its vector file, not in SQLite."""
    store = Store.open(pc.REAL_LIBRARY)
    try:
        return np.array(store.vectors()[1], np.float32)
    finally:
        store.close()


if (pc.REAL_LIBRARY / "library.db").exists():
    pc.real_embeddings = real_embeddings


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def partial(out: dict) -> None:
    """What a child has measured so far (read back when it dies)."""
    path = work_dir(out["n"]) / "bench-partial.json"
    path.write_text(json.dumps(out, indent=1, default=str))


def rounded(est: dict, **more) -> dict:
    out = {k: v for k, v in {**est, **more}.items() if k != "plan"}
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def work_dir(n: int) -> Path:
    return pc.WORK / f"evscale-{n}"


# --- the synthetic pictures -------------------------------------------------------------------


def photo_paths() -> list[str]:
    return sorted(p for d in PHOTO_DIRS for p in glob.glob(str(d / "*")))


def load_sources() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Grey and RGB versions of every shared photo in its 8 turns and mirrors (long side
    SOURCE_PX)."""
    grey, rgb = [], []
    for path in photo_paths():
        with Image.open(path) as img:
            im = img.convert("RGB")
        im.thumbnail((SOURCE_PX, SOURCE_PX), Image.Resampling.BILINEAR)
        a = np.asarray(im)
        for k in range(4):
            for flip in (False, True):
                t = np.rot90(a, k)
                t = np.ascontiguousarray(t[:, ::-1] if flip else t)
                rgb.append(t)
                grey.append(np.asarray(Image.fromarray(t).convert("L")))
    return grey, rgb


class Pictures:
    """Row -> its picture spec (two crops and a blend weight), rendered on demand."""

    def __init__(self, n: int, dims: np.ndarray, n_sources: int, shapes, seed: int = 5):
        rng = np.random.default_rng(seed)
        self.src = rng.integers(0, n_sources, (n, 2))
        self.scale = rng.uniform(0.35, 0.7, (n, 2))
        self.pos = rng.random((n, 2, 2))
        self.alpha = rng.uniform(0.35, 0.65, n)
        self.aspect = dims[:, 0] / dims[:, 1]
        self.shapes = shapes  # (h, w) of each source
        self.window = np.tile([0.0, 0.0, 1.0, 1.0], (n, 1))  # a crop copy's part of the frame

    def boxes(self, row: int):
        aspect, (x0, y0, x1, y1) = self.aspect[row], self.window[row]
        for k in range(2):
            h, w = self.shapes[self.src[row, k]]
            bw = min(w, h * aspect) * self.scale[row, k]
            bh = bw / aspect
            left = self.pos[row, k, 0] * (w - bw)
            top = self.pos[row, k, 1] * (h - bh)
            yield k, (left + x0 * bw, top + y0 * bh, left + x1 * bw, top + y1 * bh)

    def render(self, row: int, long_side: int, sources: list[np.ndarray]) -> np.ndarray:
        """The picture at `long_side` px (float32, grey or RGB as the sources are)."""
        aspect = (
            self.aspect[row]
            * (self.window[row, 2] - self.window[row, 0])
            / (self.window[row, 3] - self.window[row, 1])
        )
        size = (
            (long_side, max(8, round(long_side / aspect)))
            if aspect >= 1
            else (max(8, round(long_side * aspect)), long_side)
        )
        out = None
        for k, box in self.boxes(row):
            img = Image.fromarray(sources[self.src[row, k]])
            part = np.asarray(img.resize(size, Image.Resampling.BILINEAR, box=box), np.float32)
            w = self.alpha[row] if k == 0 else 1 - self.alpha[row]
            out = part * w if out is None else out + part * w
        return out


def taken_at(i: int) -> str:
    day, second = f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}", i % 86400
    return f"{day}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"


def thumb_of(picture: np.ndarray) -> np.ndarray:
    return np.clip(picture.round(), 0, 255).astype(np.uint8)


def copy_thumb(picture128: np.ndarray, rng, dims) -> np.ndarray:
    """A re-toned, JPEG'd copy of a 128 px grey picture, reduced to the 64 px thumbnail."""
    gain, offset = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
    img = Image.fromarray(thumb_of(picture128 * gain + offset))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(40, 91)))
    back = Image.open(io.BytesIO(buf.getvalue())).convert("L")
    back.thumbnail((64, 64), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(back, np.uint8).copy()


def low_info_picture(rng, w: int, h: int) -> np.ndarray:
    """A flat colour, a gradient or a page of text-like marks (RGB uint8, w x h)."""
    kind = rng.integers(0, 3)
    if kind == 0:
        a = np.broadcast_to(rng.integers(0, 256, 3), (h, w, 3)).astype(np.float32)
        a = a + rng.normal(0, 1.0, (h, w, 3))
    elif kind == 1:
        c0, c1 = rng.integers(0, 256, (2, 3))
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h)
        ramp = c0 + (c1 - c0) * t[:, None]
        a = np.broadcast_to(ramp[None] if len(t) == w else ramp[:, None], (h, w, 3)).copy()
    else:
        a = np.full((h, w, 3), 245.0)
        line_h = max(3, h // 30)
        for y in range(h // 12, h - h // 12, 2 * line_h):
            x = w // 12
            while x < w - w // 12:
                word = int(rng.integers(w // 40 + 1, w // 10 + 2))
                a[y : y + line_h, x : min(x + word, w - w // 12)] = rng.integers(0, 60)
                x += word + max(2, w // 60)
    return np.clip(a, 0, 255).astype(np.uint8)


# --- building the library -----------------------------------------------------------------------


def build(n: int, pairs_per_image: float) -> dict:
    """The cached library of n rows at bench/work/evscale-N (made once); its facts."""
    directory = work_dir(n)
    meta_path = directory / "bench-meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    vectors, planted = pc.vectors_cached(n, mmap=False)
    vectors = np.array(vectors, np.float32)
    rng = np.random.default_rng(11)
    cams = np.array([(w, h) for w, h, _ in CAMERA_SIZES])
    dims = cams[rng.choice(len(cams), n, p=[s for *_, s in CAMERA_SIZES])]
    sources, copies = planted[:, 0], planted[:, 1]
    kind = np.full(n, "photo", dtype=object)
    copy_kind = rng.choice(list(COPY_KINDS), len(copies), p=list(COPY_KINDS.values()))
    kind[copies] = copy_kind
    free = np.setdiff1d(np.arange(n), planted.ravel())
    rng.shuffle(free)
    counts = {k: int(n * s) for k, s in SHARES.items()}
    low = free[: counts["low"]]
    grey = free[counts["low"] : counts["low"] + counts["grey"]]
    twins = free[counts["low"] + counts["grey"] : counts["low"] + counts["grey"] + counts["twin"]]
    partners = free[-counts["twin"] :] if counts["twin"] else free[:0]  # plain photos
    kind[low], kind[grey], kind[twins] = "low", "bw", "twin"
    partner = np.full(n, -1)
    partner[copies], partner[twins] = sources, partners
    dims[twins] = dims[partners]
    vectors[twins] = vectors[partners]

    grey_src, rgb_src = load_sources()
    pics = Pictures(n, dims, len(grey_src), [g.shape for g in grey_src])
    crop_rows = copies[copy_kind == "crop"]
    frac = rng.uniform(0.8, 0.95, len(crop_rows))
    x0, y0 = rng.random(len(crop_rows)) * (1 - frac), rng.random(len(crop_rows)) * (1 - frac)
    for name in ("src", "scale", "pos", "alpha", "aspect"):
        getattr(pics, name)[copies] = getattr(pics, name)[sources]
    pics.window[crop_rows] = np.stack([x0, y0, x0 + frac, y0 + frac], 1)
    dims[copies] = dims[sources]
    resized = rng.choice([1.0, 0.5, 0.25], len(copies))
    dims[copies] = np.maximum(1, (dims[copies] * resized[:, None]).astype(int))
    dims[crop_rows] = np.maximum(1, (dims[crop_rows] * frac[:, None]).astype(int))

    # the low-information measures of photo-like rows: indexer.evidence.measure of the shared
    # photos themselves (crops and blends measure as less detailed than whole photos: 10-14 % of
    # them came out near-low-information and would carry a 30 KB colour+detail record, against
    # 2 of the 61 photos)
    pool = []
    for path in photo_paths():
        with Image.open(path) as img:
            im = img.convert("RGB")
        pool.append(measure(im, *im.size))
    pool_pick = rng.integers(0, len(pool), n)

    hashes = [rng.bytes(32).hex() for _ in range(n)]
    for t, p in zip(twins.tolist(), partners.tolist(), strict=True):
        hashes[t] = hashes[p]
    file_size = (dims[:, 0] * dims[:, 1] * rng.uniform(0.25, 0.45, n)).astype(np.int64)
    file_size[twins] = file_size[partners]

    def evidence_of(row: int, seed_rng) -> Evidence:
        k = kind[row]
        w, h = int(dims[row, 0]), int(dims[row, 1])
        if k == "twin":
            return evidence_of(int(partner[row]), np.random.default_rng(int(partner[row])))
        if k == "low":
            small = (
                (160, max(8, round(160 * h / w))) if w >= h else (max(8, round(160 * w / h)), 160)
            )
            return measure(Image.fromarray(low_info_picture(seed_rng, *small)), w, h)
        base = pool[pool_pick[row]]
        if k in COPY_KINDS:
            thumb = copy_thumb(pics.render(row, 128, grey_src), seed_rng, (w, h))
        else:
            thumb = thumb_of(pics.render(row, 64, grey_src))
        return dataclasses.replace(base, thumb=thumb, greyscale=k in ("bw", "grey"))

    store = Store.open(directory, create=True)
    store.bind_model(ModelInfo("facebook/dinov2-small", pc.DIM, "{}"))
    ev_seconds = 0.0
    for lo in range(0, n, WRITE_BATCH):
        hi = min(n, lo + WRITE_BATCH)
        rows, evs = [], {}
        for i in range(lo, hi):
            w, h = int(dims[i, 0]), int(dims[i, 1])
            rows.append(
                ImageRow(
                    f"/photos/{i // 1000:05d}/IMG_{i:08d}.jpg",
                    int(file_size[i]),
                    1_600_000_000_000_000_000 + i * 1_000_000_000,
                    hashes[i],
                    "ok",
                    None,
                    w,
                    h,
                    "JPEG",
                    taken_at(i),
                    vectors[i].tobytes(),
                )
            )
            if hashes[i] not in evs:
                t = time.perf_counter()
                evs[hashes[i]] = evidence_of(i, np.random.default_rng(i))
                ev_seconds += time.perf_counter() - t
        store.write_rows(rows)
        stored.write(store, evs.items())
        if lo // WRITE_BATCH % 20 == 0:
            print(f"  built {hi}/{n} rows ({time.perf_counter() - started:.0f} s)", flush=True)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    np.save(directory / "bench-planted.npy", planted)

    # the floor: the whitened score at which the library has `pairs_per_image` pairs per image
    whitening = fit_whitening(vectors)
    space = whitening.apply(vectors)
    index = P.range_index(space)
    q = np.random.default_rng(3).choice(n, min(n, 1000), replace=False)
    scores, found = index.search(np.ascontiguousarray(space[q]), 65)
    scores = np.where(found == q[:, None], -np.inf, scores)[:, :64]
    flat = np.sort(scores.ravel())[::-1]
    floor = float(flat[int(round(2 * pairs_per_image * len(q)))])
    del index, space
    meta = {
        "n": n,
        "floor": round(floor, 5),
        "pairs_per_image_target": pairs_per_image,
        "planted_pairs": int(len(planted)),
        "kinds": {str(k): int(np.count_nonzero(kind == k)) for k in np.unique(kind)},
        "evidence_build_s": round(ev_seconds, 1),
        "build_s": round(time.perf_counter() - started, 1),
    }
    meta.update(disk_facts(directory))
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def disk_facts(directory: Path) -> dict:
    db = directory / "library.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("select count(*) from evidence").fetchone()[0]
        size = dict(con.execute("select name, sum(pgsize) from dbstat group by name").fetchall())
        looks = con.execute(
            "select count(*), sum(length(looks)) from evidence where looks is not null"
        ).fetchone()
        thumb = con.execute("select avg(length(thumb)) from evidence").fetchone()[0]
    finally:
        con.close()
    ev_bytes = sum(v for k, v in size.items() if "evidence" in k)
    return {
        "db_bytes": db.stat().st_size,
        "vector_file_bytes": sum(p.stat().st_size for p in directory.glob("vectors-*.f32")),
        "evidence_rows": rows,
        "evidence_table_bytes": ev_bytes,
        "evidence_bytes_per_row": round(ev_bytes / max(rows, 1), 1),
        "thumb_bytes_mean": round(thumb or 0, 1),
        "looks_rows": looks[0],
        "looks_bytes": looks[1] or 0,
        "images_table_bytes": sum(v for k, v in size.items() if "images" in k),
    }


# --- measuring one size, in its own process ----------------------------------------------------


class Coll:
    """What load_library needs of a collection."""

    def __init__(self, store):
        self._store = store

    def store(self):
        return self._store


def child(args) -> None:
    n = args.child
    meta = json.loads((work_dir(n) / "bench-meta.json").read_text())
    planted = np.load(work_dir(n) / "bench-planted.npy")
    floor = meta["floor"]
    out: dict = {"n": n, "floor": floor, "stages": {}, "rss_after_mb": {}}
    stages, notes = out["stages"], []
    out["notes"] = notes

    def done(name: str, t: float) -> None:
        stages[name] = round(time.perf_counter() - t, 2)
        out["rss_after_mb"][name] = round(rss_mb())
        out.setdefault("rss_now_mb", {})[name] = round(rss_now_mb())
        say(f"  [{n}] {name}: {stages[name]} s, peak RSS {rss_mb():.0f} MB, "
            f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
        partial(out)

    t = time.perf_counter()
    store = Store.open(work_dir(n))
    lib = run.load_library(Coll(store))
    done("load_library", t)

    t = time.perf_counter()
    whitening = fit_whitening(lib.vectors)
    out["whitening_fit_s"] = round(time.perf_counter() - t, 2)  # calibration's work, not the run's
    t = time.perf_counter()
    space = whitening.apply(lib.vectors)
    done("whitening_apply", t)

    t = time.perf_counter()
    rows, cols, sims = run._pairs(space, floor, None, None)
    done("pair_search", t)
    out["candidate_pairs"] = int(len(rows))
    out["candidate_pairs_per_image"] = round(len(rows) / n, 2)
    key = set((planted.min(1) * n + planted.max(1)).tolist())
    out["planted_in_candidates"] = int(np.isin(rows * n + cols, list(key)).sum())

    t = time.perf_counter()
    seen = Seen.of_library(store, lib)
    done("evidence_load", t)
    out["rows_without_evidence"] = sum(ev is None for ev in seen.evidence)

    t = time.perf_counter()
    close = sims >= floor
    units = twin_units(lib.hashes, pixel_pairs(lib, rows, cols, close), lib.sizes)
    is_twin = units.rep != np.arange(n)
    keep = ~(is_twin[rows] | is_twin[cols])
    done("twins_pixel_pairs", t)
    # pixel_pairs decodes both files of every close same-size pair of distinct contents (this
    # library's paths do not exist, so here it costs a stat each)
    widths = np.array([r["width"] for r in lib.rows])
    heights = np.array([r["height"] for r in lib.rows])
    hashes = np.array(lib.hashes)
    r0, c0 = rows[close], cols[close]
    same = (widths[r0] == widths[c0]) & (heights[r0] == heights[c0]) & (hashes[r0] != hashes[c0])
    out["same_size_pairs_decoded"] = int(np.count_nonzero(same))
    out["files_fully_decoded"] = int(len(np.unique(np.concatenate([r0[same], c0[same]]))))
    del widths, heights, hashes, r0, c0, same
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    out["twin_rows"] = int(np.count_nonzero(is_twin))

    # _with_raw_neighbours: each image's RAW_NEIGHBOURS nearest pictures by raw cosine >= 0.85
    # (a bounded k-NN search in the product since 795457c; pictures: the pairs at the floor), and
    # _with_layout_pairs: each image's nearest grey layouts (the same bounded search, pair scores
    # in blocks): both as the product runs them
    before = (rows, cols, sims)
    rss0 = rss_now_mb()
    t = time.perf_counter()
    rows, cols, sims = run._with_raw_neighbours(lib, space, is_twin, before, floor)
    done("raw_neighbours", t)
    out["raw_neighbours_mode"] = "product"
    out["raw_neighbours_rss_growth_mb"] = round(rss_now_mb() - rss0)
    out["pairs_after_raw_neighbours"] = int(len(rows))
    n_before = len(rows)
    t = time.perf_counter()
    rows, cols, sims = run._with_layout_pairs(lib, space, seen, is_twin, (rows, cols, sims))
    done("layout_pairs", t)
    out["layout_mode"] = "product"
    low = np.array(seen._low)
    out["layout_pairs_fresh"] = int(len(rows) - n_before)
    out["layout_pairs_both_low_info"] = int(
        np.count_nonzero(low[rows[n_before:]] & low[cols[n_before:]])
    )
    partial(out)
    out["pairs_judged"] = int(len(rows))

    estimate = Estimate(
        0.99, floor, 0.95, np.sort(floor + np.array([0.02, 0.05, 0.1, 0.15, 0.2], np.float32)), 100
    )
    raw_cos = blockwise_dot(lib.vectors, rows, cols)
    out["pairs_crop_searched"] = int(np.count_nonzero(raw_cos >= VERIFY_MIN_COSINE))
    # per-pair cost on a sample, split into the tone check and the crop search
    pick = np.random.default_rng(4).choice(len(rows), min(len(rows), JUDGE_SAMPLE), replace=False)
    t = time.perf_counter()
    for i, j in zip(rows[pick].tolist(), cols[pick].tolist(), strict=True):
        seen.judge(i, j, crops=False)
    tone_ms = (time.perf_counter() - t) / len(pick) * 1e3
    t = time.perf_counter()
    sample = _judged_timed(lib, seen, rows, cols, sims, pick, floor)
    sample_s = time.perf_counter() - t
    per_pair_ms = sample_s / len(pick) * 1e3
    out["judge_sample"] = {
        "pairs": int(len(pick)),
        "per_pair_ms": round(per_pair_ms, 3),
        "tone_only_per_pair_ms": round(tone_ms, 3),
        "crop_searched_share": round(float(np.mean(raw_cos[pick] >= VERIFY_MIN_COSINE)), 3),
        "with_evidence": int(np.count_nonzero(sample[4] != "")),
    }
    out["judge_sample"].update(prefilter_rate(seen, rows[pick], cols[pick], raw_cos[pick]))
    out["judged_est_s"] = round(per_pair_ms / 1e3 * len(rows), 1)
    t = time.perf_counter()
    if out["judged_est_s"] <= args.judge_budget_min * 60:
        links = run._judged(lib, seen, (rows, cols, sims), floor, estimate, None)
        out["judged_mode"] = "all pairs"
        done("judged", t)
    else:
        stages["judged"] = out["judged_est_s"]
        out["judged_mode"] = f"sample of {len(pick)}, extrapolated"
        notes.append(
            f"_judged: {len(rows)} pairs x {per_pair_ms:.2f} ms = ~{out['judged_est_s'] / 60:.0f} "
            f"min ({_cores()} processes); judged a sample only"
        )
        pl = np.isin(rows * n + cols, list(key))
        how = np.full(len(rows), "", dtype=object)
        how[pl] = "tone"
        how[pick] = sample[4]
        links = (rows, cols, sims, how != "", how)
    r_, c_, s_, admitted, how = links
    out["admitted"] = int(np.count_nonzero(admitted))
    out["with_evidence"] = int(np.count_nonzero(how != ""))
    pl = np.isin(r_ * n + c_, list(key))
    out["planted_admitted"] = int(np.count_nonzero(admitted & pl))
    out["unplanted_admitted"] = int(np.count_nonzero(admitted & ~pl))
    if out["judged_mode"] == "all pairs":
        out["evidence_by_kind"] = {
            str(k): int(np.count_nonzero(how == k)) for k in ("tone", "crop", "looks")
        }
        out["estimate"] = estimate.to_json()

    t = time.perf_counter()
    priority = np.array(
        [(r["width"] or 0) * (r["height"] or 0) + (r["size"] or 0) / 1e12 for r in lib.rows]
    )
    taken = is_twin.copy()
    groups = leader_groups(n, r_[admitted], c_[admitted], s_[admitted], -np.inf, priority, taken)
    done("leader_groups", t)
    out["copy_groups"] = len(groups)
    out["total_s"] = round(sum(stages.values()), 1)
    out["peak_rss_mb"] = round(rss_mb())
    out["notes"] = notes
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))


def blockwise_dot(x: np.ndarray, i: np.ndarray, j: np.ndarray, block: int = 1 << 18):
    """Row-wise inner products x[i] . x[j], a block of pairs at a time."""
    out = np.empty(len(i), np.float32)
    for lo in range(0, len(i), block):
        hi = lo + block
        out[lo:hi] = np.einsum("ij,ij->i", x[i[lo:hi]], x[j[lo:hi]])
    return out


def _judged_timed(lib, seen, rows, cols, sims, pick, floor):
    return run._judged(lib, seen, (rows[pick], cols[pick], sims[pick]), floor, None, None)


def prefilter_rate(seen, rows, cols, raw_cos) -> dict:
    """Of crop-searched pairs whose tone check fails, the share whose half-size search reaches
    CROP_PREFILTER (those get the full crop search)."""
    passed = total = 0
    for i, j, c in zip(rows.tolist(), cols.tolist(), raw_cos.tolist(), strict=True):
        a, b = seen.evidence[i], seen.evidence[j]
        if c < VERIFY_MIN_COSINE or a is None or b is None or seen.low(i) or seen.low(j):
            continue
        if verify.match(a.thumb, b.thumb, crops=False):
            continue
        total += 1
        passed += verify.coarse_crop_scores([(a.thumb, b.thumb)])[0] >= verify.CROP_PREFILTER
    return {"prefilter_checked": total, "prefilter_pass_share": round(passed / max(total, 1), 4)}


def real_photo_rates() -> dict:
    """The same two rates on the shared photos themselves (distinct pictures): layout pairs at
    DESCRIPTOR_MIN and crop prefilter passes, over all their pairs."""
    thumbs = []
    for path in photo_paths():
        with Image.open(path) as img:
            im = img.convert("RGB")
        thumbs.append(measure(im, *im.size).thumb)
    desc = np.array([verify.descriptor(t) for t in thumbs])
    iu = np.triu_indices(len(thumbs), 1)
    layout = (desc @ desc.T)[iu]
    passes = [
        verify.coarse_crop_scores([(thumbs[i], thumbs[j])])[0] >= verify.CROP_PREFILTER
        for i, j in zip(*iu, strict=True)
    ]
    return {
        "photos": len(thumbs),
        "pairs": int(len(layout)),
        "layout_pairs_at_min": int(np.count_nonzero(layout >= verify.DESCRIPTOR_MIN)),
        "prefilter_pass_share": round(float(np.mean(passes)), 4),
    }


# --- the report ---------------------------------------------------------------------------------


def main() -> None:
    ap = pc.parser(__doc__, quick="one library of 20,000 rows")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--pairs-per-image", type=float, default=3.0)
    ap.add_argument("--judge-budget-min", type=float, default=25.0)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    sizes = [20000] if args.quick else [int(s) for s in args.sizes.split(",")]
    command = "python bench/dups_evidence_scale.py " + (
        "--quick" if args.quick else f"--sizes {','.join(map(str, sizes))}"
    )
    results = []
    for n in sizes:
        load0 = [round(x, 2) for x in os.getloadavg()]
        meta = build(n, args.pairs_per_image)
        started = time.perf_counter()
        cmd = [pc.PYTHON, __file__, "--child", str(n),
               "--judge-budget-min", str(args.judge_budget_min)]  # fmt: skip
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            raise SystemExit(
                f"the {n:,}-row child failed ({proc.returncode}); what it measured: "
                f"{work_dir(n) / 'bench-partial.json'}"
            )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r.update(
            library=meta, wall_s=round(time.perf_counter() - started, 1), load_average_start=load0
        )
        results.append(r)
    old = pc.read_results("dups_evidence_scale") or {}
    kept = [r for r in old.get("results", []) if r["n"] not in {x["n"] for x in results}]
    all_results = sorted(kept + results, key=lambda r: r["n"])
    reference = old.get("real_photos") or real_photo_rates()
    commands = sorted(set(old.get("commands", [])) | {command})
    data = {"machine": {**pc.machine(), **repo_state()}, "commands": commands,
            "real_photos": reference, "results": all_results}  # fmt: skip
    pc.write_results("dups_evidence_scale", markdown(data), data, machine_record=data["machine"])


def repo_state() -> dict:
    """The commit measured, and how many product files differed from it (others edit the tree)."""
    git = ["git", "-C", str(pc.ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--short", "--", "indexer", "search"], capture_output=True, text=True
    )
    return {"commit": head.stdout.strip(), "product_files_modified": len(dirty.stdout.splitlines())}


STAGE_NAMES = [
    ("load_library", "load_library (rows + vector map)"),
    ("whitening_apply", "whitening apply"),
    ("pair_search", "pair search at the floor"),
    ("evidence_load", "Seen.of_library (evidence load)"),
    ("twins_pixel_pairs", "twin_units / pixel_pairs"),
    ("raw_neighbours", "_with_raw_neighbours"),
    ("layout_pairs", "_with_layout_pairs"),
    ("judged", "_judged"),
    ("leader_groups", "leader_groups"),
]


def markdown(data: dict) -> str:
    m, res = data["machine"], data["results"]
    lines = [
        "# `dups` judged by stored pixel evidence, at scale",
        "",
        "How this was made: bench/dups_evidence_scale.py's docstring. Commands: "
        + ", ".join(f"`{c}`" for c in data["commands"])
        + f". Machine: {m['cpu']}, {m['cores']} cores shared with other work (timings are noisy), "
        f"Python {m['python']}, {m['date']}; commit {m.get('commit')} with "
        f"{m.get('product_files_modified')} product files modified in the working tree (others "
        "edit it). Load averages are recorded per size.",
        "",
        "Seconds per stage (one fresh process per size; `~` = extrapolated, not run whole):",
        "",
    ]
    header = ["stage"] + [f"{r['n']:,} rows" for r in res]
    body = []
    for key, label in STAGE_NAMES:
        cells = []
        for r in res:
            v = r["stages"].get(key)
            est = key == "judged" and r["judged_mode"] != "all pairs"
            if key == "raw_neighbours" and r["raw_neighbours_mode"] != "product" and v is not None:
                cells.append(f"{v:.3g} (bench search)")
                continue
            cells.append(
                "-"
                if v is None
                else (f"~{v:.0f}" if est else f"{v:.3g}" if v < 100 else f"{v:.0f}")
            )
        body.append([label] + cells)
    body.append(["**total (run stages)**"] + [f"**{r['total_s']:.0f}**" for r in res])
    body.append(
        ["whitening fit (calibration, not per run)"] + [f"{r['whitening_fit_s']:.3g}" for r in res]
    )
    body.append(["peak RSS MB"] + [str(r["peak_rss_mb"]) for r in res])
    body.append(
        ["load average start / end"]
        + [f"{r['load_average_start'][0]} / {r['load_average_end'][0]}" for r in res]
    )
    lines += pc.table(header, body).splitlines()
    lines += ["", "Counts and sizes:", ""]
    facts = [
        ("floor (whitened; = copy threshold)", lambda r: r["floor"]),
        (
            "candidate pairs at the floor (per image)",
            lambda r: f"{r['candidate_pairs']:,} ({r['candidate_pairs_per_image']})",
        ),
        (
            "planted pairs / of them in the candidates",
            lambda r: f"{r['library']['planted_pairs']:,} / {r['planted_in_candidates']:,}",
        ),
        (
            "same-size close pairs (pixel_pairs decodes both files) / files",
            lambda r: f"{r['same_size_pairs_decoded']:,} / {r['files_fully_decoded']:,}",
        ),
        ("_with_raw_neighbours run as", lambda r: r["raw_neighbours_mode"]),
        ("pairs after raw neighbours", lambda r: f"{r['pairs_after_raw_neighbours']:,}"),
        (
            "layout pairs added / both low-information",
            lambda r: f"{r['layout_pairs_fresh']:,} / {r['layout_pairs_both_low_info']:,}",
        ),
        ("_with_layout_pairs run as", lambda r: r["layout_mode"]),
        (
            "pairs judged / crop-searched (raw >= 0.85)",
            lambda r: f"{r['pairs_judged']:,} / {r['pairs_crop_searched']:,}",
        ),
        (
            "judge ms per pair: all / tone only",
            lambda r: (
                f"{r['judge_sample']['per_pair_ms']} / {r['judge_sample']['tone_only_per_pair_ms']}"
            ),
        ),
        (
            "crop prefilter pass share (tone failed)",
            lambda r: r["judge_sample"]["prefilter_pass_share"],
        ),
        ("_judged run as", lambda r: r["judged_mode"]),
        (
            "judge ms per pair in the whole run",
            lambda r: (
                f"{r['stages']['judged'] / max(r['pairs_judged'], 1) * 1e3:.3g}"
                if r["judged_mode"] == "all pairs"
                else "-"
            ),
        ),
        (
            "RSS MB now, after: load / evidence load / raw neighbours / judged",
            lambda r: " / ".join(
                str(r.get("rss_now_mb", {}).get(k, "-"))
                for k in ("load_library", "evidence_load", "raw_neighbours", "judged")
            ),
        ),
        (
            "admitted pairs: planted / not planted",
            lambda r: (
                f"{r['planted_admitted']:,} / {r['unplanted_admitted']:,}"
                if r["judged_mode"] == "all pairs"
                else f"sample: {r['judge_sample']['with_evidence']} of "
                f"{r['judge_sample']['pairs']:,} with evidence"
            ),
        ),
        (
            "copy groups",
            lambda r: f"{r['copy_groups']:,}" + ("" if r["judged_mode"] == "all pairs" else " *"),
        ),
        (
            "evidence bytes per row (table + index, dbstat)",
            lambda r: r["library"]["evidence_bytes_per_row"],
        ),
        (
            "library.db / vector file MB",
            lambda r: (
                f"{r['library']['db_bytes'] / 2**20:.0f} / "
                f"{r['library']['vector_file_bytes'] / 2**20:.0f}"
            ),
        ),
        (
            "rows with colour+detail (looks) / their bytes",
            lambda r: (
                f"{r['library']['looks_rows']:,} / "
                f"{r['library']['looks_bytes'] / max(r['library']['looks_rows'], 1):.0f} each"
            ),
        ),
    ]
    lines += pc.table(
        ["", *(f"{r['n']:,}" for r in res)], [[k, *(f(r) for r in res)] for k, f in facts]
    ).splitlines()
    ref = data["real_photos"]
    lines += [
        "",
        f"Reference, the {ref['photos']} shared photos themselves ({ref['pairs']} pairs of "
        "distinct "
        f"pictures): {ref['layout_pairs_at_min']} layout pairs at 0.85, crop prefilter pass share "
        f"{ref['prefilter_pass_share']}.",
        "",
        "Checks: at 20k the judge time per pair on the 5,000-pair sample agreed with the whole "
        "run's within the noise of the shared machine (both rows above); the bench's top-8 join "
        "(20k, clustered lists as above 50k) gave 116,766 pairs against the product's 111,564 "
        "(exact search + strongest_per_row), 90 % of the product's among them. `*`: with a "
        "sampled _judged, the pairs not judged count as copies only where planted (groups are "
        "then the planted pairs: for leader_groups' time alone).",
        "",
        "Notes from the runs:",
        "",
    ]
    for r in res:
        for note in r["notes"]:
            lines.append(f"- {r['n']:,}: {note}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
