"""HEICs made like a phone's from the shared real photos, into the gitignored bench/work/.

heic-iphone/  4032x3024, a 512x512-tiled grid primary image and a 320x240 thumbnail, as an iPhone
              writes them (x265 preset "fast", quality 80; sensor-like noise as make_perf_images)
heic-thumbs/  the photos at their own size (768x512) with 320 and 512 px thumbnails: the
              thumbnail paths of both recipes (196 px --fast, 256 px default), for the cosine study

  python bench/heic_images.py [--iphone 16] [--quick]
"""

from pathlib import Path

import harness
import numpy as np
import pillow_heif
from make_perf_images import variant
from PIL import Image

OUT = harness.WORK / "heic-images"
IPHONE_SIZE = (4032, 3024)
IPHONE_TILE = 512
IPHONE_THUMB = 320  # the longer side of an iPhone's thumbnail (320x240)
ENCODER = {"preset": "fast"}  # x265's default preset takes ~40 s per 12-MP grid image here


def save(img: Image.Image, path: Path, thumbnails: list[int], tile: int = 0) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    heif = pillow_heif.from_pillow(img)
    heif.save(tmp, quality=80, thumbnails=thumbnails, tile_size=tile, enc_params=ENCODER)
    tmp.rename(path)


def make_iphone(count: int) -> Path:
    folder = OUT / "heic-iphone"
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(harness.PHOTOS.glob("*.png"))
    rng = np.random.default_rng(3)
    for i in range(count):
        path = folder / f"iphone-{i:04d}.heic"
        if not path.exists():
            img = variant(sources[i % len(sources)], i // len(sources), IPHONE_SIZE, rng)
            save(img, path, [IPHONE_THUMB], IPHONE_TILE)
    return folder


def make_thumbs() -> Path:
    folder = OUT / "heic-thumbs"
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted(harness.PHOTOS.glob("*.png")):
        path = folder / f"{src.stem}.heic"
        if not path.exists():
            save(Image.open(src).convert("RGB"), path, [320, 512])
    return folder


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 2 iPhone-like files")
    ap.add_argument("--iphone", type=int, default=16)
    args = ap.parse_args()
    print(make_thumbs(), make_iphone(2 if args.quick else args.iphone))


if __name__ == "__main__":
    main()
