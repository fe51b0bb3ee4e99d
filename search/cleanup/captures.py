"""Files of one capture: same-stem renditions (RAW + JPEG/HEIC), Live Photo videos, sidecars.

Files in one folder whose names share a stem (case-insensitive) are one capture: `IMG_0001.CR2`,
`IMG_0001.JPG`, `IMG_0001.HEIC`, `IMG_0001.MOV`, `IMG_0001.xmp`. A sidecar may also be named after
the whole file (`IMG_0001.JPG.xmp`). Renditions of one capture are never removed in favour of each
other; sidecars and Live Photo videos follow their image when it is moved or removed, unless
another rendition of the capture stays in the folder.
"""

import os
from dataclasses import dataclass

from indexer.files import IMAGE_EXTENSIONS, LIVE_EXTENSIONS, RAW_EXTENSIONS, SIDECAR_EXTENSIONS


@dataclass(frozen=True)
class Companion:
    path: str
    role: str  # "raw", "rendition", "sidecar" or "live"
    own: bool = False  # a sidecar named after this very file (IMG_1.JPG.xmp): always follows


def capture_key(path: str) -> tuple[str, str]:
    """(folder, lower-case stem): equal keys mean one capture."""
    folder, name = os.path.split(os.path.abspath(path))
    return folder, os.path.splitext(name)[0].lower()


def role_of(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    if ext in RAW_EXTENSIONS:
        return "raw"
    if ext in SIDECAR_EXTENSIONS:
        return "sidecar"
    if ext in LIVE_EXTENSIONS:
        return "live"
    if ext in IMAGE_EXTENSIONS:
        return "rendition"
    return None


def companions(path: str) -> list[Companion]:
    """The other files of `path`'s capture, found next to it on disk."""
    folder, stem = capture_key(path)
    name = os.path.basename(path)
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    out = []
    for entry in entries:
        if entry == name:
            continue
        own = entry.lower() in {f"{name.lower()}{ext}" for ext in SIDECAR_EXTENSIONS}
        base = os.path.splitext(entry)[0].lower()
        role = "sidecar" if own else role_of(entry)
        if role and (own or base == stem) and os.path.isfile(os.path.join(folder, entry)):
            out.append(Companion(os.path.join(folder, entry), role, own))
    return out


def followers(path: str, leaving: set[str]) -> list[Companion]:
    """Companions that go wherever `path` goes, given every path this plan moves or removes."""
    found = companions(path)
    stays = any(c.role in ("raw", "rendition") and c.path not in leaving for c in found)
    return [c for c in found if c.own or (c.role in ("sidecar", "live") and not stays)]


def capture_formats(path: str) -> tuple[str, ...]:
    """Extensions of the capture's other pictures (so a JPEG with a RAW beside it ranks as RAW)."""
    return tuple(
        os.path.splitext(c.path)[1].lower()
        for c in companions(path)
        if c.role in ("raw", "rendition")
    )
