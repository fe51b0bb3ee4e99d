"""Where a 12-MP HEIC's decode time goes: container parse, libheif's decode of the primary image
(HEVC in libde265, then chroma upsampling and YCbCr->RGB in libheif), the copy into Pillow, our
RGB conversion and the resize; per decode thread count, for a single-stream HEIC and an
iPhone-like grid one, next to the embedded thumbnail. With `perf` on PATH, also the share of CPU
time per library (libde265 vs libheif vs Pillow) over the whole `decode_file`.

    python bench/make_perf_images.py --heic 40 && python bench/heic_images.py   # once
    python bench/heic_profile.py [--files 4] [--quick]
"""

import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import pillow_heif
from heic_images import OUT as HEIC_IMAGES
from make_perf_images import OUT as PERF_IMAGES
from PIL import Image

from indexer.decode import Recipe, decode_file, preprocess, to_rgb

SETS = {"single stream, no thumbnail": PERF_IMAGES / "heic", "iPhone-like grid": None}
THREADS = (1, 2, 4)


def stages(path: Path, threads: int) -> dict[str, float]:
    """Seconds per stage of one full decode (our default path without a thumbnail)."""
    pillow_heif.options.DECODE_THREADS = threads
    t = [time.perf_counter()]
    data = path.read_bytes()
    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    t.append(time.perf_counter())
    primary = heif[heif.primary_index]
    primary.load()  # libde265 + libheif's colour conversion
    t.append(time.perf_counter())
    img = primary.to_pillow()
    t.append(time.perf_counter())
    rgb = to_rgb(img)
    t.append(time.perf_counter())
    preprocess(rgb, Recipe())
    t.append(time.perf_counter())
    names = ["open", "libheif decode", "to Pillow", "to RGB", "resize+crop"]
    return {n: t[i + 1] - t[i] for i, n in enumerate(names)}


def thumbnail_seconds(path: Path) -> float | None:
    started = time.perf_counter()
    with Image.open(path) as img:
        if img.draft("RGB", (262, 196)) is None:
            return None
        preprocess(to_rgb(img), Recipe(shortest_edge=196, crop=(196, 196)))
    return time.perf_counter() - started


def perf_split(paths: list[Path]) -> dict[str, float] | None:
    """Share of samples per shared object while decode_file runs over `paths` (1 thread)."""
    if shutil.which("perf") is None:
        return None
    out = Path(tempfile.mkdtemp()) / "perf.data"
    code = (
        "import sys, pillow_heif; pillow_heif.options.DECODE_THREADS = 1\n"
        "from indexer.decode import Recipe, decode_file\n"
        "for p in sys.argv[1:]: decode_file(p, Recipe(), None)\n"
    )
    cmd = ["perf", "record", "-q", "-o", str(out), harness.PYTHON, "-c", code, *map(str, paths)]
    if subprocess.run(cmd, cwd=harness.ROOT, capture_output=True).returncode:
        return None
    report = subprocess.run(
        ["perf", "report", "-i", str(out), "--sort", "dso", "--stdio"],
        capture_output=True,
        text=True,
    ).stdout
    shutil.rmtree(out.parent, ignore_errors=True)
    split = {}
    for line in report.splitlines():
        if m := re.match(r"\s*([\d.]+)%\s+(\S+)", line):
            name = re.sub(r"-[0-9a-f]{8}\.so.*|\.so.*", "", m.group(2))
            split[name] = split.get(name, 0.0) + float(m.group(1))
    return {k: round(v, 1) for k, v in split.items() if v >= 0.5}


def main() -> None:
    ap = harness.parser(__doc__, quick="smoke run: 1 file per set")
    ap.add_argument("--files", type=int, default=4)
    args = ap.parse_args()
    if args.quick:
        args.files = 1
    sets = {**SETS, "iPhone-like grid": HEIC_IMAGES / "heic-iphone"}
    data, rows = {}, []
    for name, folder in sets.items():
        files = sorted(folder.glob("*.heic"))[: args.files]
        if not files:
            sys.exit(f"no HEICs in {folder}: run the make scripts in this file's docstring")
        decode_file(str(files[0]), Recipe(), None)  # warm the libraries
        for threads in THREADS:
            per = [stages(f, threads) for f in files]
            med = {k: statistics.median(p[k] for p in per) for k in per[0]}
            data[f"{name}, {threads} threads"] = med
            total = sum(med.values())
            rows.append([name, threads, *(f"{v * 1000:.0f}" for v in med.values()), f"{total:.2f}"])
        thumbs = [s for f in files if (s := thumbnail_seconds(f)) is not None]
        data[f"{name}, thumbnail"] = statistics.median(thumbs) if thumbs else None
        data[f"{name}, perf"] = perf_split(files)
    header = ["file", "decode threads", "open ms", "libheif decode ms", "to Pillow ms"]
    header += ["to RGB ms", "resize+crop ms", "total s"]
    notes = []
    for name in sets:
        thumb = data[f"{name}, thumbnail"]
        notes.append(
            f"- {name}: embedded thumbnail decoded and preprocessed (196 px) in "
            + (f"{thumb * 1000:.0f} ms" if thumb else "- (none)")
            + f"; CPU share per library over decode_file (1 thread): {data[f'{name}, perf']}"
        )
    md = (
        "# Where a 12-MP HEIC's decode time goes\n\n"
        f"Medians over {args.files} files per set.\n\n"
        + harness.table(header, rows)
        + "\n\n"
        + "\n".join(notes)
        + "\n\nlibheif decode = libde265's HEVC decode plus libheif's chroma upsampling and "
        "YCbCr->RGB conversion (one call); the perf split says which of the two it is.\n"
    )
    harness.write_results("perf_heic_profile", md, {"stages": data})
    print(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
