"""Benchmark images from ../shared/testdata/photos, into the gitignored bench/work/perf-images/.

jpeg12mp/  4000x3000 JPEGs, q92: a Kodak photo cropped to 4:3, flipped or not, upscaled
           (bicubic) and given sensor-like noise (sigma ~3 levels), so every file is unique
png/       the originals at 768x512, each copy with its own faint noise (unique content hashes)
heic/      12-MP HEICs (pillow-heif, quality 90), fewer: x265 encoding is slow

  python bench/make_perf_images.py [--jpeg 200] [--png 200] [--heic 40] [--quick]
"""

from pathlib import Path

import harness
import numpy as np
import pillow_heif
from PIL import Image, ImageOps

OUT = harness.WORK / "perf-images"
SIZE_12MP = (4000, 3000)
NOISE_SIGMA = 3.0  # levels of 255: a clean phone photo at base ISO


def variant(src: Path, i: int, size: tuple[int, int] | None, rng) -> Image.Image:
    img = Image.open(src).convert("RGB")
    if i % 2:
        img = ImageOps.mirror(img)
    if size:
        w, h = img.size
        cw = min(w, h * size[0] // size[1])
        left = (w - cw) * ((i // 2) % 3) // 2
        img = img.crop((left, 0, left + cw, h)).resize(size, Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.int16)
    noise = noise_tile(rng)
    ty, tx = rng.integers(0, noise.shape[0] - 1), rng.integers(0, noise.shape[1] - 1)
    tiled = np.roll(noise, (ty, tx), (0, 1))
    reps = (-(-arr.shape[0] // noise.shape[0]), -(-arr.shape[1] // noise.shape[1]), 1)
    arr = arr + np.tile(tiled, reps)[: arr.shape[0], : arr.shape[1]]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


_NOISE: list = []


def noise_tile(rng) -> np.ndarray:
    """One 1024x1024 tile of Gaussian noise, rolled per image (12 MP of fresh noise is slow)."""
    if not _NOISE:
        _NOISE.append(np.round(rng.normal(0, NOISE_SIGMA, (1024, 1024, 3))).astype(np.int16))
    return _NOISE[0]


def make(kind: str, count: int) -> None:
    folder = OUT / kind
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(harness.PHOTOS.glob("*.png"))
    rng = np.random.default_rng({"jpeg12mp": 0, "png": 1, "heic": 2}[kind])
    for i in range(count):
        suffix = {"jpeg12mp": "jpg", "png": "png", "heic": "heic"}[kind]
        path = folder / f"{kind}-{i:04d}.{suffix}"
        if path.exists():
            continue
        img = variant(
            sources[i % len(sources)], i // len(sources), None if kind == "png" else SIZE_12MP, rng
        )
        tmp = path.with_name(".tmp-" + path.name)
        if kind == "jpeg12mp":
            img.save(tmp, "JPEG", quality=92)
        elif kind == "png":
            img.save(tmp, "PNG")
        else:
            pillow_heif.from_pillow(img).save(tmp, quality=90)
        tmp.rename(path)
    print(f"{folder}: {count} files")


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: --jpeg 16 --png 16 --heic 4")
    ap.add_argument("--jpeg", type=int, default=200)
    ap.add_argument("--png", type=int, default=200)
    ap.add_argument("--heic", type=int, default=40)
    args = ap.parse_args()
    if args.quick:
        args.jpeg, args.png, args.heic = 16, 16, 4
    make("jpeg12mp", args.jpeg)
    make("png", args.png)
    make("heic", args.heic)


if __name__ == "__main__":
    main()
