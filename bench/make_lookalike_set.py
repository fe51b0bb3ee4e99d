"""Build a look-alike duplicate benchmark set: most files have NO copy (issue 23).

usage: python bench/make_lookalike_set.py --size N --out DIR [--seed 0] [--against-out DIR2]
       python bench/make_lookalike_set.py --quick   # smoke run: size 20 into bench/work/quick/

A real photo library is mostly distinct pictures, many of them alike (the same scene, light and
texture); only a few have a copy. This set is built that way from the real images of
../shared/testdata (read in place, never copied into the repository):

* **Distinct look-alike sources.** The 69 real photos (24 Kodak, 18 McMaster, 14 Set14, 3 Set5,
  10 UKBench base images) and, to reach larger sizes, NON-OVERLAPPING tiles of them: a photo cut
  into a g x g grid (g = 2, 3 or 4, while a tile keeps a short side of at least 120 px), each tile
  upscaled (Lanczos) to a long side of 512-768 px. A tile looks like its neighbours (same light,
  colours, texture) but shows different content: the hard negatives. One photo is used at ONE
  grid level only, so a full photo and a tile of it (or tiles of two grids) never meet.
  Blank tiles (a blown-out sky, a black background: no content to tell two apart) are skipped.
  Natural duplicates left out: Set5 img_004 (= Set14 img_006, "face"/"head"), Set5 img_003 (a
  256x256 crop of Set14 img_011, the monarch; NCC 0.98), imagededup's baboon.pgm (= Set14
  img_001) and alpha_channel_image.png (= UKBench 00120).
* **Planted copies.** About 9 % of the sources get 1 or 2 copies with realistic transforms
  (TRANSFORMS) under realistic names (`Backup/`, `Export/`, `IMG_0001 (1).jpg`, `Copy of ...`).
* **Low-information images** that must never be grouped with each other: near-black photos (two
  or more different photos, never used elsewhere in the set, darkened to 3-6 % brightness), text
  documents (different text rendered on off-white like scanned pages), flat graphics (simple
  shapes, a bar chart, stripes) and skies (smooth gradients in different colours). From 60
  files on, one document also gets a planted copy.

DIR/groundtruth.json maps every file (path relative to DIR) to its source id and kind, lists the
sources, every planted pair, the held-out content (not in the set; for `--against` queries) and
what was left out. `--against-out DIR2` also writes a query folder for `dinosearch dups
--against`: 3 copies of library sources and 3 held-out (unseen) pictures, described in
DIR2/against.json. Everything is a function of (size, seed).
"""

from __future__ import annotations

import functools
import io
import json
import random
import shutil
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import harness
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

BUILDER_VERSION = 2  # bump when the set's content for a given (size, seed) changes
TESTDATA = harness.TESTDATA
SIZES = (20, 60, 94, 250, 1000)
MIN_TILE_SIDE = 120  # px of the tile's short side before upscaling
TILE_LONG_SIDE = (512, 768)  # tiles are upscaled (Lanczos) to a long side in this range
COPY_SHARE = 0.09  # of the sources get planted copies
COPY_QUALITY = 90  # JPEG quality of a copy whose transform is not itself a re-encode
ORIGINAL_QUALITY = 92  # JPEG quality of originals saved as JPEG ("camera")
PNG_SHARE = 0.15  # of the originals are saved as PNG
NEAR_BLACK_LEVEL = (0.03, 0.06)  # mean brightness of a near-black photo, as a share of 255
BLANK_TILE_STD = 4.0  # a tile whose 64 px grey thumbnail varies less than this is skipped
HELD_OUT = 3  # unseen pictures kept out of the set for the --against check
ORIENTATION = 0x0112  # EXIF tag
ROTATE_CW_TO_VIEW = 6  # EXIF orientation: stored pixels must be turned 90 deg clockwise to view
# Same picture as another test image (checked: normalised cross-correlation of grey images at
# 1/4 scale, a template of the smaller one's centre against the larger at 5 scales; these are the
# only pairs above 0.9 among the 69 photos + imagededup's images; the next is 0.896, noise).
EXCLUDED = {
    "photos-more/set5_img_004_SRF_2_HR.png": "same picture as set14_img_006 (face/head), NCC 0.988",
    "photos-more/set5_img_003_SRF_2_HR.png": "a 256x256 crop of set14_img_011 (monarch), NCC 0.983",
    "imagededup/formats_images/baboon.pgm": "same picture as set14_img_001 (baboon), NCC 0.997",
    "imagededup/alpha_channel_image.png": "ukbench00120 with an alpha channel",
}

Transform = Callable[[Image.Image], tuple[Image.Image, dict]]


def _half_jpeg(img: Image.Image) -> tuple[Image.Image, dict]:
    size = (max(1, round(img.width / 2)), max(1, round(img.height / 2)))
    return img.resize(size, Image.Resampling.LANCZOS), {"quality": 85}


def _crop(keep: float) -> Transform:
    def apply(img: Image.Image) -> tuple[Image.Image, dict]:
        w, h = round(img.width * keep), round(img.height * keep)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        return img.crop((left, top, left + w, top + h)), {}

    return apply


def _border(img: Image.Image) -> tuple[Image.Image, dict]:
    width = round(min(img.size) * 0.06)
    return ImageOps.expand(img, border=width, fill=(255, 255, 255)), {"border_px": width}


def _exif_rot6(img: Image.Image) -> tuple[Image.Image, dict]:
    # Stored turned 90 deg anticlockwise; orientation 6 says "turn 90 clockwise to view".
    return img.transpose(Image.Transpose.ROTATE_90), {"orientation": ROTATE_CW_TO_VIEW}


TRANSFORMS: dict[str, Transform] = {
    "half_jpeg_q85": _half_jpeg,
    "jpeg_q60": lambda img: (img, {"quality": 60}),
    "crop_keep90": _crop(0.90),
    "crop_keep80": _crop(0.80),
    "bright_+20": lambda img: (ImageEnhance.Brightness(img).enhance(1.2), {}),
    "contrast_+25": lambda img: (ImageEnhance.Contrast(img).enhance(1.25), {}),
    "grey": lambda img: (img.convert("L"), {}),
    "border_white_6pct": _border,
    "exif_orient6": _exif_rot6,
}
DESCRIPTIONS = {
    "half_jpeg_q85": "downscale to 50 % per side (Lanczos), JPEG q85",
    "jpeg_q60": "JPEG re-encode at quality 60",
    "crop_keep90": "centre crop keeping 90 % of each side",
    "crop_keep80": "centre crop keeping 80 % of each side",
    "bright_+20": "ImageEnhance.Brightness 1.2",
    "contrast_+25": "ImageEnhance.Contrast 1.25",
    "grey": "greyscale (one-channel JPEG)",
    "border_white_6pct": "white border of 6 % of the shorter side on every edge",
    "exif_orient6": "pixels turned 90 deg anticlockwise, EXIF orientation 6: upright = original",
}
LOWINFO_TRANSFORMS = ("half_jpeg_q85", "jpeg_q60")  # a scanned page saved twice


def photo_pool() -> list[str]:
    """The real photos (paths relative to TESTDATA), in a stable order, natural duplicates out."""
    pool = [f"photos/kodim{i:02d}.png" for i in range(1, 25)]
    pool += [f"photos-more/{i}.tif" for i in range(1, 19)]
    pool += [f"photos-more/set14_img_{i:03d}_SRF_2_HR.png" for i in range(1, 15)]
    pool += [f"photos-more/set5_img_{i:03d}_SRF_2_HR.png" for i in range(1, 6)]
    pool += sorted(
        f"imagededup/base_images/{p.name}"
        for p in (TESTDATA / "imagededup" / "base_images").glob("ukbench*.jpg")
    )
    return [p for p in pool if p not in EXCLUDED]


_CACHE: dict[str, Image.Image] = {}


def load_rgb(rel: str) -> Image.Image:
    """A test photo as upright 8-bit RGB (cached: tiles of one photo decode it once)."""
    if rel not in _CACHE:
        with Image.open(TESTDATA / rel) as img:
            _CACHE[rel] = ImageOps.exif_transpose(img).convert("RGB")
    return _CACHE[rel]


def photo_id(rel: str, grid: int = 1, cell: tuple[int, int] | list[int] = (0, 0)) -> str:
    """A readable source id: kodim05, mcm12, set14_006, ukbench09060; tiles add #3x3r1c2."""
    stem = Path(rel).stem
    if rel.startswith("photos-more/set"):
        stem = stem[: len("set14")].rstrip("_") + "_" + stem.split("_")[2]
    elif rel.startswith("photos-more/"):
        stem = f"mcm{int(stem):02d}"
    return stem if grid == 1 else f"{stem}#{grid}x{grid}r{cell[0]}c{cell[1]}"


def max_grid(rel: str) -> int:
    w, h = load_rgb(rel).size
    return max(g for g in (1, 2, 3, 4) if min(w, h) / g >= MIN_TILE_SIDE or g == 1)


def is_blank(rel: str, grid: int, row: int, col: int) -> bool:
    """A featureless tile (blown-out sky, a black background): two of them are the same picture
    to anyone, so as distinct sources they would be wrong ground truth. Measured on the tile's
    64x64 grey thumbnail (standard deviation < BLANK_TILE_STD levels; 14 of 1,815 candidates)."""
    img = load_rgb(rel)
    tile = img.crop(tile_box(img.size, grid, row, col)).convert("L")
    thumb = np.asarray(tile.resize((64, 64), Image.Resampling.BOX), np.float64)
    return float(thumb.std()) < BLANK_TILE_STD


@functools.cache
def grid_cells(rel: str, grid: int) -> list[tuple[int, int]]:
    """The cells of a g x g grid of a photo that are not blank (a whole photo: its one cell)."""
    cells = [(r, c) for r in range(grid) for c in range(grid)]
    return cells if grid == 1 else [cell for cell in cells if not is_blank(rel, grid, *cell)]


def tile_box(size: tuple[int, int], grid: int, row: int, col: int) -> tuple[int, int, int, int]:
    w, h = size
    return (
        round(col * w / grid),
        round(row * h / grid),
        round((col + 1) * w / grid),
        round((row + 1) * h / grid),
    )


def lowinfo_counts(size: int) -> dict[str, int]:
    """How many of each low-information kind: 2 each for small sets, gently more for big ones."""
    return {
        "near-black": 2 if size < 100 else 3 if size < 500 else 4,
        "document": 2 if size < 100 else 3,
        "graphic": 2 if size < 100 else 3 if size < 500 else 4,
        "sky": 2 if size < 250 else 3,
    }


# ---------------------------------------------------------------------------- the plan (no pixels)


def plan_sources(size: int, seed: int) -> dict:
    """Decide every source, copy and held-out picture for (size, seed); no image is written."""
    rng = random.Random(f"lookalike:{seed}:{size}")
    low = lowinfo_counts(size)
    n_low = sum(low.values())
    # Copies: K sources get 1 or 2 each; K ~ 9 % of the sources (sources ~ size / 1.135).
    k = max(1, round(COPY_SHARE * size / (1 + COPY_SHARE * 1.5)))
    with_lowinfo_copy = size >= 60
    per_source = [rng.choice((1, 2)) for _ in range(k)]
    if with_lowinfo_copy:
        per_source[-1] = 1
    n_copies = sum(per_source)
    n_photo = size - n_copies - n_low
    if n_photo < 4:
        raise SystemExit(f"--size {size} is too small (at least {n_copies + n_low + 4})")

    pool = photo_pool()
    order = pool[:]
    rng.shuffle(order)
    dark_photos, order = order[: low["near-black"]], order[low["near-black"] :]
    levels: dict[str, int] = {}
    if n_photo + HELD_OUT <= len(order):
        for rel in order[:n_photo]:
            levels[rel] = 1
        held = [{"origin": rel, "grid": 1, "cell": [0, 0]} for rel in order[n_photo:][:HELD_OUT]]
        tiles = [(rel, 1, 0, 0) for rel in order[:n_photo]]
    else:
        levels = {rel: 1 for rel in order}
        need = n_photo + HELD_OUT
        total = len(order)
        for target in (3, 4):
            for rel in order:
                if total >= need:
                    break
                new = min(target, max_grid(rel))
                if new > levels[rel]:
                    total += len(grid_cells(rel, new)) - len(grid_cells(rel, levels[rel]))
                    levels[rel] = new
        if total < need:
            raise SystemExit(f"--size {size}: only {total} distinct tiles available")
        tiles = [(rel, levels[rel], r, c) for rel in order for r, c in grid_cells(rel, levels[rel])]
        # Drop the surplus tiles (at least HELD_OUT) from multi-tile grids: they stay unseen,
        # next to their grid-mates in the set (the hardest "new" pictures for --against).
        droppable = [t for t in tiles if t[1] > 1]
        rng.shuffle(droppable)
        dropped, kept_per_grid = [], {rel: len(grid_cells(rel, levels[rel])) for rel in order}
        for t in droppable:
            if len(tiles) - len(dropped) <= n_photo:
                break
            if kept_per_grid[t[0]] > 1:
                dropped.append(t)
                kept_per_grid[t[0]] -= 1
        drop_set = set(dropped)
        tiles = [t for t in tiles if t not in drop_set]
        held = [{"origin": t[0], "grid": t[1], "cell": [t[2], t[3]]} for t in dropped[:HELD_OUT]]
        assert len(tiles) == n_photo, (len(tiles), n_photo)

    sources: list[dict] = []
    for rel, g, r, c in tiles:
        sources.append(
            {
                "id": photo_id(rel, g, (r, c)),
                "kind": "photo" if g == 1 else "tile",
                "origin": rel,
                "grid": g,
                "cell": [r, c],
            }
        )
    for i, rel in enumerate(dark_photos):
        sources.append({"id": f"near-black-{i + 1}", "kind": "near-black", "origin": rel})
    for kind in ("document", "graphic", "sky"):
        for i in range(low[kind]):
            sources.append({"id": f"{kind}-{i + 1}", "kind": kind, "variant": i})

    # Which sources get copies, and with which transforms (cycled so all appear evenly).
    photo_ids = [s["id"] for s in sources if s["kind"] in ("photo", "tile")]
    n_photo_copied = k - (1 if with_lowinfo_copy else 0)
    copied = rng.sample(photo_ids, n_photo_copied)
    if with_lowinfo_copy:
        copied.append(rng.choice([s["id"] for s in sources if s["kind"] == "document"]))
    names = list(TRANSFORMS)
    rng.shuffle(names)
    cycle = 0
    by_id = {s["id"]: s for s in sources}
    for sid, count in zip(copied, per_source, strict=True):
        src = by_id[sid]
        if src["kind"] == "document":
            src["copies"] = rng.sample(LOWINFO_TRANSFORMS, count)
            continue
        chosen: list[str] = []
        while len(chosen) < count:
            name = names[cycle % len(names)]
            cycle += 1
            if name not in chosen:
                chosen.append(name)
        src["copies"] = chosen
    rng.shuffle(sources)
    return {
        "sources": sources,
        "held_out": held,
        "near_black_photos": dark_photos,
        "copies_total": n_copies,
        "lowinfo": low,
    }


# ---------------------------------------------------------------------------- pixels


def render_tile(
    rel: str, grid: int, row: int, col: int, long_side: int
) -> tuple[Image.Image, list]:
    img = load_rgb(rel)
    if grid == 1:
        return img, [0, 0, img.width, img.height]
    box = tile_box(img.size, grid, row, col)
    tile = img.crop(box)
    scale = long_side / max(tile.size)
    size = (max(1, round(tile.width * scale)), max(1, round(tile.height * scale)))
    return tile.resize(size, Image.Resampling.LANCZOS), list(box)


def render_near_black(rel: str, rng: random.Random) -> tuple[Image.Image, dict]:
    img = load_rgb(rel)
    level = rng.uniform(*NEAR_BLACK_LEVEL)
    mean = float(np.asarray(img.convert("L"), np.float64).mean()) / 255
    dark = ImageEnhance.Brightness(img).enhance(level / max(mean, 1e-3))
    got = float(np.asarray(dark.convert("L"), np.float64).mean()) / 255
    return dark, {"target_brightness": round(level, 4), "brightness": round(got, 4)}


WORDS = (
    "the of and to in is was for on that with as by at from this be are which have an or "
    "it not were has their also its been one more than other these two after first new "
    "report meeting invoice total amount payment date account customer service quarter "
    "budget project review section table figure page results method data analysis note "
    "agreement parties shall terms period notice address signed below herein schedule "
    "insurance policy claim vehicle owner premium coverage tax year income return office "
    "receipt order number delivery item price quantity balance due statement bank"
).split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
    return " ".join(words).capitalize() + "."


def render_document(variant: int, rng: random.Random) -> tuple[Image.Image, dict]:
    """A page of different text on off-white, with a scanner's slight tilt, blur and noise."""
    w, h = (850, 1100) if variant % 3 != 2 else (1100, 850)
    paper = rng.randint(238, 250)
    page = Image.new("L", (w, h), paper)
    draw = ImageDraw.Draw(page)
    size = rng.choice((15, 17, 19, 21))
    font = ImageFont.load_default(size=size)
    head = ImageFont.load_default(size=size + rng.randint(8, 14))
    margin = rng.randint(60, 110)
    columns = 2 if variant % 2 == 1 else 1
    col_w = (w - 2 * margin - (columns - 1) * 40) // columns
    y = margin
    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))).title()
    draw.text((margin, y), title, fill=rng.randint(10, 50), font=head)
    y += size * 3
    lines = 0
    for col in range(columns):
        x, yy = margin + col * (col_w + 40), y
        while yy < h - margin - size:
            if rng.random() < 0.12:  # paragraph break
                yy += size
            line, text = "", ""
            while True:
                text = (line + " " + rng.choice(WORDS)).strip()
                if draw.textlength(text, font=font) > col_w:
                    break
                line = text
            if rng.random() < 0.08:  # a short last line of a paragraph
                line = " ".join(line.split()[: rng.randint(2, 6)])
            draw.text((x, yy), line, fill=rng.randint(15, 60), font=font)
            yy += round(size * rng.choice((1.3, 1.45, 1.6)))
            lines += 1
    if variant % 4 == 3:  # a table rule and a signature line
        draw.line((margin, h - margin, w // 2, h - margin), fill=40, width=2)
    angle = rng.uniform(-0.7, 0.7)
    page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=paper)
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 2.5, (h, w))
    arr = np.clip(np.asarray(page, np.float64) + noise, 0, 255).round().astype(np.uint8)
    return Image.fromarray(arr).convert("RGB"), {
        "font_px": size,
        "columns": columns,
        "lines": lines,
        "tilt_deg": round(angle, 2),
    }


GRAPHIC_DESIGNS = ("circle", "square_triangle", "bar_chart", "stripes")


def render_graphic(variant: int, rng: random.Random) -> tuple[Image.Image, dict]:
    """A flat graphic: a simple shape on a flat background, a bar chart or a striped flag."""
    w, h = rng.choice(((800, 600), (1024, 768), (960, 540)))
    design = GRAPHIC_DESIGNS[variant % len(GRAPHIC_DESIGNS)]
    palette = [
        (220, 40, 40),
        (30, 90, 200),
        (250, 200, 30),
        (40, 160, 80),
        (240, 120, 20),
        (120, 50, 160),
        (20, 20, 20),
        (250, 250, 250),
        (0, 150, 170),
    ]
    rng.shuffle(palette)
    bg, fg, fg2 = palette[0], palette[1], palette[2]
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    if design == "circle":
        r = rng.randint(h // 5, h // 3)
        cx, cy = rng.randint(r, w - r), rng.randint(r, h - r)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif design == "square_triangle":
        s = rng.randint(h // 4, h // 2)
        x, y = rng.randint(20, w // 2 - s // 2), rng.randint(20, h - s - 20)
        draw.rectangle((x, y, x + s, y + s), fill=fg)
        bx = rng.randint(w // 2 + 20, w - 40)
        draw.polygon(
            [
                (bx, h // 5),
                (min(w - 10, bx + s // 2), h * 4 // 5),
                (max(w // 2, bx - s // 2), h * 4 // 5),
            ],
            fill=fg2,
        )
    elif design == "bar_chart":
        img = Image.new("RGB", (w, h), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        n = rng.randint(3, 7)
        left, base = 80, h - 70
        draw.line((left, 40, left, base), fill=(60, 60, 60), width=3)
        draw.line((left, base, w - 40, base), fill=(60, 60, 60), width=3)
        step = (w - left - 60) / n
        for i in range(n):
            top = rng.randint(80, base - 40)
            x0 = round(left + 20 + i * step)
            draw.rectangle((x0, top, round(x0 + step * 0.6), base), fill=fg)
    else:  # stripes
        vertical = rng.random() < 0.5
        for i, colour in enumerate((bg, fg, fg2)):
            if vertical:
                draw.rectangle((i * w // 3, 0, (i + 1) * w // 3, h), fill=colour)
            else:
                draw.rectangle((0, i * h // 3, w, (i + 1) * h // 3), fill=colour)
    return img, {"design": design}


SKY_PALETTES = (
    ((38, 92, 178), (176, 212, 240), "clear blue"),
    ((66, 40, 110), (250, 150, 70), "sunset"),
    ((110, 118, 130), (205, 208, 212), "overcast"),
    ((10, 30, 80), (90, 140, 200), "dusk blue"),
)


def render_sky(variant: int, rng: random.Random) -> tuple[Image.Image, dict]:
    """A smooth sky gradient (top to horizon) with a phone camera's faint noise."""
    w, h = rng.choice(((1024, 768), (1008, 756), (960, 720)))
    top, bottom, name = SKY_PALETTES[variant % len(SKY_PALETTES)]
    t = np.linspace(0, 1, h)[:, None, None] ** rng.uniform(0.8, 1.4)
    grad = np.array(top, np.float64) * (1 - t) + np.array(bottom, np.float64) * t
    grad = np.broadcast_to(grad, (h, w, 3)).copy()
    side = np.linspace(-1, 1, w)[None, :, None] * rng.uniform(-6, 6)  # a slight lateral shading
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 1.5, (h, w, 3))
    arr = np.clip(grad + side + noise, 0, 255).round().astype(np.uint8)
    return Image.fromarray(arr), {"palette": name}


def encode(img: Image.Image, fmt: str, info: dict | None = None) -> bytes:
    info = info or {}
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, "PNG")
    else:
        exif = Image.Exif()
        if "orientation" in info:
            exif[ORIENTATION] = info["orientation"]
        img.save(buf, "JPEG", quality=info.get("quality", COPY_QUALITY), exif=exif.tobytes())
    return buf.getvalue()


# ---------------------------------------------------------------------------- names


class Namer:
    """Camera-, phone- and scanner-like names, unique within the set."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def _unique(self, make: Callable[[], str]) -> str:
        while True:
            name = make()
            if name.lower() not in self.used:
                self.used.add(name.lower())
                return name

    def original(self, kind: str, png: bool) -> str:
        r = self.rng
        if kind == "document":
            return self._unique(
                lambda: r.choice(
                    (
                        f"Scans/scan_{r.randint(1, 999):04d}.png",
                        f"Documents/Scan {r.randint(2015, 2023)}-{r.randint(1, 12):02d}-"
                        f"{r.randint(1, 28):02d}.jpg",
                    )
                )
            )
        if kind == "graphic":
            return self._unique(
                lambda: r.choice(
                    (
                        f"Screenshots/Screenshot {r.randint(2018, 2023)}-{r.randint(1, 12):02d}-"
                        f"{r.randint(1, 28):02d} at {r.randint(0, 23):02d}."
                        f"{r.randint(0, 59):02d}.png",
                        f"Downloads/image ({r.randint(1, 40)}).png",
                    )
                )
            )
        ext = ".png" if png else None

        def photo() -> str:
            y, m, d = r.randint(2012, 2023), r.randint(1, 12), r.randint(1, 28)
            hh, mm, ss = r.randint(0, 23), r.randint(0, 59), r.randint(0, 59)
            style = r.randrange(5)
            if style == 0:
                name = f"DCIM/100CANON/IMG_{r.randint(1, 9999):04d}" + (ext or ".JPG")
            elif style == 1:
                name = f"Pictures/{y}/DSC{r.randint(1, 99999):05d}" + (ext or ".jpg")
            elif style == 2:
                name = (
                    f"Phone/PXL_{y}{m:02d}{d:02d}_{hh:02d}{mm:02d}{ss:02d}{r.randint(0, 999):03d}"
                )
                name += ext or ".jpg"
            elif style == 3:
                name = f"Pictures/Holiday {y}/P10{r.randint(1, 99999):05d}" + (ext or ".JPG")
            else:
                name = f"IMG_{r.randint(1, 9999):04d}" + (ext or ".jpg")
            return name

        return self._unique(photo)

    def copy(self, original: str) -> str:
        r = self.rng
        p = Path(original)
        stem, parent = p.stem, p.parent

        def make() -> str:
            style = r.randrange(6)
            if style == 0:
                return str(Path("Backup") / p.with_suffix(".jpg").name)
            if style == 1:
                return str(Path("Export") / f"{stem}_export.jpg")
            if style == 2:
                return str(parent / f"{stem} ({r.randint(1, 3)}).jpg")
            if style == 3:
                return str(parent / f"{stem}-edited.jpg")
            if style == 4:
                return str(Path("Downloads") / f"Copy of {stem}.jpg")
            return (
                f"Downloads/WhatsApp Image {r.randint(2016, 2023)}-{r.randint(1, 12):02d}-"
                f"{r.randint(1, 28):02d} at {r.randint(0, 23)}.{r.randint(0, 59):02d}."
                f"{r.randint(0, 59):02d}.jpeg"
            )

        return self._unique(make)


# ---------------------------------------------------------------------------- the set


def build(size: int, out: Path, seed: int = 0) -> dict:
    """Write the set into OUT (emptied first) and return its ground truth (also written)."""
    plan = plan_sources(size, seed)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    namer = Namer(random.Random(f"names:{seed}:{size}"))
    files: dict[str, dict] = {}
    sources: dict[str, dict] = {}

    def write(rel: str, data: bytes) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    for src in plan["sources"]:
        rng = random.Random(f"source:{seed}:{size}:{src['id']}")
        kind, meta = src["kind"], {}
        if kind in ("photo", "tile"):
            r, c = src["cell"]
            img, box = render_tile(src["origin"], src["grid"], r, c, rng.randint(*TILE_LONG_SIDE))
            meta = {"origin": src["origin"], "grid": src["grid"], "cell": src["cell"], "box": box}
        elif kind == "near-black":
            img, meta = render_near_black(src["origin"], rng)
            meta["origin"] = src["origin"]
        elif kind == "document":
            img, meta = render_document(src["variant"], rng)
        elif kind == "graphic":
            img, meta = render_graphic(src["variant"], rng)
        else:
            img, meta = render_sky(src["variant"], rng)
        png = kind in ("photo", "tile") and rng.random() < PNG_SHARE
        rel = namer.original(kind, png)
        fmt = "PNG" if rel.lower().endswith(".png") else "JPEG"
        write(rel, encode(img, fmt, {"quality": ORIGINAL_QUALITY}))
        file_kind = "original" if kind in ("photo", "tile") else kind
        files[rel] = {"source": src["id"], "kind": file_kind}
        members = [rel]
        for name in src.get("copies", []):
            copy_img, info = TRANSFORMS[name](img)
            crel = namer.copy(rel)
            write(crel, encode(copy_img, "JPEG", info))
            files[crel] = {
                "source": src["id"],
                "kind": "copy",
                "transform": name,
                "copy_of": rel,
                "of_kind": file_kind,
            }
            members.append(crel)
        sources[src["id"]] = {"kind": kind, "files": members, "size": list(img.size), **meta}

    pairs = sorted([a, b] for s in sources.values() for a, b in combinations(sorted(s["files"]), 2))
    n_copies = sum(1 for f in files.values() if f["kind"] == "copy")
    kinds: dict[str, int] = {}
    for f in files.values():
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    tiles = sum(1 for s in sources.values() if s["kind"] == "tile")
    grids = sorted({(s["origin"], s["grid"]) for s in sources.values() if s["kind"] == "tile"})
    summary = (
        f"{len(files)} files, {len(sources)} sources ({tiles} tiles of {len(grids)} photos), "
        f"{len(pairs)} planted copy pairs ({n_copies} copies of "
        f"{sum(1 for s in sources.values() if len(s['files']) > 1)} sources)"
    )
    truth = {
        "builder_version": BUILDER_VERSION,
        "size": size,
        "seed": seed,
        "testdata": str(TESTDATA),
        "summary": summary,
        "counts": {
            "files": len(files),
            "sources": len(sources),
            "planted_pairs": len(pairs),
            "copies": n_copies,
            "kinds": kinds,
            "lowinfo": plan["lowinfo"],
        },
        "files": dict(sorted(files.items())),
        "sources": dict(sorted(sources.items())),
        "planted_pairs": pairs,
        "blank_tiles_skipped": sorted(
            photo_id(o, g, (r, c))
            for o, g in grids
            for r in range(g)
            for c in range(g)
            if (r, c) not in grid_cells(o, g)
        ),
        "held_out": plan["held_out"],
        "transforms": DESCRIPTIONS,
        "excluded": EXCLUDED,
    }
    assert len(files) == size, (len(files), size)
    (out / "groundtruth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def build_against(truth: dict, out: Path, seed: int = 0) -> dict:
    """A query folder: 3 copies of library sources and 3 held-out (unseen) pictures."""
    rng = random.Random(f"against:{seed}:{truth['size']}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    library = truth["sources"]
    # Sources without a planted copy: a query must not be byte-identical to a library copy.
    photos = sorted(
        sid for sid, s in library.items() if s["kind"] in ("photo", "tile") and len(s["files"]) == 1
    )
    queries: dict[str, dict] = {}
    for i, (sid, name) in enumerate(
        zip(rng.sample(photos, 3), ("half_jpeg_q85", "crop_keep90", "bright_+20"), strict=True)
    ):
        s = library[sid]
        img, _ = render_tile(s["origin"], s["grid"], *s["cell"], max(s["size"]))
        if s["grid"] > 1 and list(img.size) != s["size"]:
            img = img.resize(tuple(s["size"]), Image.Resampling.LANCZOS)
        copy_img, info = TRANSFORMS[name](img)
        rel = f"DCIM/101MSDCF/DSC0{1000 + i}.JPG"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(encode(copy_img, "JPEG", info))
        queries[rel] = {
            "expect": "duplicate",
            "source": sid,
            "transform": name,
            "library_files": s["files"],
        }
    for i, h in enumerate(truth["held_out"]):
        img, box = render_tile(h["origin"], h["grid"], *h["cell"], rng.randint(*TILE_LONG_SIDE))
        rel = f"DCIM/101MSDCF/DSC0{2000 + i}.JPG"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(encode(img, "JPEG", {"quality": ORIGINAL_QUALITY}))
        queries[rel] = {
            "expect": "new",
            "source": photo_id(h["origin"], h["grid"], h["cell"]),
            "origin": h["origin"],
            "grid": h["grid"],
            "cell": h["cell"],
            "box": box,
        }
    doc = {"size": truth["size"], "seed": seed, "queries": queries}
    (out / "against.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: --size 20 into bench/work/quick/lookalike-20")
    ap.add_argument("--size", type=int, help=f"files in the set (tested: {SIZES})")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--against-out", type=Path, help="also write an --against query folder here")
    args = ap.parse_args()
    if args.quick:
        quick = harness.WORK / "quick" / "lookalike-20"
        shutil.rmtree(quick, ignore_errors=True)
        args.size, args.out, args.against_out = 20, quick / "set", quick / "against"
    if args.size is None or args.out is None:
        ap.error("--size and --out are required (or --quick)")
    truth = build(args.size, args.out, args.seed)
    if args.against_out:
        build_against(truth, args.against_out, args.seed)
    print(f"{args.out}: {truth['summary']}")


if __name__ == "__main__":
    main()
