"""Build a seeded near-duplicate benchmark set from the shared real photos, with ground truth.

usage: python bench/make_neardup_set.py [--out bench/work/neardup] [--seed 0] [--distractors 10]
       python bench/make_neardup_set.py --quick   # the same set into bench/work/quick/neardup

For every original (24 Kodak PNG + 37 McMaster/Set14/Set5 photos, read in place) it writes the
original as PNG plus one file per transform in TRANSFORMS; `--distractors` originals (chosen by
the seed) get no copies. Originals that are the same picture in two test sets (found by pixel
correlation of small grey thumbnails, see `natural_duplicates`) are merged into one group.
The imagededup `mixed_images` folder is added as a second set, grouped by file-name stem.
Everything goes to `OUT/groundtruth.json`.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import harness
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

TESTDATA = harness.TESTDATA
SOURCES = (TESTDATA / "photos", TESTDATA / "photos-more")
MIXED = TESTDATA / "imagededup" / "mixed_images"
COPY_QUALITY = 90  # JPEG quality of every copy whose transform is not itself a re-encode
THUMB_SIDE = 64  # px; grey thumbnails compared to find natural duplicates between test sets
NATURAL_DUP_CORR = 0.90  # Pearson r of thumbnails; unrelated photos stay below ~0.6
ORIENTATION = 0x0112  # EXIF tag
ROTATE_CW_TO_VIEW = 6  # EXIF orientation: stored pixels must be turned 90° clockwise to view

Transform = Callable[[Image.Image, random.Random], tuple[Image.Image, dict]]


def _jpeg(quality: int) -> Transform:
    """Re-encode at a JPEG quality."""
    return lambda img, rng: (img, {"quality": quality})


def _scale(factor: float) -> Transform:
    """Downscale both sides by a factor (Lanczos)."""

    def apply(img: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
        size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
        return img.resize(size, Image.Resampling.LANCZOS), {}

    return apply


def _crop(fraction: float) -> Transform:
    """Centre crop removing `fraction` of the width and of the height."""

    def apply(img: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
        dx, dy = round(img.width * fraction / 2), round(img.height * fraction / 2)
        return img.crop((dx, dy, img.width - dx, img.height - dy)), {}

    return apply


def _enhance(kind: type, factor: float) -> Transform:
    """Pillow ImageEnhance (Brightness or Contrast) by a factor."""
    return lambda img, rng: (kind(img).enhance(factor), {})


def _grey(img: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
    """Greyscale (saved as a one-channel JPEG)."""
    return img.convert("L"), {}


def _border(img: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
    """Solid border of 5-10 % of the shorter side on every edge, like a screenshot frame."""
    width = round(min(img.size) * rng.uniform(0.05, 0.10))
    colour = rng.choice([(255, 255, 255), (0, 0, 0), (32, 33, 36), (240, 240, 240)])
    return ImageOps.expand(img, border=width, fill=colour), {"border_px": width, "fill": colour}


def _colour_shift(img: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
    """Warm white-balance shift: red x1.08, blue x0.92."""
    arr = np.asarray(img, dtype=np.float32) * np.array([1.08, 1.0, 0.92], np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8)), {}


def _exif_rotate(img: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
    """Pixels turned 90° anticlockwise, EXIF orientation 6, so the upright view is the original."""
    return img.transpose(Image.Transpose.ROTATE_90), {"orientation": ROTATE_CW_TO_VIEW}


TRANSFORMS: dict[str, Transform] = {
    "jpeg_q30": _jpeg(30),
    "jpeg_q60": _jpeg(60),
    "jpeg_q85": _jpeg(85),
    "scale_50": _scale(0.5),
    "scale_25": _scale(0.25),
    "crop_05": _crop(0.05),
    "crop_10": _crop(0.10),
    "crop_20": _crop(0.20),
    "bright_+20": _enhance(ImageEnhance.Brightness, 1.2),
    "bright_-20": _enhance(ImageEnhance.Brightness, 0.8),
    "contrast_+25": _enhance(ImageEnhance.Contrast, 1.25),
    "contrast_-25": _enhance(ImageEnhance.Contrast, 0.75),
    "grey": _grey,
    "border": _border,
    "exif_rot90": _exif_rotate,
    "colour_shift": _colour_shift,
}


DESCRIPTIONS = {
    "jpeg_q30": "JPEG re-encode at quality 30",
    "jpeg_q60": "JPEG re-encode at quality 60",
    "jpeg_q85": "JPEG re-encode at quality 85",
    "scale_50": "downscale to 50 % per side (Lanczos)",
    "scale_25": "downscale to 25 % per side (Lanczos)",
    "crop_05": "centre crop removing 5 % of width and height",
    "crop_10": "centre crop removing 10 % of width and height",
    "crop_20": "centre crop removing 20 % of width and height",
    "bright_+20": "ImageEnhance.Brightness 1.2",
    "bright_-20": "ImageEnhance.Brightness 0.8",
    "contrast_+25": "ImageEnhance.Contrast 1.25",
    "contrast_-25": "ImageEnhance.Contrast 0.75",
    "grey": "greyscale, one-channel JPEG",
    "border": "solid border of 5-10 % of the shorter side (seeded width and colour)",
    "exif_rot90": "pixels turned 90 degrees anticlockwise + EXIF orientation 6 (upright view same)",
    "colour_shift": "warm white balance: red x1.08, blue x0.92",
}


def encode_copy(img: Image.Image, info: dict) -> bytes:
    """JPEG bytes of a transformed image, with the EXIF orientation tag when asked."""
    exif = Image.Exif()
    if "orientation" in info:
        exif[ORIENTATION] = info["orientation"]
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=info.get("quality", COPY_QUALITY), exif=exif.tobytes())
    return buf.getvalue()


def make_copy(img: Image.Image, name: str, rng: random.Random) -> tuple[bytes, dict]:
    """Apply one named transform to an RGB image; return the encoded file and its parameters."""
    out, info = TRANSFORMS[name](img, rng)
    return encode_copy(out, info), info


def originals() -> list[Path]:
    """The real photos the set is built from, in a stable order."""
    return sorted(p for folder in SOURCES for p in folder.iterdir() if p.is_file())


def load_rgb(path: Path) -> Image.Image:
    """An original as upright 8-bit RGB."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def thumb(img: Image.Image) -> np.ndarray:
    """Zero-mean, unit-norm grey thumbnail (aspect ignored) for pixel correlation."""
    arr = np.asarray(img.convert("L").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX))
    flat = arr.astype(np.float64).ravel()
    flat -= flat.mean()
    return flat / (np.linalg.norm(flat) + 1e-9)


def natural_duplicates(images: dict[str, Image.Image]) -> list[dict]:
    """Pairs of originals whose thumbnails correlate above NATURAL_DUP_CORR."""
    thumbs = {name: thumb(img) for name, img in images.items()}
    found = []
    for a, b in combinations(sorted(thumbs), 2):
        r = float(thumbs[a] @ thumbs[b])
        if r >= NATURAL_DUP_CORR:
            found.append({"a": a, "b": b, "pixel_corr": round(r, 4)})
    return found


def merge_groups(names: list[str], pairs: list[dict]) -> dict[str, str]:
    """Union-find over natural-duplicate pairs: original name -> group root name."""
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for pair in pairs:
        ra, rb = root(pair["a"]), root(pair["b"])
        parent[max(ra, rb)] = min(ra, rb)
    return {n: root(n) for n in names}


def write_original(img: Image.Image, stem: str, out: Path) -> Path:
    """Save an original losslessly as PNG."""
    path = out / f"{stem}__original.png"
    img.save(path, "PNG")
    return path


def build_main_set(out: Path, seed: int, n_distractors: int) -> dict:
    """Write originals and copies; return the set's ground truth."""
    paths = originals()
    images = {p.name: load_rgb(p) for p in paths}
    rng = random.Random(seed)
    distractors = set(rng.sample(sorted(images), n_distractors))
    pairs = natural_duplicates(images)
    group_of = merge_groups(sorted(images), pairs)
    groups: dict[str, list[dict]] = {}
    for src in paths:
        stem, img = src.stem, images[src.name]
        files = [{"path": str(write_original(img, stem, out)), "transform": "original"}]
        if src.name not in distractors:
            files += write_copies(img, stem, out, rng)
        for f in files:
            f["source"] = str(src)
        groups.setdefault(group_of[src.name], []).extend(files)
    return {
        "name": "neardup",
        "root": str(out),
        "distractors": sorted(distractors),
        "natural_duplicates": pairs,
        "groups": [{"id": k, "files": v} for k, v in sorted(groups.items())],
    }


def write_copies(img: Image.Image, stem: str, out: Path, rng: random.Random) -> list[dict]:
    """Write every transform of one original; return their ground-truth entries."""
    entries = []
    for name in TRANSFORMS:
        data, info = make_copy(img, name, rng)
        path = out / f"{stem}__{name}.jpg"
        path.write_bytes(data)
        entries.append({"path": str(path), "transform": name, "params": info})
    return entries


def mixed_set() -> dict:
    """imagededup's mixed_images, grouped by the stem before the first underscore."""
    groups: dict[str, list[dict]] = {}
    for path in sorted(MIXED.iterdir()):
        base, _, variant = path.stem.partition("_")
        entry = {"path": str(path), "transform": variant or "original", "source": base}
        groups.setdefault(base, []).append(entry)
    return {
        "name": "imagededup_mixed",
        "root": str(MIXED),
        "note": "ukbench09268_corrupt.jpg is not decodable; it is expected to fail indexing",
        "groups": [{"id": k, "files": v} for k, v in sorted(groups.items())],
    }


def main() -> None:
    """Parse options, build both sets, write groundtruth.json."""
    ap = harness.parser(__doc__, quick="smoke run: into bench/work/quick/neardup")
    ap.add_argument("--out", type=Path, default=harness.WORK / "neardup")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--distractors", type=int, default=10)
    args = ap.parse_args()
    if args.quick:  # the same set, away from the one bench/work/lib-real indexed
        args.out = harness.WORK / "quick" / "neardup"
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    truth = {
        "seed": args.seed,
        "transforms": DESCRIPTIONS,
        "copy_jpeg_quality": COPY_QUALITY,
        "sets": [build_main_set(out, args.seed, args.distractors), mixed_set()],
    }
    (out / "groundtruth.json").write_text(json.dumps(truth, indent=1))
    main_set = truth["sets"][0]
    n_files = sum(len(g["files"]) for g in main_set["groups"])
    print(f"{n_files} files in {len(main_set['groups'])} groups -> {out / 'groundtruth.json'}")
    print("natural duplicates:", main_set["natural_duplicates"])


if __name__ == "__main__":
    main()
