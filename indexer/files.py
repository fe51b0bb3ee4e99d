"""Image files under a set of roots, with the stat info incremental indexing needs, and their
content hashes."""

import fnmatch
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

HASH_CHUNK_BYTES = 1 << 20
RAW_EXTENSIONS = frozenset(  # camera RAW: read through LibRaw (indexer/raw.py)
    ".cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf .rw2 .pef .srw .dng .3fr .iiq .x3f .erf "
    ".mef .mos .kdc .rwl".split()
)
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})  # through pillow-heif
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
# Extensions we try to decode: camera RAW, and what Pillow (with pillow-heif) opens, minus
# formats that are documents rather than pictures. Lower-case, with the dot. The one list: the
# walk, uploads to the page (and its file picker), Ray workers and keep criteria all read it.
IMAGE_EXTENSIONS = (
    RAW_EXTENSIONS
    | HEIF_EXTENSIONS
    | JPEG_EXTENSIONS
    | frozenset(
        ".png .apng .gif .webp .bmp .dib .tif .tiff .avif "
        ".ppm .pgm .pbm .pnm .tga .ico .jp2 .j2k .jpx .qoi .dds .pcx .sgi .psd".split()
    )
)
# Not pictures, but a picture's companions (search/cleanup/captures.py): edit sidecars, and the
# video half of a Live Photo / Motion Photo. Never indexed; they follow their image in a clean-up.
SIDECAR_EXTENSIONS = frozenset(".xmp .aae .pp3 .dop .thm .on1 .cos".split())
LIVE_EXTENSIONS = frozenset({".mov", ".mp4"})
# What keep criteria call formats (`format:raw,jpeg`) -> their extensions, all of them indexed.
# No `jxl`: the Pillow dinosearch installs has no JPEG XL decoder, so no .jxl file is indexed.
FORMAT_NAMES = {
    "raw": RAW_EXTENSIONS,
    "jpeg": JPEG_EXTENSIONS,
    "heic": HEIF_EXTENSIONS,
    "tiff": frozenset({".tif", ".tiff"}),
    "png": frozenset({".png"}),
    "webp": frozenset({".webp"}),
    "avif": frozenset({".avif"}),
    "gif": frozenset({".gif"}),
    "bmp": frozenset({".bmp", ".dib"}),
}


@dataclass(frozen=True)
class FileStat:
    path: str  # absolute, not resolved through symlinks: the path the user sees
    size: int  # bytes
    mtime_ns: int


@dataclass(frozen=True)
class WalkError:
    path: str
    error: str


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_excluded(rel: str, name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def walk(
    roots: Iterable[str | Path],
    *,
    skip: Iterable[str | Path] = (),
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    errors: list[WalkError] | None = None,
) -> Iterator[FileStat]:
    """Yield image files under each root (a root may also be a single file).

    Symlinked directories are followed once each (loops are cut by (device, inode)); unreadable
    directories and files that vanish mid-walk are appended to ``errors`` instead of raising.
    """
    skip_real = {os.path.realpath(p) for p in skip}
    patterns = tuple(exclude)
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        root = os.path.abspath(os.path.expanduser(str(root)))
        if os.path.isfile(root):
            if st := _stat(root, errors):
                yield FileStat(root, st.st_size, st.st_mtime_ns)
            continue
        if not os.path.isdir(root):
            if errors is not None:
                errors.append(WalkError(root, "no such file or directory"))
            continue
        yield from _walk_dir(root, skip_real, patterns, include_hidden, seen_dirs, errors)


def _walk_dir(root, skip_real, patterns, include_hidden, seen_dirs, errors):
    def onerror(exc: OSError) -> None:
        if errors is not None:
            errors.append(WalkError(exc.filename or root, exc.strerror or str(exc)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs or os.path.realpath(dirpath) in skip_real:
            dirnames[:] = []  # a symlink loop, a directory reached twice, or the library itself
            continue
        seen_dirs.add(key)
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if (include_hidden or not d.startswith("."))
            and not is_excluded(os.path.normpath(os.path.join(rel_dir, d)), d, patterns)
        )
        for name in sorted(filenames):
            if not is_image_name(name) or (not include_hidden and name.startswith(".")):
                continue
            if is_excluded(os.path.normpath(os.path.join(rel_dir, name)), name, patterns):
                continue
            path = os.path.join(dirpath, name)
            if not _utf8(path, errors):
                continue
            if st := _stat(path, errors):
                yield FileStat(path, st.st_size, st.st_mtime_ns)


def _utf8(path: str, errors: list[WalkError] | None) -> bool:
    """The library stores paths as UTF-8 text; a name that is not valid UTF-8 is reported."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        if errors is not None:
            shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            errors.append(WalkError(shown, "file name is not valid UTF-8; rename it to index it"))
        return False


def _stat(path: str, errors: list[WalkError] | None) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except OSError as exc:  # dangling symlink, vanished file, permission denied
        if errors is not None:
            errors.append(WalkError(path, exc.strerror or str(exc)))
        return None
    return st if os.path.isfile(path) else None


def sha256_file(path: str) -> str:
    """The file's content hash, read in 1 MiB chunks (hashlib releases the GIL: threads help)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
