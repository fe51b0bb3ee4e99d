"""A planted set for outlier detection: real scene photos plus a small group of odd images made
here with PIL (text documents, charts, UI-like screenshots, flat-colour graphics).

    python bench/curate_planted.py OUT [--odd 8] [--seed 0] [--quick]

Photos: the 24 Kodak images, the 37 of photos-more, the UKBench base images of imagededup, and
the top-left quarter of 12 Kodak images (another view of a scene): 82 real photos, read from
../shared/testdata and written under OUT/photos (PNG/JPEG as they come). The odd group goes to
OUT/odd. OUT/truth.json lists both. Nothing is downloaded.
"""

import json
import random
import shutil
from pathlib import Path

import harness
from PIL import Image, ImageDraw, ImageFont

SHARED = harness.TESTDATA
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
WORDS = (
    "invoice total amount due payment account quarterly report revenue growth customer "
    "meeting agenda project status risk budget schedule deliverable review approved draft"
).split()


def _font(size: int, bold: bool = False):
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(FONT_DIR / name), size)
    except OSError:
        return ImageFont.load_default()


def document(rng: random.Random) -> Image.Image:
    """A scanned-looking page of text: title, paragraphs, a table rule."""
    img = Image.new("RGB", (620, 820), (250, 250, 246))
    d = ImageDraw.Draw(img)
    d.text((48, 40), " ".join(rng.choices(WORDS, k=3)).title(), (20, 20, 20), _font(30, True))
    y = 100
    for _ in range(rng.randint(14, 20)):
        line = " ".join(rng.choices(WORDS, k=rng.randint(6, 9)))
        d.text((48, y), line, (40, 40, 40), _font(17))
        y += 30
        if rng.random() < 0.15:
            d.line((48, y + 4, 572, y + 4), (90, 90, 90), 2)
            y += 16
    return img


def chart(rng: random.Random) -> Image.Image:
    """A bar or line chart with axes, ticks and a title."""
    img = Image.new("RGB", (800, 560), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((60, 20), "Quarterly " + rng.choice(WORDS), (0, 0, 0), _font(24, True))
    d.line((80, 480, 760, 480), (0, 0, 0), 2)
    d.line((80, 80, 80, 480), (0, 0, 0), 2)
    values = [rng.randint(40, 380) for _ in range(rng.randint(6, 10))]
    colour = rng.choice([(52, 101, 164), (204, 0, 0), (78, 154, 6), (245, 121, 0)])
    step = 660 // len(values)
    if rng.random() < 0.5:
        for i, v in enumerate(values):
            d.rectangle((90 + i * step, 480 - v, 90 + i * step + step * 2 // 3, 480), colour)
    else:
        points = [(100 + i * step, 480 - v) for i, v in enumerate(values)]
        d.line(points, colour, 4)
    for i in range(5):
        d.text((30, 470 - i * 90), str(i * 25), (0, 0, 0), _font(14))
    return img


def screenshot(rng: random.Random) -> Image.Image:
    """A desktop application window: title bar, sidebar, toolbar, list rows, a button."""
    img = Image.new("RGB", (1280, 800), (236, 236, 236))
    d = ImageDraw.Draw(img)
    accent = rng.choice([(0, 120, 215), (98, 0, 238), (16, 124, 16), (232, 17, 35)])
    d.rectangle((0, 0, 1280, 36), (50, 50, 54))
    d.text((16, 8), "App - " + rng.choice(WORDS), (230, 230, 230), _font(16))
    d.rectangle((0, 36, 240, 800), (245, 245, 247))
    for i in range(8):
        d.text((24, 60 + i * 40), rng.choice(WORDS).title(), (60, 60, 60), _font(16))
    d.rectangle((240, 36, 1280, 84), (255, 255, 255))
    for i in range(rng.randint(8, 14)):
        y = 100 + i * 44
        d.rectangle((260, y, 1260, y + 38), (255, 255, 255) if i % 2 else (248, 248, 250))
        d.text((276, y + 10), " ".join(rng.choices(WORDS, k=4)), (30, 30, 30), _font(15))
    d.rounded_rectangle((1100, 740, 1260, 780), 6, accent)
    d.text((1140, 750), "Save", (255, 255, 255), _font(16, True))
    return img


def flat_graphic(rng: random.Random) -> Image.Image:
    """A flat-colour logo-like graphic: a background, two shapes, a word."""
    bg = tuple(rng.randint(0, 255) for _ in range(3))
    img = Image.new("RGB", (600, 600), bg)
    d = ImageDraw.Draw(img)
    fg = tuple(255 - c for c in bg)
    d.ellipse((150, 100, 450, 400), fg)
    d.polygon([(300, 150), (400, 350), (200, 350)], bg)
    d.text((170, 450), rng.choice(WORDS).upper(), fg, _font(48, True))
    return img


MAKERS = (document, chart, screenshot, flat_graphic)


def real_photos() -> list[Path]:
    photos = sorted((SHARED / "photos").glob("*.png")) + sorted((SHARED / "photos-more").iterdir())
    ukbench = sorted((SHARED / "imagededup" / "base_images").glob("*.jpg"))
    return photos + [p for p in ukbench if p.is_file()]


def make(out: Path, odd: int = 8, seed: int = 0) -> dict:
    """Write the set under out/; the truth: {"photos": [...], "odd": [...]} (absolute paths)."""
    rng = random.Random(seed)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    (out / "odd").mkdir(parents=True, exist_ok=True)
    photos = []
    for src in real_photos():
        dst = out / "photos" / src.name
        shutil.copy2(src, dst)
        photos.append(dst)
    for src in sorted((SHARED / "photos").glob("*.png"))[:12]:  # another view of a scene
        with Image.open(src) as img:
            quarter = img.convert("RGB").crop((0, 0, img.width // 2, img.height // 2))
        dst = out / "photos" / f"{src.stem}-quarter.jpg"
        quarter.save(dst, quality=92)
        photos.append(dst)
    planted = []
    for i in range(odd):
        img = MAKERS[i % len(MAKERS)](rng)
        dst = out / "odd" / f"{MAKERS[i % len(MAKERS)].__name__}-{i:02d}.png"
        img.save(dst)
        planted.append(dst)
    truth = {
        "photos": [str(p.resolve()) for p in photos],
        "odd": [str(p.resolve()) for p in planted],
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 4 odd images")
    ap.add_argument("out", type=Path)
    ap.add_argument("--odd", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    truth = make(args.out, 4 if args.quick else args.odd, args.seed)
    print(f"{len(truth['photos'])} photos, {len(truth['odd'])} odd images under {args.out}")


if __name__ == "__main__":
    main()
