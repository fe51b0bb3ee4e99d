"""Write a corpus of hostile and odd image files into a directory, with a manifest of what
dinosearch should make of each one (never committed: generated from one real photo).

    python scripts/make_hostile_corpus.py OUT_DIR [--source PHOTO]

OUT_DIR/manifest.json maps each file name (as os.fsencode(...).hex() for the odd ones) to
{"expect": "ok" | "failed" | "walk_error", "what": description}. "ok": indexes (odd but good);
"failed": reported with a reason; "walk_error": reported by the walk (loops, dangling links).
"""

import argparse
import io
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image

DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared/testdata/photos/kodim23.png"
TRUNCATE_AT = (1, 10, 100, 0.05, 0.25, 0.5, 0.75, 0.95)  # bytes, or a fraction of the file
SEED = 20261123


class Corpus:
    def __init__(self, out: Path):
        self.out, self.manifest = out, {}

    def add(self, name: str | bytes, data: bytes | None, expect: str, what: str) -> Path:
        path = os.path.join(os.fsencode(self.out), os.fsencode(name))
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
        key = name if isinstance(name, str) else os.fsdecode(name)
        self.manifest[key] = {"expect": expect, "what": what}
        return Path(os.fsdecode(path))

    def write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1, ensure_ascii=True, sort_keys=True)
        (self.out / "manifest.json").write_text(text)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def zero_png(width: int, height: int, idat: bool = True) -> bytes:
    """A greyscale PNG of zeros: tiny on disk whatever its dimensions (a zip bomb for pixels)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    body = b""
    if idat:
        z = zlib.compressobj(9)
        rows = (b"\0" * (width + 1)) * 64
        parts = [z.compress(rows) for _ in range(height // 64)]
        parts.append(z.compress((b"\0" * (width + 1)) * (height % 64)))
        body = png_chunk(b"IDAT", b"".join(parts) + z.flush())
    return b"\x89PNG\r\n\x1a\n" + header + body + png_chunk(b"IEND", b"")


def truncated(c: Corpus, photo: Image.Image) -> None:
    encoded = {
        "jpg": encode(photo, "JPEG", quality=90),
        "png": encode(photo, "PNG"),
        "webp": encode(photo, "WEBP", quality=80),
        "heic": heic_bytes(photo),
    }
    for ext, data in encoded.items():
        c.add(f"good.{ext}", data, "ok", f"the intact {ext} the truncated ones are cut from")
        for at in TRUNCATE_AT:
            n = at if isinstance(at, int) else int(len(data) * at)
            c.add(f"trunc_{ext}_{n:07d}.{ext}", data[:n], "failed", f"{ext} cut at byte {n}")


def heic_bytes(photo: Image.Image) -> bytes:
    pillow_heif.register_heif_opener()
    return encode(photo, "HEIF", quality=70)


def junk(c: Corpus) -> None:
    rng = np.random.default_rng(SEED)
    for ext in ("jpg", "png", "webp", "heic", "gif", "tif", "bmp"):
        c.add(f"empty.{ext}", b"", "failed", "zero bytes")
        c.add(f"random.{ext}", rng.bytes(4096), "failed", "random bytes")
    c.add("text.jpg", b"just some notes, not a picture\n", "failed", "text with an image name")
    c.add("jpeg_magic_only.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "failed", "a JPEG header")


def wrong_extensions(c: Corpus, photo: Image.Image) -> None:
    c.add("png_named.jpg", encode(photo, "PNG"), "ok", "a PNG named .jpg (content decides)")
    c.add("jpeg_named.png", encode(photo, "JPEG"), "ok", "a JPEG named .png")
    c.add("webp_named.gif", encode(photo, "WEBP"), "ok", "a WebP named .gif")
    c.add("gif_named.heic", encode(photo.convert("P"), "GIF"), "ok", "a GIF named .heic")


def bombs(c: Corpus) -> None:
    c.add(
        "bomb_header_only.png",
        zero_png(100_000, 100_000, idat=False),
        "failed",
        "PNG header claiming 100000x100000 (10 GP), no pixel data",
    )
    c.add(
        "bomb_zeros_400mp.png",
        zero_png(20_000, 20_000),
        "failed",
        "400 MP of zeros in a small PNG, over the 250 MP default limit",
    )
    gif = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b";"
    c.add("bomb_gif_65535.gif", gif, "failed", "GIF screen claiming 65535x65535")


def odd_but_good(c: Corpus, photo: Image.Image) -> None:
    small = photo.resize((96, 64))
    c.add("one_pixel.png", encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "ok", "1x1")
    tall = Image.fromarray(np.tile(np.arange(60000, dtype=np.uint8)[:, None, None], (1, 1, 3)))
    c.add("tall_1x60000.png", encode(tall, "PNG"), "ok", "1x60000")
    c.add(
        "wide_60000x1.png",
        encode(tall.transpose(Image.Transpose.TRANSPOSE), "PNG"),
        "ok",
        "60000x1",
    )
    c.add("cmyk.jpg", encode(photo.convert("CMYK"), "JPEG"), "ok", "CMYK JPEG")
    c.add("cmyk.tif", encode(photo.convert("CMYK"), "TIFF"), "ok", "CMYK TIFF")
    grey16 = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    c.add("grey16.png", encode(Image.fromarray(grey16), "PNG"), "ok", "16-bit greyscale PNG")
    pal = small.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    c.add(
        "palette_transparent.png",
        encode(pal, "PNG", transparency=0),
        "ok",
        "palette PNG with a transparent index",
    )
    c.add("rgba_half_alpha.png", encode(_with_alpha(small), "PNG"), "ok", "RGBA, alpha ramp")
    c.add("la.png", encode(_with_alpha(small).convert("LA"), "PNG"), "ok", "grey + alpha")
    c.add("bilevel.tif", encode(small.convert("1"), "TIFF"), "ok", "1-bit TIFF")
    frames = [small.rotate(a) for a in (0, 90, 180)]
    c.add(
        "animated.gif",
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "ok",
        "animated GIF, 3 frames",
    )
    c.add(
        "animated.webp",
        encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100),
        "ok",
        "animated WebP, 3 frames",
    )
    c.add(
        "multipage.tif",
        encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "ok",
        "3-page TIFF",
    )
    for orientation in range(1, 9):
        c.add(
            f"exif_orientation_{orientation}.png",
            oriented(small, orientation),
            "ok",
            f"EXIF orientation {orientation}, stored so that upright it is the same picture",
        )
        c.add(
            f"exif_orientation_{orientation}.jpg",
            oriented(small, orientation, "JPEG"),
            "ok",
            f"JPEG, EXIF orientation {orientation}",
        )


def _with_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, img.width, dtype=np.uint8), (img.height, 1))
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


# What a camera does to the pixels it stores, for each orientation tag: the inverse of what a
# viewer applies (ImageOps.exif_transpose) to show them upright.
STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def oriented(upright: Image.Image, orientation: int, fmt: str = "PNG") -> bytes:
    op = STORE[orientation]
    stored = upright.transpose(op) if op is not None else upright.copy()
    exif = Image.Exif()
    exif[0x0112] = orientation
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    return encode(stored, fmt, exif=exif.tobytes(), **kwargs)


def filesystem_oddities(c: Corpus, photo: Image.Image) -> None:
    data = encode(photo.resize((64, 48)), "PNG")
    path = c.add("unreadable.png", data, "failed", "mode 000 (root reads it anyway)")
    os.chmod(path, 0)
    if os.geteuid() == 0:
        c.manifest["unreadable.png"] = {
            "expect": "ok",
            "what": "mode 000, but we run as root, who reads it anyway",
        }
    os.symlink("loop_b.jpg", c.out / "loop_a.jpg")
    os.symlink("loop_a.jpg", c.out / "loop_b.jpg")
    c.add("loop_a.jpg", None, "walk_error", "symlink loop a -> b -> a")
    c.add("loop_b.jpg", None, "walk_error", "symlink loop b -> a -> b")
    os.symlink("does_not_exist.png", c.out / "dangling.png")
    c.add("dangling.png", None, "walk_error", "symlink to nothing")
    loop_dir = c.out / "dirloop"
    loop_dir.mkdir()
    os.symlink("..", loop_dir / "up")  # a directory loop: walked once, cut after
    c.add(b"latin1_caf\xe9.png", data, "walk_error", "a name that is not UTF-8 (reported)")
    c.add("unicode_caf\u00e9_\U0001f4f7.png", data, "ok", "a UTF-8 file name with an emoji")
    c.add("name with spaces & 'quotes'.png", data, "ok", "spaces and quotes")
    c.add("not_an_image_name.txt", data, "absent", "a PNG without an image extension: not walked")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    photo = Image.open(args.source).convert("RGB")
    photo = photo.resize((photo.width // 2, photo.height // 2))
    corpus = Corpus(args.out)
    truncated(corpus, photo)
    junk(corpus)
    wrong_extensions(corpus, photo)
    bombs(corpus)
    odd_but_good(corpus, photo)
    filesystem_oddities(corpus, photo)
    corpus.write_manifest()
    print(f"{len(corpus.manifest)} files in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
