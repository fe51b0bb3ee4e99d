"""How far the colours of copies and of template look-alikes disagree (search/dups/tint.py), on
the pairs the grey evidence alone matches: the margin behind tint.MAX_DISAGREEMENT.

usage: python bench/tint_margins.py [--quick] [--neardup bench/work/neardup]
           [--distractors bench/work/distractors-5200]

* copies: every pair of files of one source in the near-duplicate set (bench/make_neardup_set.py:
  61 photos x 16 edits, file SOURCE__EDIT.ext), grey copies left out (no colour to compare);
* look-alikes: the links the grey evidence made between distinct procedural pictures of the
  5,200 distractors (bench/make_distractors.py --seed 0) in the 6,082-row library of
  bench/dups_distractors.py: the 8 false links of its run at e102ddf, before the colour check,
  and 7 crop links between distractors that a search of centre windows by grey layout proposed
  (an experiment that was not shipped, see the closing note of issue 23);
* edits: the shared photos (../shared/testdata/photos) under colour edits, each against its
  original: the share the grey evidence matches, and of those the share whose colours agree.

Each pair: verify.locate on the 64 px grey thumbnails (indexer/evidence.py, from the files),
then tint.disagreement over the boxes it found. Results: bench/results/tint_margins.{md,json}.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import harness
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from indexer.evidence import from_file, measure
from search.dups import tint, verify

LOOKALIKE_LINKS = [  # (a, b) file names in the distractor folder
    ("d00973_landscape.jpg", "d02302_landscape.jpg"),
    ("d00973_landscape.jpg", "d01917_landscape.jpg"),
    ("d01444_shapes.jpg", "d00981_shapes.jpg"),
    ("d02106_landscape.jpg", "d01114_landscape.jpg"),
    ("d00687_shapes.jpg", "d01113_shapes.jpg"),
    ("d04105_shapes.jpg", "d00314_shapes.jpg"),
    ("d03280_shapes.jpg", "d00581_shapes.jpg"),
    ("d01622_page.png", "d03353_page.jpg"),
    ("d00313_shapes.jpg", "d04985_shapes.png"),
    ("d00323_shapes.jpg", "d03011_landscape.jpg"),
    ("d00388_landscape.jpg", "d01046_landscape.jpg"),
    ("d00674_shapes.jpg", "d03918_shapes.jpg"),
    ("d01046_landscape.jpg", "d02972_landscape.jpg"),
    ("d01046_landscape.jpg", "d03011_landscape.jpg"),
    ("d03177_shapes.jpg", "d04003_shapes.jpg"),
]


def _warm(img: Image.Image) -> Image.Image:
    r, g, b = img.split()
    return Image.merge(
        "RGB", (r.point(lambda v: min(255, v * 1.08)), g, b.point(lambda v: v * 0.92))
    )


EDITS = {
    "brightness 1.2": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "brightness 0.8": lambda im: ImageEnhance.Brightness(im).enhance(0.8),
    "contrast 1.25": lambda im: ImageEnhance.Contrast(im).enhance(1.25),
    "contrast 0.75": lambda im: ImageEnhance.Contrast(im).enhance(0.75),
    "saturation 0.7": lambda im: ImageEnhance.Color(im).enhance(0.7),
    "saturation 1.3": lambda im: ImageEnhance.Color(im).enhance(1.3),
    "warm white balance": _warm,
    "autocontrast (per channel)": ImageOps.autocontrast,
    "autocontrast, 2 % clipped": lambda im: ImageOps.autocontrast(im, cutoff=2),
    "equalize": ImageOps.equalize,
    "sepia": lambda im: ImageOps.colorize(ImageOps.grayscale(im), "#3b2a1a", "#f0e0c0"),
}


def disagreement(a, b) -> float | None:
    """The colour disagreement of two evidences where their grey thumbnails match, or None."""
    found = verify.locate(a.thumb, b.thumb)
    if found is None or a.tint is None or b.tint is None:
        return None
    return tint.disagreement(a.tint, found.box_a, b.tint, found.box_b)


def copies(folder: Path, sources: int | None) -> dict:
    by_source = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if "__" in path.name and path.suffix.lower() in (".jpg", ".png"):
            by_source[path.name.split("__")[0]].append(path)
    by_source = dict(list(by_source.items())[:sources])
    evidence = {p: from_file(str(p))[0] for ps in by_source.values() for p in ps}
    values, pairs, grey, unmatched = [], 0, 0, 0
    worst: list[tuple[float, str, str]] = []
    for paths in by_source.values():
        for pa, pb in itertools.combinations(paths, 2):
            pairs += 1
            a, b = evidence[pa], evidence[pb]
            if a.greyscale or b.greyscale:
                grey += 1
                continue
            d = disagreement(a, b)
            if d is None:
                unmatched += 1
                continue
            values.append(d)
            worst.append((d, pa.name, pb.name))
    v = np.array(values)
    return {
        "sources": len(by_source),
        "pairs": pairs,
        "grey_pairs": grey,
        "not_matched_in_grey": unmatched,
        "matched": len(values),
        "percentiles": {p: round(float(np.percentile(v, p)), 3) for p in (50, 90, 99, 99.9, 100)},
        "above_limit": int(np.count_nonzero(v > tint.MAX_DISAGREEMENT)),
        "worst": [(round(d, 3), a, b) for d, a, b in sorted(worst, reverse=True)[:5]],
    }


def lookalikes(folder: Path, links: int | None) -> list[dict]:
    out = []
    for a, b in LOOKALIKE_LINKS[:links]:
        d = disagreement(from_file(str(folder / a))[0], from_file(str(folder / b))[0])
        out.append({"a": a, "b": b, "disagreement": None if d is None else round(d, 3)})
    return out


def edits(photos: int | None) -> dict:
    paths = sorted(harness.PHOTOS.glob("*.png"))[:photos]
    out = {}
    originals = []
    for path in paths:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        originals.append((rgb, measure(rgb, *rgb.size)))
    for name, edit in EDITS.items():
        matched = agree = 0
        for rgb, ev in originals:
            copy = edit(rgb)
            d = disagreement(ev, measure(copy, *copy.size))
            if d is not None:
                matched += 1
                agree += d <= tint.MAX_DISAGREEMENT
        out[name] = {"photos": len(originals), "grey_match": matched, "colours_agree": agree}
    return out


def markdown(data: dict) -> str:
    c = data["copies"]
    lines = [
        "# Colour disagreement of copies and of template look-alikes (search/dups/tint.py)",
        "",
        f"Limit: `tint.MAX_DISAGREEMENT` = {tint.MAX_DISAGREEMENT}.",
        "",
        "## Copies (the near-duplicate set)",
        "",
        f"{c['sources']} sources, {c['pairs']:,} same-source pairs: {c['grey_pairs']:,} with a "
        f"grey copy (left out), {c['not_matched_in_grey']:,} not matched by the grey evidence, "
        f"{c['matched']:,} matched. Their disagreement: "
        + ", ".join(f"{p} %: {v}" for p, v in c["percentiles"].items())
        + f"; above the limit: **{c['above_limit']}**.",
        "",
        "Worst: " + "; ".join(f"{d} ({a} / {b})" for d, a, b in c["worst"]),
        "",
        "## Template look-alikes (distinct distractors the grey evidence linked)",
        "",
        harness.table(
            ["a", "b", "disagreement", "kept apart"],
            [
                [
                    x["a"],
                    x["b"],
                    x["disagreement"],
                    "-"
                    if x["disagreement"] is None
                    else ("yes" if x["disagreement"] > tint.MAX_DISAGREEMENT else "**no**"),
                ]
                for x in data["lookalikes"]
            ],  # fmt: skip
        ),
        "",
        "## Colour edits of the shared photos",
        "",
        harness.table(
            ["edit", "photos", "matched in grey", "colours agree"],
            [
                [k, v["photos"], v["grey_match"], v["colours_agree"]]
                for k, v in data["edits"].items()
            ],
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = harness.parser(__doc__, quick="2 sources, 2 look-alike links, 2 photos")
    ap.add_argument("--neardup", type=Path, default=harness.WORK / "neardup")
    ap.add_argument("--distractors", type=Path, default=harness.WORK / "distractors-5200")
    args = ap.parse_args()
    harness.need(args.neardup, "python bench/make_neardup_set.py")
    harness.need(args.distractors, "python bench/make_distractors.py")
    few = 2 if args.quick else None
    data = {"copies": copies(args.neardup, few), "lookalikes": lookalikes(args.distractors, few),
            "edits": edits(few)}  # fmt: skip
    harness.write_results("tint_margins", markdown(data), data)


if __name__ == "__main__":
    main()
