"""Low-information images are told apart by their pixels, never by their embeddings alone."""

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from search.dups import lowinfo
from search.dups.lowinfo import is_low_information, look_alike, needs_pixel_evidence
from tests.helpers import HEIF, IMAGEDEDUP, PHOTOS, SHARED, distractor, distractor_generator

W, H = 320, 240  # generated graphics: 4:3, big enough that none of them is "tiny"

# The pillow-heif test gradients that hold the same picture: the same ramp at 8, 10 and 12 bits
# (and L_xmp, a 32x32 copy of the grey one) differ by under one level once scaled to 8 bits.
HEIF_SAME_PICTURE = [
    {"L_8__128x128", "L_10__128x128", "L_12__128x128", "L_xmp"},
    {"L_8__29x100", "L_10__29x100", "L_12__29x100"},
    {"RGB_10__128x128", "RGB_12__128x128"},
    {"RGB_10__29x100", "RGB_12__29x100"},
    {"RGBA_10__128x128", "RGBA_12__128x128"},
    {"RGBA_10__29x100", "RGBA_12__29x100"},
]


def _ramp(horizontal: bool = True) -> np.ndarray:
    """0..1 across the image (or down it), shape (H, W)."""
    x = np.linspace(0, 1, W)[None, :].repeat(H, 0)
    y = np.linspace(0, 1, H)[:, None].repeat(W, 1)
    return x if horizontal else y


def _rgb(*channels: np.ndarray) -> Image.Image:
    """Three 0..1 arrays -> an RGB image."""
    return Image.fromarray((np.stack(channels, -1) * 255).round().astype(np.uint8))


def _flat(colour: tuple[int, int, int]) -> Image.Image:
    """One colour all over."""
    return Image.new("RGB", (W, H), colour)


def _checker(square: int, invert: bool = False) -> Image.Image:
    """Black and white squares of `square` pixels."""
    yy, xx = np.mgrid[0:H, 0:W]
    on = ((yy // square + xx // square + invert) % 2).astype(np.float64)
    return _rgb(on, on, on)


def _stripes(width: int, vertical: bool) -> Image.Image:
    """Red and blue bands `width` pixels wide."""
    yy, xx = np.mgrid[0:H, 0:W]
    on = (((xx if vertical else yy) // width) % 2).astype(np.float64)
    return _rgb(on, 0.2 * on, 1 - on)


def _dots() -> Image.Image:
    """A grid of yellowish dots on dark blue, 32 pixels apart."""
    yy, xx = np.mgrid[0:H, 0:W]
    on = (((xx % 32) - 16) ** 2 + ((yy % 32) - 16) ** 2 < 64).astype(np.float64)
    return _rgb(0.8 * on, 0.8 * on, 0.2 + 0 * on)


def _radial() -> Image.Image:
    """Colours changing with the distance from the centre."""
    r = np.hypot(_ramp() - 0.5, _ramp(False) - 0.5) / 0.71
    return _rgb(1 - r, 0.5 * (1 - r) + 0.2, r)


def _with_logo(img: Image.Image) -> Image.Image:
    """The same picture with a small red label in a corner."""
    img = img.copy()
    img.paste((255, 0, 0), (240, 180, 290, 215))  # a small red label: 2% of the picture
    return img


GRAPHICS: dict[str, Callable[[], Image.Image]] = {
    "flat orange": lambda: _flat((255, 140, 0)),
    "flat orange, darker": lambda: _flat((255, 120, 0)),
    "flat blue": lambda: _flat((30, 60, 200)),
    "flat grey": lambda: _flat((128, 128, 128)),
    "flat grey, lighter": lambda: _flat((140, 140, 140)),
    "red-yellow gradient": lambda: _rgb(0 * _ramp() + 1, _ramp(), 0 * _ramp()),
    "grey gradient, horizontal": lambda: _rgb(*[_ramp()] * 3),
    "grey gradient, reversed": lambda: _rgb(*[1 - _ramp()] * 3),
    "grey gradient, vertical": lambda: _rgb(*[_ramp(False)] * 3),
    "grey gradient, diagonal": lambda: _rgb(*[(_ramp() + _ramp(False)) / 2] * 3),
    "grey gradient with a label": lambda: _with_logo(_rgb(*[_ramp()] * 3)),
    "colour gradient, diagonal": lambda: _rgb(_ramp(), _ramp(False), 1 - _ramp() / 2),
    "radial gradient": _radial,
    "checkerboard 16": lambda: _checker(16),
    "checkerboard 16, inverted": lambda: _checker(16, invert=True),
    "checkerboard 40": lambda: _checker(40),
    "stripes, vertical": lambda: _stripes(12, vertical=True),
    "stripes, horizontal": lambda: _stripes(12, vertical=False),
    "dots": _dots,
}


def _save(img: Image.Image, path: Path, **options) -> str:
    """Save and return the path as a string (the interface takes str)."""
    img.save(path, **options)
    return str(path)


def _resized(img: Image.Image, scale: float) -> Image.Image:
    """Lanczos resize by `scale`, at least one pixel a side."""
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


COPIES: dict[str, Callable[[Image.Image, Path], str]] = {
    "JPEG q90": lambda img, p: _save(img, p.with_suffix(".jpg"), quality=90),
    "JPEG q60": lambda img, p: _save(img, p.with_suffix(".jpg"), quality=60),
    "WebP q80": lambda img, p: _save(img, p.with_suffix(".webp"), quality=80),
    "lossless WebP": lambda img, p: _save(img, p.with_suffix(".webp"), lossless=True),
    "BMP": lambda img, p: _save(img, p.with_suffix(".bmp")),
    "resized to 60%": lambda img, p: _save(_resized(img, 0.6), p.with_suffix(".png")),
    "resized to 60%, JPEG q75": lambda img, p: _save(
        _resized(img, 0.6), p.with_suffix(".jpg"), quality=75
    ),
    "enlarged 1.5x": lambda img, p: _save(_resized(img, 1.5), p.with_suffix(".png")),
}


def _graphic(tmp_path: Path, name: str) -> str:
    """Write one of GRAPHICS as a PNG."""
    return _save(GRAPHICS[name](), tmp_path / f"{name.replace(' ', '_').replace(',', '')}.png")


def _heif_gradients() -> list[Path]:
    """The 21 pillow-heif test gradients (every .heif; the pug is .heic)."""
    files = sorted(p for p in (HEIF / "heif").glob("*.heif"))
    assert len(files) == 21, files
    return files


# --- what counts as low-information --------------------------------------------------------------


def test_real_photos_are_not_low_information():
    photos = sorted(PHOTOS.glob("*.png")) + sorted((SHARED / "photos-more").iterdir())
    photos += sorted((IMAGEDEDUP / "base_images").glob("*.jpg"))
    assert len(photos) == 24 + 37 + 10
    assert [p.name for p in photos if is_low_information(str(p))] == []


def test_copies_of_a_photo_are_not_low_information(tmp_path):
    photo = Image.open(PHOTOS / "kodim20.png").convert("RGB")  # plain sky: among the lowest
    copies = {
        "JPEG q60": _save(photo, tmp_path / "q60.jpg", quality=60),
        "half size": _save(_resized(photo, 0.5), tmp_path / "half.png"),
        "grey": _save(photo.convert("L"), tmp_path / "grey.png"),
    }
    assert {k: is_low_information(p) for k, p in copies.items()} == dict.fromkeys(copies, False)
    assert not needs_pixel_evidence(str(PHOTOS / "kodim20.png"), copies["JPEG q60"])


@pytest.mark.parametrize("name", GRAPHICS)
def test_flat_colours_gradients_and_patterns_are_low_information(tmp_path, name):
    assert is_low_information(_graphic(tmp_path, name))


@pytest.mark.parametrize("size", [(16, 16), (40, 27), (60, 60), (20, 400)])
def test_tiny_images_are_low_information(tmp_path, size):
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path = _save(Image.fromarray(noise), tmp_path / "tiny.png")
    assert is_low_information(path)
    assert needs_pixel_evidence(path, str(PHOTOS / "kodim01.png"))


def test_heif_gradients_are_low_information_and_the_pug_is_not():
    assert [p.name for p in _heif_gradients() if not is_low_information(str(p))] == []
    assert not is_low_information(str(HEIF / "heif" / "zPug_3.heic"))


# --- what looks alike ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPHICS)
def test_copies_of_a_graphic_look_alike(tmp_path, name):
    original = _graphic(tmp_path, name)
    img = Image.open(original)
    copies = {kind: make(img, tmp_path / kind.replace(" ", "_")) for kind, make in COPIES.items()}
    assert [kind for kind, path in copies.items() if not look_alike(original, path)] == []
    assert all(needs_pixel_evidence(original, path) for path in copies.values())


def test_copies_of_a_tiny_image_look_alike(tmp_path):
    tiny = _resized(Image.open(PHOTOS / "kodim23.png").convert("RGB"), 0.08)  # 40x40
    original = _save(tiny, tmp_path / "tiny.png")
    copies = [
        _save(tiny, tmp_path / "tiny.webp", lossless=True),
        _save(tiny, tmp_path / "tiny.bmp"),
        _save(tiny.resize((160, 160), Image.Resampling.BICUBIC), tmp_path / "big.png"),
    ]
    assert [look_alike(original, c) for c in copies] == [True] * len(copies)


def test_distinct_graphics_do_not_look_alike(tmp_path):
    paths = {name: _graphic(tmp_path, name) for name in GRAPHICS}
    alike = [(a, b) for a, b in itertools.combinations(paths, 2) if look_alike(paths[a], paths[b])]
    assert alike == []


def test_a_gradient_does_not_look_like_the_flat_colour_of_its_mean(tmp_path):
    """The motivating case: DINOv2 scores these two raw cosine 0.986."""
    gradient = _graphic(tmp_path, "red-yellow gradient")
    flat = _save(_flat((255, 128, 0)), tmp_path / "mean.png")
    assert needs_pixel_evidence(gradient, flat)
    assert not look_alike(gradient, flat)


def test_heif_gradients_look_alike_only_when_they_are_the_same_picture():
    files = _heif_gradients()
    wrong = []
    for a, b in itertools.combinations(files, 2):
        same = any({a.stem, b.stem} <= group for group in HEIF_SAME_PICTURE)
        if look_alike(str(a), str(b)) != same:
            wrong.append((a.stem, b.stem, same))
    assert wrong == []


def test_a_photo_and_its_copies_look_alike_but_not_other_photos(tmp_path):
    photo = Image.open(PHOTOS / "kodim05.png").convert("RGB")
    q60 = _save(photo, tmp_path / "q60.jpg", quality=60)
    half = _save(_resized(photo, 0.5), tmp_path / "half.png")
    original = str(PHOTOS / "kodim05.png")
    assert look_alike(original, q60) and look_alike(original, half)
    assert not look_alike(original, str(PHOTOS / "kodim06.png"))


def test_exif_orientation_is_applied(tmp_path):
    upright = GRAPHICS["colour gradient, diagonal"]()
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes for tag 6
    exif = Image.Exif()
    exif[lowinfo.EXIF_ORIENTATION] = 6
    tagged = _save(stored, tmp_path / "tagged.jpg", quality=90, exif=exif.tobytes())
    assert lowinfo.signature(tagged).width == W
    assert look_alike(_save(upright, tmp_path / "upright.png"), tagged)
    assert not look_alike(_save(stored, tmp_path / "stored.png"), tagged)


@pytest.mark.parametrize("mode", ["L", "I;16", "P", "RGBA", "CMYK"])
def test_odd_modes_look_like_their_rgb_version(tmp_path, mode):
    rgb = GRAPHICS["grey gradient, diagonal"]()
    if mode == "I;16":
        odd = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)  # 16-bit
    else:
        odd = rgb.convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = _save(odd, tmp_path / f"odd{suffix}", **({"quality": 95} if mode == "CMYK" else {}))
    assert is_low_information(path)
    assert look_alike(_save(rgb, tmp_path / "rgb.png"), path)


def test_a_large_jpeg_keeps_its_real_size(tmp_path):
    photo = Image.open(PHOTOS / "kodim01.png").convert("RGB")
    big = _save(photo.resize((2000, 1500), Image.Resampling.BILINEAR), tmp_path / "big.jpg")
    sig = lowinfo.signature(big)
    assert (sig.width, sig.height) == (2000, 1500)
    assert not sig.low_information


# --- cache and bad files -------------------------------------------------------------------------


def test_a_changed_file_is_measured_again(tmp_path, monkeypatch):
    calls = []
    real = lowinfo.compute_signature
    monkeypatch.setattr(lowinfo, "compute_signature", lambda p: calls.append(p) or real(p))
    path = tmp_path / "picture.png"
    orange = _save(_flat((255, 140, 0)), tmp_path / "orange.png")
    _save(_flat((255, 140, 0)), path)
    assert is_low_information(str(path)) and look_alike(str(path), orange)
    assert is_low_information(str(path)) and calls.count(str(path)) == 1  # cached

    before = os.stat(path)
    _save(_flat((30, 60, 200)), path)  # same size as the orange PNG: only mtime tells
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert not look_alike(str(path), orange)

    photo = Image.open(PHOTOS / "kodim01.png")
    _save(photo, path)
    assert not is_low_information(str(path))
    assert calls.count(str(path)) == 3


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "empty",
        "missing",
        "folder",
        IMAGEDEDUP / "mixed_images" / "ukbench09268_corrupt.jpg",
        HEIF / "heif_corrupted" / "corrupted.heic",
        HEIF / "heif_corrupted" / "empty.heic",
    ],
)
def test_unreadable_files_are_neither_low_information_nor_alike(tmp_path, bad):
    if isinstance(bad, str):
        path = tmp_path / f"{bad}.png"
        if bad == "garbage":
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
        elif bad == "empty":
            path.write_bytes(b"")
        elif bad == "folder":
            path.mkdir()
        bad = path
    flat = _graphic(tmp_path, "flat grey")
    assert not is_low_information(str(bad))
    assert not look_alike(str(bad), str(bad))
    assert not look_alike(str(bad), flat) and not look_alike(flat, str(bad))
    assert not needs_pixel_evidence(str(bad), str(bad))
    assert needs_pixel_evidence(str(bad), flat)  # the other one still needs evidence


def test_neighbouring_tiles_of_a_flat_band_are_not_one_picture(tmp_path, monkeypatch):
    """Two neighbouring tiles of one flat yellow band (ukbench08996, the look-alike set's last
    false pair at 1,000 images) agree in shape, colour layout, texture and structure (NCC 0.945);
    only their edges differ. A re-encoded, resized copy of one tile keeps its edges."""
    from indexer.evidence import from_file
    from search.dups import evidence
    from search.dups.evidence import judge

    with Image.open(IMAGEDEDUP / "base_images" / "ukbench08996.jpg") as img:
        img = img.convert("RGB")
    tw, th = img.width // 4, img.height // 4
    left, right = img.crop((tw, 0, 2 * tw, th)), img.crop((2 * tw, 0, 3 * tw, th))
    left.resize((tw * 4, th * 4)).save(tmp_path / "left.jpg", quality=90)
    right.resize((tw * 4, th * 4)).save(tmp_path / "right.jpg", quality=90)
    left.resize((tw * 3, th * 3)).save(tmp_path / "copy.jpg", quality=70)
    seen = {name: from_file(str(tmp_path / f"{name}.jpg")) for name in ("left", "right", "copy")}

    def judged(a: str, b: str) -> str | None:
        (ea, wa, ha), (eb, wb, hb) = seen[a], seen[b]
        return judge(ea, (wa, ha), eb, (wb, hb))

    assert all(lowinfo.is_low(ev, w, h) for ev, w, h in seen.values())
    assert judged("left", "copy") == "looks"
    assert judged("left", "right") is None
    monkeypatch.setattr(evidence, "LOOKS_EDGES", float("inf"))  # no edge check ...
    monkeypatch.setattr(evidence, "STRUCTURE_NCC", 0.9)  # ... and the old structure floor
    monkeypatch.setattr(evidence, "STRUCTURE_NOISE", 0.0)
    assert judged("left", "right") == "looks"  # they looked alike


def test_near_black_pictures_from_one_template_are_not_one_picture(tmp_path, monkeypatch):
    """Darkened scenes of one template (5,200 distractors: 24 false `looks` links) share layout,
    colour and texture, and their structure correlates 0.86-0.97 once contrast is normalised;
    their copies (half size, brighter, grey) correlate >= 0.98 where the picture has a spread of
    2 grey levels or more. The structure floor is what tells
    them apart, less for fainter pictures, whose own rounding noise lowers a copy's correlation."""
    from indexer.evidence import from_file
    from search.dups import evidence
    from search.dups.evidence import judge

    make = distractor_generator()
    style = make.style_for("dark", np.random.default_rng(9))  # one that correlates 0.966
    style["inner"], style["style"] = (
        "landscape",
        make.style_for("landscape", np.random.default_rng(109)),
    )
    first = make.render("dark", style, np.random.default_rng(1), (900, 600))
    make.render("dark", style, np.random.default_rng(2), (900, 600)).save(
        tmp_path / "b.jpg", quality=90
    )
    first.save(tmp_path / "a.jpg", quality=90)
    first.resize((450, 300)).save(tmp_path / "half.jpg", quality=75)
    ImageEnhance.Brightness(first).enhance(1.3).save(tmp_path / "bright.jpg", quality=85)
    seen = {n: from_file(str(tmp_path / f"{n}.jpg")) for n in ("a", "b", "half", "bright")}

    def judged(a: str, b: str) -> str | None:
        (ea, wa, ha), (eb, wb, hb) = seen[a], seen[b]
        return judge(ea, (wa, ha), eb, (wb, hb))

    assert all(lowinfo.is_low(ev, w, h) for ev, w, h in seen.values())
    assert judged("a", "half") is not None and judged("a", "bright") is not None
    assert judged("a", "b") is None
    monkeypatch.setattr(evidence, "STRUCTURE_NCC", 0.9)  # the old floor: one picture
    monkeypatch.setattr(evidence, "STRUCTURE_NOISE", 0.0)
    assert judged("a", "b") == "looks"


def test_two_pages_of_one_layout_are_no_tone_copy(tmp_path, monkeypatch):
    """Two pages with one layout (d01632 / d02859 of the distractors: a title, a figure, lines of
    text) match over the whole frame at 64 px inside their margins; at 192 px their words
    differ. A half-size JPEG of a page keeps its words."""
    from indexer.evidence import from_file
    from search.dups import evidence, tint
    from search.dups.evidence import judge

    first = distractor(1632, tmp_path)
    with Image.open(first) as img:
        img.resize((img.width // 2, img.height // 2)).save(tmp_path / "half.jpg", quality=80)
    seen = [
        from_file(p)
        for p in (first, distractor(2859, tmp_path, stream=1), str(tmp_path / "half.jpg"))
    ]
    (ea, wa, ha), (eb, wb, hb), (ec, wc, hc) = seen
    assert ea.fine is not None and eb.fine is not None
    assert judge(ea, (wa, ha), eb, (wb, hb)) is None
    assert judge(ea, (wa, ha), ec, (wc, hc)) is not None
    monkeypatch.setattr(evidence, "TONE_FINE_NCC", -1.0)
    assert judge(ea, (wa, ha), eb, (wb, hb)) is None  # their colours differ as well (tint.py)
    monkeypatch.setattr(tint, "MAX_DISAGREEMENT", np.inf)
    assert judge(ea, (wa, ha), eb, (wb, hb)) == "tone"
