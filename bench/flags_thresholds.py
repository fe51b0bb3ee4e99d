"""The quality flags' thresholds against the shared real photos (false positives) and planted
defects made from them (recall): each image is decoded and measured exactly as `index` does
(indexer.decode.decode_file, the default DINOv2 recipe).

Real: photos/ (24 Kodak), photos-more/ (37: McMaster, Set14, Set5), imagededup/base_images/ (10
UKBench). Planted, from the 24 Kodak photos: dark (levels x0.12), overexposed (levels x3 +
60), blurry (Gaussian blur, radius 2.5 % of the width), grayscale, tiny (96 px), odd aspect
(a 3:1 strip), low-information (the photo's mean colour, a horizontal gradient between two of
its colours).

    python bench/flags_thresholds.py [--quick]
"""

import statistics
import tempfile
from pathlib import Path

import harness
import numpy as np
from PIL import Image, ImageFilter

from indexer.decode import Recipe, decode_file
from indexer.quality import FLAGS, THRESHOLDS, flags_of, shape_values

SHARED = harness.TESTDATA
REAL = {
    "photos": sorted((SHARED / "photos").iterdir()),
    "photos-more": sorted((SHARED / "photos-more").iterdir()),
    "imagededup base": sorted((SHARED / "imagededup" / "base_images").iterdir()),
}


def planted(src: Path) -> dict[str, Image.Image]:
    img = Image.open(src).convert("RGB")
    arr = np.asarray(img, dtype=np.float32)
    w, h = img.size
    mean = tuple(int(c) for c in arr.reshape(-1, 3).mean(axis=0))
    a, b = arr[h // 4, w // 4], arr[3 * h // 4, 3 * w // 4]
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    gradient = np.broadcast_to(a + (b - a) * ramp, (h, w, 3))
    return {
        "dark": Image.fromarray(np.clip(arr * 0.12, 0, 255).astype(np.uint8)),
        "overexposed": Image.fromarray(np.clip(arr * 3 + 60, 0, 255).astype(np.uint8)),
        "blurry": img.filter(ImageFilter.GaussianBlur(w * 0.025)),
        "grayscale": img.convert("L").convert("RGB"),
        "tiny": img.resize((96, 96 * h // w), Image.Resampling.LANCZOS),
        "odd-aspect-ratio": img.crop((0, h // 3, w, h // 3 + w // 3)),
        "low-information": Image.new("RGB", (w, h), mean),
        "low-information (gradient)": Image.fromarray(gradient.round().astype(np.uint8)),
    }


def values_of(path: Path) -> dict:
    d = decode_file(str(path), Recipe(), None)
    return {**d.quality, **shape_values(d.width, d.height)}


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 4 images per set, planted from 2")
    args = ap.parse_args()
    count = 4 if args.quick else None
    real: dict[str, list[tuple[str, dict]]] = {}
    for name, files in REAL.items():
        real[name] = [(f.name, values_of(f)) for f in files[:count]]
    kinds: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in REAL["photos"][: 2 if args.quick else None]:
            for kind, img in planted(src).items():
                path = Path(tmp) / f"{src.stem}-{kind}.png"
                img.save(path)
                kinds.setdefault(kind, []).append(values_of(path))
    every = [v for rows in real.values() for _, v in rows]
    rows = []
    for flag, (key, op, limit) in THRESHOLDS.items():
        hits = [(s, n) for s, r in real.items() for n, v in r if flag in flags_of(v)]
        values = [v[key] for v in every]
        planted_hits = [
            sum(flag in flags_of(v) for v in vs) / len(vs)
            for kind, vs in kinds.items()
            if kind.startswith(flag)
        ]
        rows.append(
            [
                flag,
                f"{key} {op} {limit:g}",
                f"{min(values):.3g} / {statistics.median(values):.3g} / {max(values):.3g}",
                f"{len(hits)} of {len(every)} ({100 * len(hits) / len(every):.1f} %)",
                ", ".join(n for _, n in hits) or "-",
                " / ".join(f"{r:.2f}" for r in planted_hits),
            ]
        )
    planted_rows = []
    for kind, vs in kinds.items():
        raised = {f: sum(f in flags_of(v) for v in vs) for f in FLAGS}
        planted_rows.append([kind, len(vs), ", ".join(f"{f} {n}" for f, n in raised.items() if n)])
    header = ["flag", "rule", "real photos min / median / max", "real photos flagged"]
    header += ["which", "planted recall"]
    greys = [n for rows in real.values() for n, v in rows if v["colourfulness"] == 0]
    md = (
        "# Quality flags: thresholds, false positives on real photos, recall on planted defects\n\n"
        "Every image decoded and measured as `index` does.\n\n"
        + harness.table(header, rows)
        + "\n\nReal photos with R = G = B in every pixel (true greys, not false positives): "
        + (", ".join(greys) or "none")
        + "\n\nPlanted defects (from the 24 Kodak photos) and every flag each raised:\n\n"
        + harness.table(["planted", "images", "flags raised"], planted_rows)
    )
    data = {"real": real, "planted": kinds, "thresholds": THRESHOLDS}
    harness.write_results("perf_flags_thresholds", md, data)


if __name__ == "__main__":
    main()
