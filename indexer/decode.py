"""One file -> upright RGB pixels, preprocessed to the model's input size, or a typed error.

This is the one decoder for everything: the indexer's workers, queries and API uploads.
"""

import base64
import datetime as dt
import hashlib
import io
import json
import math
import os
import re
import struct
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

from indexer import quality, raw
from indexer.errors import DecompressionBomb, ImageError, UnsupportedImage
from indexer.evidence import Evidence
from indexer.evidence import measure as measure_evidence

try:  # HEIC/HEIF (and AVIF on older Pillow) through libheif
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a hard dependency, but degrade gracefully
    pillow_heif = None  # type: ignore[assignment]  # an optional module

# We enforce our own pixel limit from the header (see check_pixels); Pillow's fixed one would
# refuse real 200 MP phone photos.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is a bad file, not a grey half-image

PixelArray = np.ndarray  # (H, W, 3) uint8

EXIF_IFD = 0x8769
EXIF_DATETIME_ORIGINAL = 36867
EXIF_SUBSEC_ORIGINAL = 37521
EXIF_OFFSET_ORIGINAL = 36881  # OffsetTimeOriginal: the zone of DateTimeOriginal, "+02:00"
EXIF_DATETIME = 306
EXIF_SUBSEC = 37520  # SubSecTime: the fraction of DateTime
EXIF_OFFSET = 36880  # OffsetTime: the zone of DateTime
EXIF_STAMP = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
EXIF_ZONE = re.compile(r"^[+-]\d{2}:\d{2}$")
SUBSEC_DIGITS = 6  # microseconds: finer fractions are cut (ISO 8601 readers take up to 6)
# A stored capture time as any version wrote it: 2024-05-01T10:00:00, ...T10:00:00.5 or .25 (any
# number of digits) and, since the zone is kept, ...T10:00:00.25+02:00.
TAKEN = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$"
)
EXIF_ORIENTATION = 274
EXTREME_ASPECT_AREA = 16  # resized area over crop area beyond which only the crop is resized
THUMB_JPEG_QUALITY = 85
REDUCING_GAP = 3.0  # box-reduce first when shrinking > 3x: ~10x faster, visually identical


# What Pillow and pillow-heif raise for a bad, truncated or odd file (a corrupt file is data).
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    RuntimeError,
    ZeroDivisionError,
)
# ... and for a thumbnail, where a bomb or no memory also just means "cannot look at it".
IMAGE_ERRORS = (*DECODE_ERRORS, MemoryError, Image.DecompressionBombError)


@dataclass(frozen=True)
class Recipe:
    """A model's preprocessing: resize, centre crop, normalise (from its own config)."""

    shortest_edge: int | None = 256  # resize so the shorter side is this (aspect kept)
    size: tuple[int, int] | None = None  # or resize to exactly (height, width)
    crop: tuple[int, int] | None = (224, 224)  # centre crop (height, width), after resizing
    resample: int = Image.Resampling.BICUBIC
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @property
    def input_size(self) -> tuple[int, int]:
        if self.crop:
            return self.crop
        if self.size:
            return self.size
        return (self.edge, self.edge)

    @property
    def edge(self) -> int:
        """The shorter side's target, for a recipe that resizes by it."""
        if not self.shortest_edge:
            raise ValueError("a recipe needs a size or a shortest edge to resize to")
        return self.shortest_edge

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        d = json.loads(text)
        for key in ("size", "crop", "mean", "std"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class Decoded:
    pixels: PixelArray  # preprocessed to recipe.input_size, uint8 RGB
    width: int  # of the upright original
    height: int
    format: str
    taken: str | None  # EXIF capture time, ISO 8601 (+ zone when known: capture_time)
    quality: dict | None = None  # quality.measure of the decoded image (dinosearch flags)
    evidence: Evidence | None = None  # pixel evidence for `dups` (indexer/evidence.py)


def set_heif_threads(threads: int) -> None:
    """How many threads libheif may use for one image (a grid's tiles decode in parallel)."""
    if pillow_heif is not None:
        pillow_heif.options.DECODE_THREADS = threads


def check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels and width * height > max_pixels:
        raise DecompressionBomb(
            f"image claims {width}x{height} = {width * height / 1e6:.0f} megapixels, over the "
            f"limit of {max_pixels / 1e6:.0f} MP (raise it with --max-pixels if this is real)"
        )


def decode_bytes(
    data: bytes, recipe: Recipe, max_pixels: int | None, name: str | None = None
) -> Decoded:
    """Decode an encoded image and preprocess it; raises ImageError with a readable reason.
    `name`: the file's name (an upload's, a Ray worker's path), whose extension picks the
    decoder as decode_file's does: a camera RAW (indexer/files.py) goes to LibRaw."""
    if not data:
        raise ImageError("empty file")
    if name and raw.is_raw(name):
        return _decode_raw(name, recipe, max_pixels, data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF/ICC chatter from odd but decodable files
            return _decode(data, recipe, max_pixels)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise UnsupportedImage(
            "not an image Pillow can read (unknown or unsupported format)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(str(exc)) from None
    except MemoryError:
        raise ImageError("out of memory while decoding (over the decoder's memory cap?)") from None
    except DECODE_ERRORS as exc:
        raise ImageError(_describe(exc)) from None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "truncated" in text or "end of file" in text.lower():
        return f"truncated or damaged file ({text})"
    return f"cannot decode: {text}"


def decode_file(path: str, recipe: Recipe, max_pixels: int | None) -> Decoded:
    if raw.is_raw(path):
        return _decode_raw(path, recipe, max_pixels)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from None
    return decode_bytes(data, recipe, max_pixels)


def _decode_raw(
    path: str, recipe: Recipe, max_pixels: int | None, data: bytes | None = None
) -> Decoded:
    """A camera RAW: its embedded preview when large enough, else a half-size demosaic; the
    format says which (`DNG (preview)`, `NEF (demosaic)`). `data`: the file's bytes, read
    already (an upload named `path`)."""

    def source() -> str | io.BytesIO:
        return path if data is None else io.BytesIO(data)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img, how, (width, height) = raw.open_raw(source(), recipe.shortest_edge)
            check_pixels(width, height, max_pixels)
            rgb = to_rgb(img)
            measures = quality.measure(rgb)
            seen = measure_evidence(rgb, width, height)
            pixels = np.array(preprocess(rgb, recipe), dtype=np.uint8)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("out of memory while decoding (over the decoder's memory cap?)") from None
    except DECODE_ERRORS as exc:
        raise ImageError(_describe(exc)) from None
    fmt = f"{os.path.splitext(path)[1].lstrip('.').upper()} ({how})"
    return Decoded(pixels, width, height, fmt, _raw_capture_time(source()), measures, seen)


def _raw_capture_time(source: str | io.BytesIO) -> str | None:
    """EXIF capture time of a TIFF-based RAW (DNG, CR2, NEF, ARW, ...), read by Pillow's TIFF
    reader from the header; None for the others."""
    try:
        with Image.open(source) as img:
            return capture_time(img.getexif())
    except (*DECODE_ERRORS, Image.UnidentifiedImageError):
        return None


def _decode(data: bytes, recipe: Recipe, max_pixels: int | None) -> Decoded:
    img: Image.Image = Image.open(io.BytesIO(data))
    fmt = img.format or "unknown"
    check_pixels(img.width, img.height, max_pixels)
    width, height = img.size
    if fmt == "JPEG" and recipe.shortest_edge:
        _draft(img, recipe.shortest_edge)
    elif fmt == "HEIF":
        fmt = f"HEIF ({_prepare_heif(img, data, recipe.shortest_edge)})"
    img.load()
    exif = img.getexif()  # after load: PNG may keep its eXIf chunk after the pixels
    orientation = exif.get(EXIF_ORIENTATION, 1)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    img = ImageOps.exif_transpose(img) if orientation != 1 else img
    rgb = to_rgb(img)
    measures = quality.measure(rgb)  # on the pixels already decoded: no second decode
    seen = measure_evidence(rgb, width, height)
    pixels = np.array(preprocess(rgb, recipe), dtype=np.uint8)  # a writable copy
    return Decoded(pixels, width, height, fmt, capture_time(exif), measures, seen)


# A HEIF thumbnail is used when its shorter side is at least this share of the recipe's resize:
# 240/256 = 0.94 lets an iPhone's 320x240 thumbnail serve the default recipe (measured in
# bench/results/perf_runtime_heic_cosine.md against a full decode).
HEIF_THUMBNAIL_MIN_SHARE = 0.9


def _prepare_heif(img: Image.Image, data: bytes, shortest_edge: int | None) -> str:
    """Check a HEIF is whole, then choose how to read it: "thumbnail" (its embedded thumbnail,
    when its shorter side is at least `shortest_edge`) or "primary" (the full image)."""
    _check_heif_complete(img, data)
    if shortest_edge and min(img.size) > shortest_edge:
        # pillow-heif's draft picks the smallest embedded thumbnail at least this size that is a
        # scaled copy (same aspect, orientation, crop, colour profile) and decodes it. A little
        # short of the model's resize is still taken (an iPhone's 240 px against DINOv2's 256)
        shortest_edge = math.ceil(shortest_edge * HEIF_THUMBNAIL_MIN_SHARE)
        scale = shortest_edge / min(img.size)
        w, h = (shortest_edge if side == min(img.size) else int(side * scale) for side in img.size)
        wanted = (w, h)
        if img.draft("RGB", wanted) is not None:
            return "thumbnail"
    return "primary"


def _check_heif_complete(img: Image.Image, data: bytes) -> None:
    """A HEIF cut short is a bad file, even when what is left decodes: libheif fills a grid's
    missing tiles, or a thumbnail before the cut would stand in for the lost primary image."""
    _check_boxes(data)
    frames, primary = getattr(img, "n_frames", 1), img.tell()
    for frame in range(frames):  # other items pointing past the end: truncated too
        if frame != primary:
            img.seek(frame)
            img.load()
    if frames > 1:
        img.seek(primary)


def _check_boxes(data: bytes) -> None:
    """Every top-level ISO-BMFF box (ftyp, meta, mdat, ...) must end inside the file."""
    offset, end = 0, len(data)
    while offset + 8 <= end:
        size = struct.unpack_from(">I", data, offset)[0]
        if size == 1 and offset + 16 <= end:  # a 64-bit size follows the type
            size = struct.unpack_from(">Q", data, offset + 8)[0]
        elif size == 0:  # the last box runs to the end of the file
            return
        if size < 8 or offset + size > end:
            raise ImageError(
                f"truncated or damaged file (a HEIF box at byte {offset} claims {size} bytes, "
                f"{end - offset} are left)"
            )
        offset += size


def _draft(img: Image.Image, shortest_edge: int) -> None:
    """Ask libjpeg for a DCT-domain downscale that keeps the shorter side >= shortest_edge."""
    scale = shortest_edge / min(img.size)
    if scale < 0.5:
        img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode -> 8-bit RGB, deterministically: first frame, alpha over white, 16-bit scaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / 257.0, 0, 255).round().astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).round().astype(np.uint8), "L")
    if img.mode == "P" or img.mode == "1":
        img = img.convert("RGBA" if "transparency" in img.info or img.mode == "P" else "RGB")
    if img.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def preprocess(img: Image.Image, recipe: Recipe) -> Image.Image:
    """Resize and centre-crop exactly as the Hugging Face image processors do (PIL bicubic)."""
    if recipe.size:
        target_h, target_w = recipe.size
    else:
        short, long = sorted(img.size)
        new_short, new_long = recipe.edge, int(recipe.edge * long / short)
        target_w, target_h = (
            (new_short, new_long) if img.width <= img.height else (new_long, new_short)
        )
    if recipe.crop and target_w * target_h > EXTREME_ASPECT_AREA * recipe.crop[0] * recipe.crop[1]:
        return _resize_crop_region(img, (target_w, target_h), recipe)
    if (target_w, target_h) != img.size:
        factor = min(img.width / target_w, img.height / target_h)
        gap = REDUCING_GAP if factor > 2 * REDUCING_GAP else None
        img = img.resize((target_w, target_h), recipe.resample, reducing_gap=gap)
    if recipe.crop:
        crop_h, crop_w = recipe.crop
        top, left = (img.height - crop_h) // 2, (img.width - crop_w) // 2
        img = img.crop((left, top, left + crop_w, top + crop_h))
    return img


def _resize_crop_region(img: Image.Image, target: tuple[int, int], recipe: Recipe) -> Image.Image:
    """For a panorama like 1 x 60000, resize only the part that lands in the centre crop
    (resizing all of it would take gigabytes); same geometry as resize-then-crop."""
    assert recipe.crop is not None  # the caller's condition
    (target_w, target_h), (crop_h, crop_w) = target, recipe.crop
    sx, sy = target_w / img.width, target_h / img.height
    top, left = (target_h - crop_h) // 2, (target_w - crop_w) // 2
    box = (left / sx, top / sy, (left + crop_w) / sx, (top + crop_h) / sy)
    return img.resize((crop_w, crop_h), recipe.resample, box=box)


def capture_time(exif: Image.Exif) -> str | None:
    """EXIF DateTimeOriginal (else DateTime) as ISO 8601, with its SubSecTimeOriginal (SubSecTime)
    when the camera wrote it (frames of a burst are often less than a second apart) and its
    OffsetTimeOriginal (OffsetTime) when known: 2024-05-01T10:00:00.25+02:00. Each tag is read
    from the EXIF sub-IFD, else from IFD0 (where some tools write them); None without a valid
    date."""
    try:
        sub = exif.get_ifd(EXIF_IFD)

        def tag(number: int):
            value = sub.get(number)
            return _exif_text(value if value is not None else exif.get(number))

        tags = (EXIF_DATETIME_ORIGINAL, EXIF_SUBSEC_ORIGINAL, EXIF_OFFSET_ORIGINAL)
        if not EXIF_STAMP.match(tag(EXIF_DATETIME_ORIGINAL)):
            tags = (EXIF_DATETIME, EXIF_SUBSEC, EXIF_OFFSET)
        value, fraction, zone = (tag(t) for t in tags)
    except Exception:  # malformed EXIF never costs the image
        return None
    m = EXIF_STAMP.match(value)
    if not m or _valid_time(*map(int, m.groups())) is None:
        return None  # "0000:00:00 00:00:00" and the like: no capture time
    y, mo, d, h, mi, sec = m.groups()
    digits = fraction[:SUBSEC_DIGITS] if fraction.isdigit() else ""
    subsec = f".{digits}" if digits else ""
    offset = zone if EXIF_ZONE.match(zone) else ""
    return f"{y}-{mo}-{d}T{h}:{mi}:{sec}{subsec}{offset}"


def parse_capture_time(text: str | None) -> dt.datetime | None:
    """A stored capture time as the camera's clock read (naive: a zone is dropped, as bursts and
    keep policies compare clocks), from every form `capture_time` has written; None when absent
    or unreadable. Independent of the Python version (3.10's fromisoformat takes no `.5`)."""
    m = TAKEN.match(text.strip()) if isinstance(text, str) else None
    if not m:
        return None
    y, mo, d, h, mi, s, fraction, _ = m.groups()
    micro = int((fraction or "0")[:SUBSEC_DIGITS].ljust(SUBSEC_DIGITS, "0"))
    return _valid_time(int(y), int(mo), int(d), int(h), int(mi), int(s), micro)


def _valid_time(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> dt.datetime | None:
    try:
        return dt.datetime(year, month, day, hour, minute, second, micro)
    except ValueError:
        return None


def _exif_text(value) -> str:
    """An EXIF ASCII value as text ('' when absent or not text), NULs and spaces stripped."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ") if isinstance(value, str) else ""


def pixel_digest(path: str) -> str:
    """SHA-256 of the fully decoded, upright RGB pixels (and size): equal for a PNG and its
    lossless WebP, or a JPEG with its metadata stripped."""
    with Image.open(path) as img:
        img.load()
        rgb = to_rgb(ImageOps.exif_transpose(img))
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def thumbnail_jpeg(path: str, size: int, max_pixels: int | None) -> bytes:
    """An upright JPEG of `path` fitting size x size (the page's thumbnails, the review page),
    decoded with the indexer's guards: any decoder failure is an ImageError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _thumbnail_jpeg(path, size, max_pixels)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError("not an image Pillow can read (unknown or unsupported format)") from None
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(str(exc)) from None
    except Exception as exc:  # any decoder failure is a bad image, never a 500
        raise ImageError(f"cannot decode {os.path.basename(path)}: {exc}") from None


def thumbnail_data_uri(path: str, size: int, max_pixels: int | None) -> str | None:
    """thumbnail_jpeg as a `data:` URI, for a page that carries its pictures (the review page,
    the clusters gallery); None for a file that cannot be read."""
    try:
        data = thumbnail_jpeg(path, size, max_pixels)
    except (ImageError, OSError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _thumbnail_jpeg(path: str, size: int, max_pixels: int | None) -> bytes:
    if raw.is_raw(path):
        upright, _, (width, height) = raw.open_raw(path, size)
        check_pixels(width, height, max_pixels)
    else:
        with Image.open(path) as img:
            check_pixels(img.width, img.height, max_pixels)
            if img.format in ("JPEG", "HEIF"):
                # JPEG: DCT-domain downscale (a 24 MP JPEG at 1/8); HEIF: its embedded
                # thumbnail when that is at least size x size
                img.draft("RGB", (size, size))
            img.load()
            upright = to_rgb(ImageOps.exif_transpose(img))
    upright.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    upright.save(out, "JPEG", quality=THUMB_JPEG_QUALITY, optimize=True)
    return out.getvalue()
