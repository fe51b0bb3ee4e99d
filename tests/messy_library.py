"""A messy photo folder like the ones people really have, and the checks a dups report must pass.

`build(out, photos, seed)` writes, deterministically from the seed, out of the real test photos
(read in place from ../shared/testdata): camera originals (JPEG, some PNG), a backup of some of
them, a phone export (resized, recompressed, renamed), the downloads of that export (byte copies
and copies of copies), edits (grey, crop, brightness), a lossless WebP twin, distinct graphics
with one byte copy and one same-pixels copy, junk, odd names and photos with no copy at all.
It returns (and writes as manifest.json) a Manifest naming every file and the planted truth.

    python -m tests.messy_library OUT_DIR [--photos N] [--copies K] [--seed S]

The defaults make about 50 files; `--photos 40` about 120 (past the 100 images whitening needs);
`--photos 55 --copies 2` about 250, for benchmarks. manifest.json lies in OUT_DIR (not an image
name: `index` never reads it).

The check helpers (`report_problems`, `one_group_violations`, `missed_pairs`, `mixed_graphics`,
`plan_violations`) take the JSON of `dups --json` / `dups --plan` and the manifest.
"""

import argparse
import datetime as dt
import hashlib
import io
import itertools
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"
DEFAULT_PHOTOS = 14  # about 50 files
MIN_PHOTOS = 8  # one original for each role pattern up to the second with no copies
BENCH_PHOTOS, BENCH_COPIES = 55, 2  # about 250 files
STRICT = ("byte-copy", "same-pixels")  # found whatever the model: same bytes or same pixels
NEAR = ("reencode", "resize")  # a good model groups these with their source
HARD = ("grey", "crop", "brightness")  # weak or random models may miss these
EDITS = HARD
EPOCH = dt.datetime(2015, 6, 11, 9, 0, 0)
# Which copies each original gets, in turn over the shuffled originals (empty: none at all).
ROLE_PATTERNS = (
    ("backup",),
    ("phone", "download-copy"),
    ("edit",),
    (),
    ("backup", "phone", "download-reencode"),
    ("phone",),
    ("backup", "edit"),
    (),
    ("phone", "download-copy", "download-reencode", "edit"),
    ("backup", "phone"),
)
GRAPHIC_SIZE = (320, 240)
UNICODE_NAME = "Été 2015 ✓"


@dataclass
class Entry:
    path: str  # relative to the root, "/"-separated
    kind: str  # original, backup, phone, download, edit, export, graphic, junk, ...
    of: str | None = None  # the file it was made from
    how: str | None = None  # byte-copy, same-pixels, reencode, resize, grey, crop, brightness
    source: str | None = None  # the real photo (a file name under testdata) it shows


@dataclass
class Planted:
    source: str  # the original every member comes from
    members: list[str]  # source and copies a good model groups (byte, pixels, re-encode, resize)
    hard: list[str] = field(default_factory=list)  # grey, crop and brightness edits


@dataclass
class Manifest:
    root: str
    seed: int
    photos: int
    copies: int
    files: list[Entry] = field(default_factory=list)
    groups: list[Planted] = field(default_factory=list)
    graphics: list[str] = field(default_factory=list)  # pairwise distinct: never one group
    failed: list[str] = field(default_factory=list)  # junk `index` must report as failed
    ignored: list[str] = field(default_factory=list)  # not image names: never walked
    singletons: list[str] = field(default_factory=list)  # photos with no copy at all
    odd_names: list[str] = field(default_factory=list)  # unicode, spaces, a leading dash
    unused: list[str] = field(default_factory=list)  # real photos (absolute) left out

    def abs(self, rel: str) -> str:
        """The absolute path of a manifest path, as the library stores it."""
        return os.path.join(self.root, *rel.split("/"))

    def rel(self, path: str) -> str:
        """A path relative to the root when it lies under it, else unchanged."""
        inside = os.path.commonpath([self.root, path]) == self.root
        return os.path.relpath(path, self.root).replace(os.sep, "/") if inside else path

    def images(self) -> list[str]:
        """Absolute paths of every file `index` must index."""
        skip = set(self.failed) | set(self.ignored)
        return [self.abs(e.path) for e in self.files if e.path not in skip]

    def pairs(self, hows=STRICT) -> list[tuple[str, str, str]]:
        """(copy, made from, how) as absolute paths, for the planted copies of these kinds."""
        return [(self.abs(e.path), self.abs(e.of), e.how) for e in self.files if e.how in hows]

    def entry(self, rel: str) -> Entry:
        return next(e for e in self.files if e.path == rel)

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", "utf-8")

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        data = json.loads(Path(path).read_text("utf-8"))
        data["files"] = [Entry(**e) for e in data["files"]]
        data["groups"] = [Planted(**g) for g in data["groups"]]
        return cls(**data)


# --- sources and encodings -----------------------------------------------------------------------


def source_photos() -> list[Path]:
    """The real colour photos: Kodak, McMaster, Set14 (Set5 repeats Set14's pictures)."""
    more = SHARED / "photos-more"
    files = sorted((SHARED / "photos").glob("*.png")) + sorted(more.glob("*.tif"))
    files += sorted(more.glob("set14_*.png"))
    return [p for p in files if _mode(p) == "RGB"]


def _mode(path: Path) -> str:
    with Image.open(path) as img:
        return img.mode


def load_rgb(path: Path | str) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def jpeg(img: Image.Image, quality: int, exif: Image.Exif | None = None) -> bytes:
    extra = {"exif": exif} if exif is not None else {}
    return encode(img, "JPEG", quality=quality, **extra)


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def camera_exif(
    when: dt.datetime, make: str = "Canon", model: str = "Canon EOS 600D"
) -> Image.Exif:
    """EXIF a camera writes: make, model, date (and DateTimeOriginal)."""
    exif = Image.Exif()
    stamp = when.strftime("%Y:%m:%d %H:%M:%S")
    exif[0x010F], exif[0x0110], exif[0x0132] = make, model, stamp
    exif.get_ifd(0x8769)[0x9003] = stamp
    return exif


def scaled(img: Image.Image, factor: float) -> Image.Image:
    size = (max(16, round(img.width * factor)), max(16, round(img.height * factor)))
    return img.resize(size, Image.Resampling.LANCZOS)


def edited(img: Image.Image, how: str, rng: random.Random) -> Image.Image:
    """A person's edit: grey, a 10-20 % crop, or brighter with more contrast."""
    if how == "grey":
        return ImageOps.grayscale(img)
    if how == "crop":
        keep = 1 - rng.uniform(0.10, 0.20)
        w, h = round(img.width * keep), round(img.height * keep)
        left, top = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
        return img.crop((left, top, left + w, top + h))
    brighter = ImageEnhance.Brightness(img).enhance(rng.uniform(1.2, 1.3))
    return ImageEnhance.Contrast(brighter).enhance(1.15)


# --- graphics ------------------------------------------------------------------------------------


def _flat(colour) -> Image.Image:
    return Image.new("RGB", GRAPHIC_SIZE, colour)


def _gradient(start, end, vertical: bool) -> Image.Image:
    w, h = GRAPHIC_SIZE
    steps = h if vertical else w
    line = Image.new("RGB", (1, steps) if vertical else (steps, 1))
    for i in range(steps):
        t = i / (steps - 1)
        colour = tuple(round(a + (b - a) * t) for a, b in zip(start, end, strict=True))
        line.putpixel((0, i) if vertical else (i, 0), colour)
    return line.resize(GRAPHIC_SIZE, Image.Resampling.NEAREST)


def _checkerboard(square: int = 20) -> Image.Image:
    img = Image.new("RGB", GRAPHIC_SIZE, "white")
    for y in range(0, GRAPHIC_SIZE[1], square):
        for x in range(0, GRAPHIC_SIZE[0], square):
            if (x // square + y // square) % 2:
                img.paste((20, 20, 20), (x, y, x + square, y + square))
    return img


def _icon() -> Image.Image:
    img = Image.new("RGB", (16, 16), (250, 250, 245))
    for i in range(16):
        img.putpixel((i, i), (200, 20, 40))
        img.putpixel((15 - i, i), (200, 20, 40))
    img.paste((30, 90, 200), (5, 5, 11, 11))
    return img


def graphics() -> dict[str, Image.Image]:
    """Distinct graphics by file name: flat colours, gradients, a checkerboard, a 16x16 icon."""
    return {
        "flat-red.png": _flat((200, 30, 30)),
        "flat-teal.png": _flat((20, 140, 140)),
        "flat-grey.png": _flat((128, 128, 128)),
        "gradient-horizontal.png": _gradient((0, 0, 0), (255, 255, 255), vertical=False),
        "gradient-vertical.png": _gradient((20, 30, 120), (250, 160, 40), vertical=True),
        "checkerboard.png": _checkerboard(),
        "icon-16.png": _icon(),
    }


# --- the builder ---------------------------------------------------------------------------------


class _Builder:
    """Writes files under the root with fixed mtimes and records them in the manifest."""

    def __init__(self, manifest: Manifest, rng: random.Random):
        self.m, self.rng = manifest, rng
        self.root = Path(manifest.root)

    def write(self, rel: str, data: bytes, entry: Entry, when: dt.datetime) -> str:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stamp = int(when.timestamp()) * 1_000_000_000
        os.utime(path, ns=(stamp, stamp))
        self.m.files.append(entry)
        return rel

    def copy(self, rel: str, of: str, kind: str, how: str = "byte-copy", when=None) -> str:
        src = self.root / of
        when = when or dt.datetime.fromtimestamp(src.stat().st_mtime)
        entry = Entry(rel, kind, of, how, self.m.entry(of).source)
        return self.write(rel, src.read_bytes(), entry, when)

    def derived(self, rel: str, data: bytes, of: str, kind: str, how: str, when) -> str:
        return self.write(rel, data, Entry(rel, kind, of, how, self.m.entry(of).source), when)


@dataclass
class _Photo:
    """One original and what was made from it."""

    rel: str
    image: Image.Image
    roles: tuple[str, ...]
    when: dt.datetime
    members: list[str] = field(default_factory=list)
    hard: list[str] = field(default_factory=list)


def build(out: Path, photos: int = DEFAULT_PHOTOS, seed: int = 0, copies: int = 1) -> Manifest:
    """Write the messy folder under `out` (created; should be empty) and its manifest.json."""
    pool = source_photos()
    if not MIN_PHOTOS <= photos <= len(pool):
        raise ValueError(f"photos: {MIN_PHOTOS} to {len(pool)} (the real photos), not {photos}")
    out = Path(os.path.abspath(out))
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rng.shuffle(pool)
    manifest = Manifest(str(out), seed, photos, copies, unused=[str(p) for p in pool[photos:]])
    b = _Builder(manifest, rng)
    originals = _originals(b, pool[:photos])
    for k in range(copies):
        _backups(b, originals, k)
        _phone_and_downloads(b, originals, k)
        _edits(b, originals, k)
    _odd_copies(b, originals)
    _webp_twin(b, originals)
    _graphics(b)
    _junk(b, originals)
    _record_groups(manifest, originals)
    manifest.write(out / "manifest.json")
    return manifest


def _originals(b: _Builder, sources: list[Path]) -> list[_Photo]:
    """Camera files DCIM/IMG_0001.jpg ... (JPEG q92 with EXIF; about one in four kept as PNG)."""
    out, unicode_done = [], False
    for i, src in enumerate(sources):
        roles = ROLE_PATTERNS[i % len(ROLE_PATTERNS)]
        img, when = load_rgb(src), EPOCH + dt.timedelta(hours=i, minutes=b.rng.randint(0, 59))
        as_png = i % len(ROLE_PATTERNS) in (2, 5, 7)
        stem = f"IMG_{i + 1:04d}"
        if not unicode_done and "backup" in roles and not as_png:
            stem, unicode_done = UNICODE_NAME, True  # a name with spaces, accents and a symbol
            b.m.odd_names.append(f"DCIM/{stem}.jpg")
        rel = f"DCIM/{stem}.png" if as_png else f"DCIM/{stem}.jpg"
        data = encode(img, "PNG") if as_png else jpeg(img, 92, camera_exif(when))
        b.write(rel, data, Entry(rel, "original", source=src.name), when)
        out.append(_Photo(rel, img, roles, when, [rel]))
        if not roles:
            b.m.singletons.append(rel)
    return out


def _backups(b: _Builder, originals: list[_Photo], k: int) -> None:
    """Backup/2015/...: byte copies under the same names (and mtimes)."""
    for p in (p for p in originals if "backup" in p.roles):
        rel = f"Backup/{2015 + k}/{p.rel.split('/')[-1]}"
        p.members.append(b.copy(rel, p.rel, "backup"))


def _phone_stamp(p: _Photo, k: int) -> dt.datetime:
    return p.when + dt.timedelta(days=1 + 30 * k, seconds=p.image.width + p.image.height)


def _phone_and_downloads(b: _Builder, originals: list[_Photo], k: int) -> None:
    """Phone/IMG_YYYYMMDD_HHMMSS.jpg (50-70 %, q80) and Downloads/... (1).jpg, (2).jpg of those."""
    for p in (p for p in originals if "phone" in p.roles):
        when = _phone_stamp(p, k)
        stem = when.strftime("IMG_%Y%m%d_%H%M%S")
        small = scaled(p.image, b.rng.uniform(0.5, 0.7))
        exif = camera_exif(when, "Google", "Pixel 3")
        phone = b.derived(
            f"Phone/{stem}.jpg", jpeg(small, 80, exif), p.rel, "phone", "resize", when
        )
        p.members.append(phone)
        later, n = when + dt.timedelta(days=200), 1
        if "download-copy" in p.roles:
            rel = f"Downloads/{stem} ({n}).jpg"
            p.members.append(b.copy(rel, phone, "download", when=later))
            n += 1
        if "download-reencode" in p.roles:
            again = jpeg(decode((b.root / phone).read_bytes()), b.rng.choice((70, 75, 85)))
            rel = f"Downloads/{stem} ({n}).jpg"
            p.members.append(b.derived(rel, again, phone, "download", "reencode", later))


def _edits(b: _Builder, originals: list[_Photo], k: int) -> None:
    """Edits/IMG_0003-edited.jpg: grey, crop and brightness edits, in turn."""
    edited_ones = [p for p in originals if "edit" in p.roles]
    for n, p in enumerate(edited_ones):
        how = EDITS[(n + k) % len(EDITS)]
        img = edited(p.image, how, b.rng)
        suffix = "-edited" if k == 0 else f"-edited-{k + 1}"
        rel = f"Edits/{Path(p.rel).stem}{suffix}.jpg"
        when = p.when + dt.timedelta(days=400 + k)
        p.hard.append(b.derived(rel, jpeg(img, 90), p.rel, "edit", how, when))


def _odd_copies(b: _Builder, originals: list[_Photo]) -> None:
    """A byte copy named with a leading dash, a re-encode named with spaces and brackets."""
    dashed = next(p for p in originals if p.roles == ("edit",))
    rel = f"Downloads/-{dashed.rel.split('/')[-1]}"
    dashed.members.append(b.copy(rel, dashed.rel, "download", when=dashed.when))
    spaced = next(p for p in originals if p.roles == ("phone",))
    rel = "Desktop/photo for mum (final).jpg"
    when = spaced.when + dt.timedelta(days=3)
    spaced.members.append(
        b.derived(rel, jpeg(spaced.image, 85), spaced.rel, "desktop", "reencode", when)
    )
    b.m.odd_names += [dashed.members[-1], rel]


def _webp_twin(b: _Builder, originals: list[_Photo]) -> None:
    """One PNG original re-saved as lossless WebP: the same pixels in other bytes."""
    p = next(p for p in originals if p.rel.endswith(".png"))
    data = encode(p.image, "WEBP", lossless=True)
    rel = f"Exports/{Path(p.rel).stem}.webp"
    p.members.append(b.derived(rel, data, p.rel, "export", "same-pixels", p.when))


def _graphics(b: _Builder) -> None:
    """Distinct graphics, one byte copy and one same-pixels (BMP) copy."""
    when = EPOCH + dt.timedelta(days=1100)
    for name, img in graphics().items():
        rel = f"Graphics/{name}"
        b.write(rel, encode(img, "PNG"), Entry(rel, "graphic"), when)
        b.m.graphics.append(rel)
    gradient, checker = "Graphics/gradient-horizontal.png", "Graphics/checkerboard.png"
    copy = b.copy("Graphics/gradient-horizontal copy.png", gradient, "graphic")
    data = encode(load_rgb(b.root / checker), "BMP")
    twin = b.derived("Graphics/checkerboard.bmp", data, checker, "graphic", "same-pixels", when)
    b.m.groups += [Planted(gradient, [gradient, copy]), Planted(checker, [checker, twin])]


def _junk(b: _Builder, originals: list[_Photo]) -> None:
    """notes.txt (not an image name), a truncated JPEG and an empty .jpg."""
    when = EPOCH + dt.timedelta(days=1500)
    b.write("notes.txt", b"photos to sort out before the trip\n", Entry("notes.txt", "junk"), when)
    b.m.ignored.append("notes.txt")
    whole = jpeg(originals[-1].image, 92)
    rel = f"DCIM/IMG_{len(originals) + 1:04d}.jpg"
    b.write(rel, whole[: len(whole) * 2 // 5], Entry(rel, "junk"), when)
    b.write("Downloads/empty.jpg", b"", Entry("Downloads/empty.jpg", "junk"), when)
    b.m.failed += [rel, "Downloads/empty.jpg"]


def _record_groups(m: Manifest, originals: list[_Photo]) -> None:
    planted = [
        Planted(p.rel, p.members, p.hard) for p in originals if len(p.members) + len(p.hard) > 1
    ]
    m.groups = planted + m.groups


# --- a new card to check --against the library ---------------------------------------------------


def make_card(out: Path, manifest: Manifest) -> dict[str, str | None]:
    """A new SD card: a byte copy of one original with copies, a re-encode of another, and a photo
    the library lacks. Returns card path -> the library path it copies (None: a new picture)."""
    out = Path(os.path.abspath(out))
    out.mkdir(parents=True, exist_ok=True)
    sources = [g.source for g in manifest.groups if g.source.startswith("DCIM/")]
    byte_of, reencode_of = manifest.abs(sources[0]), manifest.abs(sources[1])
    card = {str(out / "DSC_0001.jpg"): byte_of, str(out / "DSC_0002.jpg"): reencode_of}
    (out / "DSC_0001.jpg").write_bytes(Path(byte_of).read_bytes())
    (out / "DSC_0002.jpg").write_bytes(jpeg(load_rgb(reencode_of), 85))
    if manifest.unused:
        (out / "DSC_0003.jpg").write_bytes(jpeg(load_rgb(manifest.unused[0]), 92))
        card[str(out / "DSC_0003.jpg")] = None
    return card


# --- checks on dups reports and plans ------------------------------------------------------------


def group_index(report: dict) -> dict[str, list[int]]:
    """Path -> the numbers (from 1) of the groups of a dups JSON report it appears in."""
    index: dict[str, list[int]] = {}
    for number, group in enumerate(report["groups"], 1):
        for member in group["members"]:
            index.setdefault(member["path"], []).append(number)
    return index


def one_group_violations(report: dict) -> dict[str, list[int]]:
    """Paths that appear in more than one group (or twice in one), with those groups."""
    return {p: g for p, g in group_index(report).items() if len(g) > 1}


def plan_violations(plan: dict) -> dict[str, list[int]]:
    """Paths that appear in more than one group of a plan (JSON of `dups --plan`)."""
    index: dict[str, list[int]] = {}
    for group in plan["groups"]:
        for f in group["files"]:
            index.setdefault(f["path"], []).append(group["group"])
    return {p: g for p, g in index.items() if len(g) > 1}


def missed_pairs(report: dict, manifest: Manifest, hows=STRICT) -> list[tuple[str, str, str]]:
    """Planted (copy, made from, how) pairs of these kinds that share no group of the report."""
    index = group_index(report)
    return [
        (copy, of, how)
        for copy, of, how in manifest.pairs(hows)
        if not set(index.get(copy, ())) & set(index.get(of, ()))
    ]


def graphic_identity(manifest: Manifest) -> dict[str, str]:
    """Absolute path of each distinct graphic and of its copies -> the distinct graphic."""
    ident = {manifest.abs(g): g for g in manifest.graphics}
    for e in manifest.files:
        if e.kind == "graphic" and e.of:
            ident[manifest.abs(e.path)] = e.of
    return ident


def mixed_graphics(report: dict, manifest: Manifest) -> list[list[str]]:
    """Groups holding two or more distinct graphics: the distinct graphics of each."""
    ident = graphic_identity(manifest)
    mixed = []
    for group in report["groups"]:
        found = sorted({ident[m["path"]] for m in group["members"] if m["path"] in ident})
        if len(found) > 1:
            mixed.append(found)
    return mixed


def report_problems(report: dict, manifest: Manifest) -> list[str]:
    """What a whole-library dups report gets wrong against the planted truth: a path in two
    groups, a byte or pixel copy apart from its source, two distinct graphics in one group."""
    problems = [
        f"{manifest.rel(p)} is in groups {g}" for p, g in one_group_violations(report).items()
    ]
    problems += [
        f"{how} {manifest.rel(c)} is not grouped with {manifest.rel(o)}"
        for c, o, how in missed_pairs(report, manifest)
    ]
    problems += [f"distinct graphics in one group: {g}" for g in mixed_graphics(report, manifest)]
    return problems


def recall(report: dict, manifest: Manifest) -> dict[str, float]:
    """Share of planted pairs of each kind grouped with what they were made from (for reports)."""
    out = {}
    for how in STRICT + NEAR + HARD:
        total = manifest.pairs((how,))
        if total:
            out[how] = round(1 - len(missed_pairs(report, manifest, (how,))) / len(total), 3)
    return out


# Different files of the shared photos that show the same picture (bench/README.md).
NATURAL = {frozenset({"set14_img_006_SRF_2_HR.png", "set5_img_004_SRF_2_HR.png"})}


def picture_of(manifest: Manifest) -> dict[str, str]:
    """Absolute path -> the picture it shows (its original's source photo, or its graphic)."""
    by_rel = {e.path: e for e in manifest.files}

    def root(rel: str) -> str:
        while by_rel[rel].of:
            rel = by_rel[rel].of
        return rel

    out = {}
    for e in manifest.files:
        top = by_rel[root(e.path)]
        name = os.path.basename(top.source) if top.source else top.path
        twin = next((min(n) for n in NATURAL if name in n), name)
        out[manifest.abs(e.path)] = twin
    return out


def quality(report: dict, manifest: Manifest) -> dict:
    """Recall per kind of planted copy, and the precision of every pair the report groups."""
    picture = picture_of(manifest)
    pairs = [
        (a["path"], b["path"])
        for g in report["groups"]
        for a, b in itertools.combinations(g["members"], 2)
    ]
    right = sum(picture.get(a) is not None and picture.get(a) == picture.get(b) for a, b in pairs)
    return {
        "recall": recall(report, manifest),
        "pair_precision": round(right / len(pairs), 4) if pairs else 1.0,
        "pairs": len(pairs),
        "wrong_pairs": len(pairs) - right,
        "in_two_groups": len(one_group_violations(report)),
        "mixed_graphics": len(mixed_graphics(report, manifest)),
    }


def sha256_tree(root: str | Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under root."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.messy_library", description=__doc__)
    parser.add_argument("out", type=Path, help="folder to create (should be empty)")
    parser.add_argument("--photos", type=int, default=DEFAULT_PHOTOS, help="real photos used")
    parser.add_argument("--copies", type=int, default=1, help="rounds of backups/exports/edits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = build(args.out, args.photos, args.seed, args.copies)
    print(Path(manifest.root) / "manifest.json")


if __name__ == "__main__":
    main()
