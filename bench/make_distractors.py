"""Generate seeded, photo-like distractor images: distinct pictures, none a copy of another.

usage: python bench/make_distractors.py [--count 5200] [--seed 0] [--out bench/work/distractors-N]
           [--procs 2]

Issue 23's proof "the near-duplicate set inside a library of more than 5,000 images" needs
thousands of pictures that are copies of nothing: every real photo on hand is already a source
of the near-duplicate set, so these are procedural scenes, each from its own random stream:

* landscape: sky gradient (day, sunset, dusk, overcast), fractal clouds, 2-5 fractal ridge
  layers with atmospheric perspective, sometimes water with a rippled reflection, a sun glow;
* shapes: lit 3-D-looking spheres (Lambert + specular, soft floor shadows) and shaded boxes on
  a floor/wall scene;
* texture: fractal noise through a colour palette, marble, wood rings, Worley cells;
* composition: random-colour rectangles, ellipses, polygons and strokes on a coloured ground;
* page: text-like documents (paragraphs of pseudo-words, headings, sometimes a figure block);
* dark: near-black scenes (a dim landscape or shapes at 3-10 % brightness, sensor noise);
* flat: near-flat two-colour gradients with vignette and grain.

About a quarter of the images come in *series* of 3-6 that share a kind and its palette and
layout parameters but draw every noise field, shape and word anew: realistic look-alikes
(same style, different picture), never copies. Sizes and aspect ratios vary (long side
400-1800 px; 4:3, 3:2, 16:9, 1:1 and portrait); ~88 % JPEG (quality 75-95), the rest PNG.

Check that no two are copies: for every pair, the correlation of 64x64 *detail* thumbnails
(the Laplacian of a grey thumbnail, zero-mean, unit-norm: the fine structure a copy keeps and two
distinct pictures do not share) and of plain 32x32 grey thumbnails (as
make_neardup_set.natural_duplicates does; sky-over-ground scenes alone reach ~0.9 there). An
image reaching MAX_DETAIL_CORR or MAX_CORR with another is redrawn from a new stream. The
result goes to OUT/manifest.json (per file: kind, series, size, format, stream) with the
highest pair correlations left.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import time
from pathlib import Path

import harness
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

GENERATOR_VERSION = 1
THUMB = 32  # px; grey thumbnails for the pairwise check
DETAIL = 64  # px; detail thumbnails (Laplacian of the grey thumbnail): what a copy keeps
MAX_DETAIL_CORR = 0.5  # distinct pictures stay near 0, copies (even re-toned, 5 % crops) above
MAX_CORR = 0.97  # plain grey thumbnails: only near-identical smooth pictures reach it
KINDS = {  # kind -> share of the images
    "landscape": 0.30,
    "shapes": 0.20,
    "texture": 0.15,
    "composition": 0.14,
    "page": 0.12,
    "dark": 0.04,
    "flat": 0.05,
}
ASPECTS = [(4, 3), (3, 2), (16, 9), (1, 1), (3, 4), (2, 3), (9, 16), (5, 4)]
SERIES_SHARE = 0.25
PNG_SHARE = 0.12
WORK_SIDE = 384  # long side of the working canvas of noise-based scenes

Rng = np.random.Generator


# ---------------------------------------------------------------------------- primitives


def fractal(rng: Rng, h: int, w: int, beta: float = 2.0) -> np.ndarray:
    """1/f^beta noise on an h x w grid, scaled to 0..1."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(h, w))
    field -= field.min()
    return (field / (field.max() + 1e-9)).astype(np.float32)


def fractal_1d(rng: Rng, n: int, beta: float = 2.0) -> np.ndarray:
    """1/f^beta noise of length n, zero mean, unit peak."""
    f = np.fft.rfftfreq(n)
    f[0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spectrum[0] = 0
    line = np.fft.irfft(spectrum, n=n)
    return (line / (np.abs(line).max() + 1e-9)).astype(np.float32)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all 0..1) as float RGB 0..1."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array(
        [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float32
    )


def palette(rng: Rng, n: int) -> list[np.ndarray]:
    """n colours around a random base hue (analogous, complementary or free)."""
    base = rng.random()
    mode = rng.integers(3)
    out = []
    for k in range(n):
        if mode == 0:
            h = base + rng.normal(0, 0.06)
        elif mode == 1:
            h = base + 0.5 * (k % 2) + rng.normal(0, 0.04)
        else:
            h = rng.random()
        out.append(hsv(h % 1.0, rng.uniform(0.2, 0.95), rng.uniform(0.25, 1.0)))
    return out


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend of colours a and b by t (h x w) -> h x w x 3."""
    return a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]


def work_size(size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the working canvas for an output size (w, h)."""
    w, h = size
    scale = WORK_SIDE / max(w, h)
    return max(32, round(h * scale)), max(32, round(w * scale))


def to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8))


# ---------------------------------------------------------------------------- scenes


def sky(rng: Rng, style: dict, h: int, w: int) -> np.ndarray:
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None].repeat(w, 1) ** style["sky_gamma"]
    img = lerp(style["zenith"], style["horizon"], t)
    if style["clouds"] > 0:
        c = fractal(rng, h, w * 2, 2.2)[:, ::2]
        c = np.clip((c - (1 - style["clouds"])) * 3, 0, 1) * (1 - t) ** 0.5
        img = img * (1 - c[..., None]) + style["cloud_colour"][None, None, :] * c[..., None]
    if style["sun"]:
        cy, cx = rng.uniform(0.1, 0.6) * h, rng.uniform(0.1, 0.9) * w
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / max(h, w)
        glow = np.exp(-d / rng.uniform(0.03, 0.12))[..., None]
        img = img + glow * np.array([1.0, 0.9, 0.7], np.float32) * 0.8
    return img


def landscape_style(rng: Rng) -> dict:
    mood = rng.integers(4)
    if mood == 0:  # day
        zenith = hsv(rng.uniform(0.55, 0.64), rng.uniform(0.5, 0.9), rng.uniform(0.6, 0.95))
        horizon = hsv(rng.uniform(0.52, 0.6), rng.uniform(0.1, 0.35), rng.uniform(0.85, 1.0))
    elif mood == 1:  # sunset
        zenith = hsv(rng.uniform(0.6, 0.75), rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.6))
        horizon = hsv(rng.uniform(0.0, 0.12), rng.uniform(0.5, 0.9), rng.uniform(0.8, 1.0))
    elif mood == 2:  # overcast
        v = rng.uniform(0.55, 0.85)
        zenith = hsv(rng.random(), rng.uniform(0, 0.1), v)
        horizon = hsv(rng.random(), rng.uniform(0, 0.1), min(1.0, v + 0.1))
    else:  # dusk
        zenith = hsv(rng.uniform(0.65, 0.8), rng.uniform(0.4, 0.8), rng.uniform(0.15, 0.35))
        horizon = hsv(rng.uniform(0.8, 1.0), rng.uniform(0.3, 0.7), rng.uniform(0.5, 0.8))
    ground_hue = rng.choice([rng.uniform(0.2, 0.4), rng.uniform(0.05, 0.12), rng.random()])
    return {
        "zenith": zenith,
        "horizon": horizon,
        "sky_gamma": rng.uniform(0.5, 2.0),
        "clouds": rng.uniform(0, 0.6) if rng.random() < 0.7 else 0.0,
        "cloud_colour": hsv(rng.random(), rng.uniform(0, 0.15), rng.uniform(0.75, 1.0)),
        "sun": bool(rng.random() < 0.3),
        "layers": int(rng.integers(2, 6)),
        "horizon_y": rng.uniform(0.3, 0.7),
        "ground": hsv(ground_hue, rng.uniform(0.3, 0.8), rng.uniform(0.15, 0.55)),
        "rough": rng.uniform(1.6, 2.4),
        "water": bool(rng.random() < 0.3),
    }


def landscape(rng: Rng, style: dict, h: int, w: int) -> np.ndarray:
    img = sky(rng, style, h, w)
    yy = np.arange(h, dtype=np.float32)[:, None]
    n = style["layers"]
    water_y = h * (style["horizon_y"] + 0.15) if style["water"] else h + 1
    for k in range(n):
        far = 1 - k / max(1, n - 1)  # 1 = farthest
        base = h * (style["horizon_y"] - 0.25 * far + rng.uniform(-0.05, 0.05))
        amp = h * rng.uniform(0.05, 0.25) * (0.5 + far)
        ridge = base - amp * np.abs(fractal_1d(rng, w, style["rough"]))
        mask = (yy >= ridge[None, :]).astype(np.float32)
        tex = fractal(rng, h, w, 1.8)
        colour = style["ground"] * rng.uniform(0.7, 1.3)
        colour = np.clip(colour * (1 - 0.7 * far) + style["horizon"] * 0.7 * far, 0, 1)
        layer = colour[None, None, :] * (0.75 + 0.5 * tex[..., None])
        img = img * (1 - mask[..., None]) + layer * mask[..., None]
    if style["water"]:
        wy = int(min(h - 2, water_y))
        above = img[max(0, 2 * wy - h) : wy][::-1]
        refl = np.zeros_like(img[wy:])
        refl[: len(above)] = above
        ripple = fractal(rng, h - wy, w, 2.6)[..., None]
        tint = hsv(rng.uniform(0.5, 0.62), 0.5, 0.4)
        img[wy:] = refl * (0.55 + 0.3 * ripple) + tint[None, None, :] * 0.25
    return img


def shapes_style(rng: Rng) -> dict:
    return {
        "wall": hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.4, 0.95)),
        "floor": hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.2, 0.8)),
        "horizon_y": rng.uniform(0.35, 0.65),
        "light": rng.normal(size=3) * np.array([1, 1, 0.3]) + np.array([0, 0, 1.2]),
        "colours": palette(rng, 6),
        "count": int(rng.integers(1, 9)),
        "boxes": rng.uniform(0, 0.6),
    }


def shapes(rng: Rng, style: dict, h: int, w: int) -> np.ndarray:
    hy = int(h * (style["horizon_y"] + rng.uniform(-0.05, 0.05)))
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None].repeat(w, 1)
    img = lerp(style["wall"] * 1.1, style["wall"] * 0.8, t)
    img[hy:] = lerp(
        style["floor"] * 0.7, style["floor"] * 1.1, t[hy:] * 0 + np.linspace(0, 1, h - hy)[:, None]
    )
    img = img * (0.9 + 0.2 * fractal(rng, h, w, 1.5)[..., None])
    light = style["light"] / np.linalg.norm(style["light"])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    items = []
    for _ in range(style["count"] + int(rng.integers(0, 3))):
        r = rng.uniform(0.05, 0.22) * min(h, w)
        cx = rng.uniform(0.05, 0.95) * w
        cy = hy + rng.uniform(0.0, 1.0) * (h - hy) - r * 0.6
        items.append((cy + r, cx, cy, r))
    for _, cx, cy, r in sorted(items):  # far (higher) first
        colour = style["colours"][int(rng.integers(len(style["colours"])))] * rng.uniform(0.8, 1.2)
        # shadow on the floor
        sd = ((xx - cx - light[0] * r * 0.6) / (1.3 * r)) ** 2 + ((yy - cy - r) / (0.35 * r)) ** 2
        img *= 1 - 0.45 * np.exp(-sd * 2)[..., None]
        if rng.random() < style["boxes"]:
            img = box(img, cx, cy, r, colour, light, rng)
            continue
        dx, dy = (xx - cx) / r, (yy - cy) / r
        d2 = dx * dx + dy * dy
        inside = d2 < 1
        nz = np.sqrt(np.clip(1 - d2, 0, 1))
        lam = np.clip(dx * light[0] - dy * light[1] + nz * light[2], 0, 1)
        spec = lam ** rng.uniform(20, 80) * rng.uniform(0.2, 0.9)
        shade = colour[None, None, :] * (0.15 + 0.85 * lam[..., None]) + spec[..., None]
        img = np.where(inside[..., None], shade, img)
    return img


def box(
    img: np.ndarray, cx: float, cy: float, r: float, colour: np.ndarray, light: np.ndarray, rng: Rng
) -> np.ndarray:
    """A shaded box (front, top and side faces) drawn with PIL polygons."""
    h, w = img.shape[:2]
    pil = to_image(img)
    draw = ImageDraw.Draw(pil)
    s, depth = r * 1.4, r * rng.uniform(0.3, 0.8)
    x0, y0, x1, y1 = cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2 + r * 0.6
    side = 1 if light[0] < 0 else -1
    faces = [
        ([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], 0.55 + 0.4 * max(0.0, light[2])),
        (
            [(x0, y0), (x1, y0), (x1 + side * depth, y0 - depth), (x0 + side * depth, y0 - depth)],
            0.95,
        ),
        (
            [
                (x1 if side > 0 else x0, y0),
                (x1 + side * depth if side > 0 else x0 + side * depth, y0 - depth),
                (x1 + side * depth if side > 0 else x0 + side * depth, y1 - depth),
                (x1 if side > 0 else x0, y1),
            ],
            0.35,
        ),
    ]
    for poly, k in faces:
        c = tuple(int(v) for v in np.clip(colour * k * 255, 0, 255))
        draw.polygon(poly, fill=c)
    return np.asarray(pil, np.float32) / 255


def texture_style(rng: Rng) -> dict:
    return {
        "variant": int(rng.integers(4)),
        "colours": palette(rng, int(rng.integers(2, 5))),
        "beta": rng.uniform(1.4, 3.0),
        "freq": rng.uniform(4, 30),
        "turb": rng.uniform(1, 8),
    }


def texture(rng: Rng, style: dict, h: int, w: int) -> np.ndarray:
    v = style["variant"]
    n = fractal(rng, h, w, style["beta"])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    if v == 1:  # marble
        angle = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin(
            (xx * np.cos(angle) + yy * np.sin(angle)) * style["freq"] * 2 * np.pi
            + style["turb"] * n
        )
    elif v == 2:  # wood rings
        cx, cy = rng.uniform(-0.5, 1.5), rng.uniform(-0.5, 1.5)
        rad = np.sqrt((xx - cx) ** 2 + ((yy - cy) * rng.uniform(0.2, 1)) ** 2)
        t = 0.5 + 0.5 * np.sin(rad * style["freq"] * 6 + style["turb"] * 0.5 * n)
    elif v == 3:  # Worley cells
        k = int(rng.integers(8, 60))
        pts = rng.random((k, 2)).astype(np.float32) * np.array([h, w]) / max(h, w)
        d = np.full((h, w), 9.0, np.float32)
        d2 = np.full((h, w), 9.0, np.float32)
        for py, px in pts:
            dist = np.sqrt((yy - py) ** 2 + (xx - px) ** 2)
            d2 = np.minimum(d2, np.maximum(d, dist))
            d = np.minimum(d, dist)
        t = np.clip((d2 - d) * rng.uniform(4, 15), 0, 1) * 0.8 + 0.2 * n
    else:
        t = n
    cols = style["colours"]
    stops = np.linspace(0, 1, len(cols))
    out = np.empty((h, w, 3), np.float32)
    for ch in range(3):
        out[..., ch] = np.interp(t, stops, [c[ch] for c in cols])
    return out * (0.85 + 0.3 * fractal(rng, h, w, 2.5)[..., None])


def composition_style(rng: Rng) -> dict:
    return {
        "ground": hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.1, 1.0)),
        "colours": palette(rng, int(rng.integers(3, 7))),
        "count": int(rng.integers(4, 40)),
        "weights": rng.dirichlet(np.ones(4)),
        "blur": rng.uniform(0, 2.5) if rng.random() < 0.4 else 0.0,
    }


def composition(rng: Rng, style: dict, size: tuple[int, int]) -> Image.Image:
    w, h = size
    ground = tuple(int(v * 255) for v in style["ground"])
    img = Image.new("RGB", (w, h), ground)
    draw = ImageDraw.Draw(img)
    for _ in range(style["count"]):
        c = style["colours"][int(rng.integers(len(style["colours"])))] * rng.uniform(0.85, 1.15)
        fill = tuple(int(v) for v in np.clip(c * 255, 0, 255))
        kind = rng.choice(4, p=style["weights"])
        x0, y0 = rng.uniform(-0.1, 1.0) * w, rng.uniform(-0.1, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.03, 0.5) * w, y0 + rng.uniform(0.03, 0.5) * h
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == 2:
            pts = [
                (rng.uniform(x0, x1), rng.uniform(y0, y1)) for _ in range(int(rng.integers(3, 7)))
            ]
            draw.polygon(pts, fill=fill)
        else:
            draw.line((x0, y0, x1, y1), fill=fill, width=max(1, int(rng.uniform(0.003, 0.03) * w)))
    if style["blur"]:
        img = img.filter(ImageFilter.GaussianBlur(style["blur"] * max(w, h) / 500))
    return img


WORDS_CHARS = "abcdefghijklmnopqrstuvwxyzeeeaaoiinnsstt"


def page_style(rng: Rng) -> dict:
    tone = rng.uniform(0.9, 1.0)
    return {
        "paper": np.array([tone, tone * rng.uniform(0.97, 1.0), tone * rng.uniform(0.9, 1.0)]),
        "ink": rng.uniform(0.0, 0.3),
        "columns": int(rng.choice([1, 1, 1, 2, 3])),
        "font": int(rng.integers(11, 22)),
        "figure": rng.random() < 0.3,
        "accent": hsv(rng.random(), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.7)),
    }


def words(rng: Rng, n: int) -> str:
    return " ".join(
        "".join(
            WORDS_CHARS[int(i)] for i in rng.integers(0, len(WORDS_CHARS), int(rng.integers(1, 11)))
        )
        for _ in range(n)
    )


def page(rng: Rng, style: dict, size: tuple[int, int]) -> Image.Image:
    w, h = size
    paper = tuple(int(v * 255) for v in style["paper"])
    img = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(img)
    px = max(8, round(style["font"] * w / 900))
    font = ImageFont.load_default(size=px)
    head = ImageFont.load_default(size=px * 2)
    ink = (int(style["ink"] * 255),) * 3
    accent = tuple(int(v * 255) for v in style["accent"])
    margin = int(w * rng.uniform(0.06, 0.12))
    y = int(h * rng.uniform(0.05, 0.1))
    draw.text((margin, y), words(rng, int(rng.integers(2, 6))).title(), font=head, fill=accent)
    y += px * 3
    cols = style["columns"]
    gap = margin // 2
    col_w = (w - 2 * margin - (cols - 1) * gap) // cols
    chars_per_line = max(8, int(col_w / (px * 0.55)))
    for c in range(cols):
        yy = y
        x = margin + c * (col_w + gap)
        if style["figure"] and c == 0 and rng.random() < 0.7:
            fh = int(h * rng.uniform(0.15, 0.3))
            fig = to_image(texture(rng, texture_style(rng), 64, 64)).resize((col_w, fh))
            img.paste(fig, (x, yy))
            yy += fh + px
        while yy < h - margin - px:
            if rng.random() < 0.08:
                draw.text((x, yy), words(rng, int(rng.integers(1, 5))), font=font, fill=accent)
                yy += int(px * 1.8)
                continue
            text = words(rng, 30)[: int(chars_per_line * rng.uniform(0.6, 1.0))]
            draw.text((x, yy), text, font=font, fill=ink)
            yy += int(px * rng.uniform(1.3, 1.6))
            if rng.random() < 0.12:
                yy += px
    return img


def flat(rng: Rng, style: dict, h: int, w: int) -> np.ndarray:
    a = style["colour"]
    b = np.clip(a + rng.normal(0, 0.06, 3), 0, 1).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    t = np.clip((xx * np.cos(angle) + yy * np.sin(angle)) + 0.5, 0, 1)
    img = lerp(a, b, t)
    vig = 1 - rng.uniform(0.05, 0.4) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2
    return img * vig[..., None] * (0.97 + 0.06 * fractal(rng, h, w, 2.0)[..., None])


# ---------------------------------------------------------------------------- one image


def style_for(kind: str, rng: Rng) -> dict:
    if kind == "landscape":
        return landscape_style(rng)
    if kind == "shapes":
        return shapes_style(rng)
    if kind == "texture":
        return texture_style(rng)
    if kind == "composition":
        return composition_style(rng)
    if kind == "page":
        return page_style(rng)
    if kind == "dark":
        inner = "landscape" if rng.random() < 0.6 else "shapes"
        return {"inner": inner, "style": style_for(inner, rng), "level": rng.uniform(0.03, 0.10)}
    return {"colour": hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.1, 0.95))}


def render(kind: str, style: dict, rng: Rng, size: tuple[int, int]) -> Image.Image:
    """The picture at its output size (w, h), RGB."""
    if kind == "composition":
        return composition(rng, style, size)
    if kind == "page":
        return page(rng, style, size)
    h, w = work_size(size)
    if kind == "landscape":
        arr = landscape(rng, style, h, w)
    elif kind == "shapes":
        arr = shapes(rng, style, h, w)
    elif kind == "texture":
        arr = texture(rng, style, h, w)
    elif kind == "dark":
        inner = landscape if style["inner"] == "landscape" else shapes
        arr = inner(rng, style["style"], h, w) * style["level"]
    else:
        arr = flat(rng, style, h, w)
    img = to_image(arr).resize(size, Image.Resampling.BICUBIC)
    # sensor-like grain at the output size (stronger in the dark)
    sigma = 0.012 if kind != "dark" else 0.008
    grain = rng.normal(0, sigma * 255, (size[1], size[0], 1)).astype(np.float32)
    out = np.asarray(img, np.float32) + grain
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8))


def plan(count: int, seed: int) -> list[dict]:
    """What each image is: kind, series (shared style), size, format, its own stream number."""
    rng = np.random.default_rng([seed, 0])
    kinds = list(KINDS)
    shares = np.array([KINDS[k] for k in kinds])
    jobs: list[dict] = []
    series = 0
    while len(jobs) < count:
        kind = kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))]
        n = int(rng.integers(3, 7)) if rng.random() < SERIES_SHARE / 4 else 1
        series += 1
        aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
        for _ in range(min(n, count - len(jobs))):
            if n == 1 or rng.random() < 0.3:
                aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
            long = (
                int(rng.uniform(400, 1800)) if rng.random() < 0.85 else int(rng.uniform(1800, 2600))
            )
            if kind == "page":
                aspect = (17, 22) if rng.random() < 0.8 else (22, 17)
            a, b = aspect
            size = (
                (long, max(16, round(long * b / a)))
                if a >= b
                else (max(16, round(long * a / b)), long)
            )
            fmt = "png" if rng.random() < PNG_SHARE else "jpg"
            if fmt == "png" and max(size) > 1200:
                size = (size[0] * 1000 // max(size), size[1] * 1000 // max(size))
            jobs.append(
                {
                    "index": len(jobs),
                    "kind": kind,
                    "series": series if n > 1 else None,
                    "series_seed": series,
                    "size": size,
                    "format": fmt,
                    "quality": int(rng.integers(75, 96)),
                    "stream": 0,
                }
            )
    return jobs


def make(job: dict, seed: int) -> tuple[bytes, np.ndarray]:
    """Encoded file and grey thumbnail of one planned image."""
    style_rng = np.random.default_rng([seed, 1, job["series_seed"]])
    style = style_for(job["kind"], style_rng)
    rng = np.random.default_rng([seed, 2, job["index"], job["stream"]])
    img = render(job["kind"], style, rng, tuple(job["size"]))
    buf = io.BytesIO()
    if job["format"] == "png":
        img.save(buf, "PNG", compress_level=4)
    else:
        img.save(buf, "JPEG", quality=job["quality"])
    return buf.getvalue(), fingerprint(img)


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64).ravel()
    x -= x.mean()
    return (x / (np.linalg.norm(x) + 1e-9)).astype(np.float32)


def fingerprint(img: Image.Image) -> np.ndarray:
    """[32x32 grey thumbnail | 64x64 detail thumbnail], each zero-mean and unit-norm."""
    grey = img.convert("L")
    small = np.asarray(grey.resize((THUMB, THUMB), Image.Resampling.BOX), np.float64)
    big = np.asarray(grey.resize((DETAIL, DETAIL), Image.Resampling.BOX), np.float64)
    lap = 4 * big[1:-1, 1:-1] - big[:-2, 1:-1] - big[2:, 1:-1] - big[1:-1, :-2] - big[1:-1, 2:]
    return np.concatenate([unit(small), unit(lap)])


def file_name(job: dict) -> str:
    return f"d{job['index']:05d}_{job['kind']}.{job['format']}"


def _work(args: tuple[dict, int, str]) -> tuple[int, np.ndarray]:
    job, seed, out = args
    data, thumb = make(job, seed)
    (Path(out) / file_name(job)).write_bytes(data)
    return job["index"], thumb


def generate(jobs: list[dict], seed: int, out: Path, procs: int) -> np.ndarray:
    thumbs = np.zeros((len(jobs), THUMB * THUMB + (DETAIL - 2) ** 2), np.float32)
    tasks = [(j, seed, str(out)) for j in jobs]
    if procs > 1:
        with multiprocessing.Pool(procs) as pool:
            for i, t in pool.imap_unordered(_work, tasks, chunksize=8):
                thumbs[i] = t
    else:
        for task in tasks:
            i, t = _work(task)
            thumbs[i] = t
    return thumbs


def too_close(thumbs: np.ndarray) -> tuple[list[int], dict]:
    """Images too like an earlier one (detail or plain thumbnails); the closest pairs of each."""
    found: set[int] = set()
    report = {}
    for name, cols, limit in (
        ("grey", slice(0, THUMB * THUMB), MAX_CORR),
        ("detail", slice(THUMB * THUMB, None), MAX_DETAIL_CORR),
    ):
        part = np.ascontiguousarray(thumbs[:, cols])
        upper = np.triu(part @ part.T, 1)
        _, j = np.nonzero(upper >= limit)
        found |= {int(x) for x in j}
        top = np.argsort(upper, axis=None)[-5:][::-1]
        report[name] = {
            "limit": limit,
            "highest": round(float(upper.max()), 4),
            "pairs_at_limit": int(np.sum(upper >= limit)),
            "top": [
                [int(a), int(b), round(float(upper[a, b]), 4)]
                for a, b in zip(*np.unravel_index(top, upper.shape), strict=True)
            ],
        }
        del upper
    return sorted(found), report


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 40 into bench/work/quick/distractors-40")
    ap.add_argument("--count", type=int, default=5200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="default: bench/work/distractors-COUNT")
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.count, args.out = 40, harness.WORK / "quick" / "distractors-40"
    out = (args.out or harness.WORK / f"distractors-{args.count}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = plan(args.count, args.seed)
    thumbs = generate(jobs, args.seed, out, args.procs)
    redrawn: list[int] = []
    for _ in range(5):
        bad, _ = too_close(thumbs)
        if not bad:
            break
        for b in bad:
            (out / file_name(jobs[b])).unlink(missing_ok=True)
            jobs[b]["stream"] += 1
            redrawn.append(b)
        for b in bad:
            thumbs[b] = _work((jobs[b], args.seed, str(out)))[1]
    bad, check = too_close(thumbs)
    for part in check.values():
        part["top"] = [[file_name(jobs[a]), file_name(jobs[b]), r] for a, b, r in part["top"]]
    manifest = {
        "generator": "bench/make_distractors.py",
        "generator_version": GENERATOR_VERSION,
        "seed": args.seed,
        "count": len(jobs),
        "kinds": {k: sum(j["kind"] == k for j in jobs) for k in KINDS},
        "formats": {f: sum(j["format"] == f for j in jobs) for f in ("jpg", "png")},
        "in_series": sum(j["series"] is not None for j in jobs),
        "series": len({j["series"] for j in jobs if j["series"] is not None}),
        "check": {
            "grey_thumb_px": THUMB,
            "detail_thumb_px": DETAIL,
            "redrawn": [file_name(jobs[b]) for b in redrawn],
            "still_too_close": [file_name(jobs[b]) for b in bad],
            **check,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "files": {
            file_name(j): {k: j[k] for k in ("kind", "series", "size", "format", "stream")}
            for j in jobs
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(
        f"{len(jobs)} distractors in {out} ({manifest['seconds']} s): {manifest['kinds']}, "
        f"{manifest['formats']}, {manifest['in_series']} in {manifest['series']} series; "
        f"highest corr grey {check['grey']['highest']:.3f} "
        f"detail {check['detail']['highest']:.3f}, "
        f"redrawn {len(redrawn)}, still too close {len(bad)}"
    )


if __name__ == "__main__":
    main()
