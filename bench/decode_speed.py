"""Decode cost per image and format: full decode vs JPEG draft vs what we ship (decode_file).

full      Image.open + load + convert RGB + the HF-style resize/crop (no draft)
draft     the same after img.draft() (libjpeg DCT-domain downscale; JPEG only)
shipped   indexer.decode.decode_file (draft, reducing_gap resize, EXIF, checks)

  python bench/decode_speed.py [--quick]
"""

import io
import statistics
import time

import harness
from make_perf_images import OUT as IMAGES
from PIL import Image

from indexer.decode import Recipe, _draft, decode_file, preprocess, to_rgb


def full(path: str, recipe: Recipe, draft: bool) -> None:
    with open(path, "rb") as f:
        img = Image.open(io.BytesIO(f.read()))
        if draft:
            _draft(img, recipe.shortest_edge)
        img.load()
        preprocess(to_rgb(img), recipe)


def plain_resize(path: str, recipe: Recipe) -> None:
    """Full decode then a plain bicubic resize (no reducing_gap), as the HF processor does."""
    img = to_rgb(Image.open(path))
    short = recipe.shortest_edge
    w, h = img.size
    size = (int(short * w / h), short) if w >= h else (short, int(short * h / w))
    img.resize(size, recipe.resample)


def webp_copies(count: int):
    folder = harness.WORK / "perf-images" / "webp"
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted((IMAGES / "jpeg12mp").glob("*.jpg"))[:count]:
        dst = folder / (src.stem + ".webp")
        if not dst.exists():
            Image.open(src).save(dst, "WEBP", quality=90)
    return sorted(folder.glob("*.webp"))[:count]


def per_image_ms(fn, files, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        for f in files:
            t = time.perf_counter()
            fn(str(f))
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 3 files per format, 1 repeat")
    args = ap.parse_args()
    n = 3 if args.quick else 8
    repeat = 1 if args.quick else 3
    recipe = Recipe()
    sets = {
        "JPEG 12 MP": sorted((IMAGES / "jpeg12mp").glob("*.jpg"))[:n],
        "PNG 768x512": sorted((IMAGES / "png").glob("*.png"))[:n],
        "HEIC 12 MP": sorted((IMAGES / "heic").glob("*.heic"))[:n],
        "WebP 12 MP": webp_copies(n),
    }
    rows, data = [], {}
    for name, files in sets.items():
        if not files:
            continue
        jpeg = name.startswith("JPEG")
        m = {
            "full_plain_resize": per_image_ms(lambda p: plain_resize(p, recipe), files, repeat),
            "full": per_image_ms(lambda p: full(p, recipe, False), files, repeat),
            "draft": per_image_ms(lambda p: full(p, recipe, True), files, repeat) if jpeg else None,
            "shipped": per_image_ms(lambda p: decode_file(p, recipe, None), files, repeat),
        }
        data[name] = {"files": len(files), "ms": m}
        rows.append(
            [
                name,
                len(files),
                m["full_plain_resize"],
                m["full"],
                "-" if m["draft"] is None else m["draft"],
                m["shipped"],
                m["full_plain_resize"] / m["shipped"],
            ]
        )
    md = (
        "Milliseconds per image to the model's 224x224 input, one core, median over files x "
        "repeats. *full + plain resize*: decode everything, one bicubic resize (the HF "
        "processor's way); *full*: with Pillow's reducing_gap box pre-shrink; *draft*: libjpeg "
        "DCT-domain downscale first; *shipped*: `indexer.decode.decode_file`.\n\n"
        + harness.table(
            [
                "format",
                "files",
                "full + plain resize ms",
                "full ms",
                "draft ms",
                "shipped ms",
                "speed-up",
            ],
            rows,
        )
    )
    harness.write_results("perf_decode_speed", md, {"quick": args.quick, "formats": data})


if __name__ == "__main__":
    main()
