"""Keep-best policy: an ordered list of criteria that picks the file to keep in a duplicate group.

A policy is written `criterion > criterion > ...`, best first, e.g.
`resolution > format:raw,heic,png,jpeg > original-over-edit > exif-complete > oldest >
largest-file > folder:/archive/originals`. The first criterion on which the group's candidates
differ decides; the path (shortest, then alphabetical) breaks a complete tie. A policy may also be
read from a file (one criterion per line or `>`-separated; `#` starts a comment).

Where every criterion of a policy ties (byte- or pixel-identical copies), the file a person
considers the original still wins before the path does: the one not under a backup, copy,
download, export, temporary, cache or trash folder (`original-folder`), then the one not named
like a copy (`original-over-edit`), then the older (`oldest`); only then the shortest path.
"""

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from indexer.decode import parse_capture_time
from indexer.errors import BadQuery
from indexer.files import FORMAT_NAMES
from indexer.paths import is_under

DEFAULT_POLICY = (
    "resolution > exif-complete > original-folder > original-over-edit "
    "> format:raw,tiff,heic,png,jpeg,webp > largest-file > oldest"
)
FORMAT_ALIASES = FORMAT_NAMES  # format name in a policy -> file extensions (indexer/files.py)
EDIT_MARKERS = re.compile(
    r"(?i)([ _.-](edit(ed)?|copy|kopie|copie|copia|export(ed)?)([ -]?\d+)?$"
    r"|^copy of |\(\d+\)$|~\d*$| - copy( \(\d+\))?$"
    r"|(?<=.)(?<!\d-\d\d)(?<!\d-\d)-[1-9]\d?$)"  # IMG_0042-1, photo-2; not 2019-05-12
)
# Folders whose files are copies of a picture kept elsewhere (case-insensitive, a word of the
# folder's name): Backup, Backups, "Old backup 2019", Copies, Downloads, Exports, tmp, Temp, ...
COPY_FOLDER = re.compile(
    r"(?i)(?:^|[^a-z0-9])(?:backups?|bak|cop(?:y|ies)|downloads?|exports?|exported|te?mp"
    r"|temporary|caches?|trash|trashes|recycle(?:d|\.bin| bin)?)(?:$|[^a-z0-9])"
)
# Where a policy ties, these decide before the path (unless the policy already named them).
TIE_BREAKERS = ("original-folder", "original-over-edit", "oldest")
ALTHOUGH = {  # a kept file that looks less original than its runner-up, in words
    "original-folder": lambda f, other: (
        "under " + "/".join(copy_folders(f.path, _common_folder(f.path, other.path))) + "/"
    ),
    "original-over-edit": lambda f, other: "named like a copy",
}


class PolicyError(BadQuery):
    """A --keep policy that cannot be parsed."""


@dataclass
class Facts:
    """What the policy looks at for one candidate file."""

    path: str
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    mtime_ns: int | None = None
    taken: str | None = None  # EXIF capture time, ISO 8601
    exif_fields: int = 0  # how many of EXIF_KEYS are present
    capture_formats: tuple[str, ...] = ()  # extensions of the capture's other files (RAW + JPEG)
    hash: str | None = None  # SHA-256 of the bytes: a complete tie between copies says so

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)

    @property
    def date(self) -> tuple[dt.datetime | None, str]:
        """Earliest known date of the picture: EXIF capture time, else the file's mtime."""
        mtime = dt.datetime.fromtimestamp(self.mtime_ns / 1e9) if self.mtime_ns else None
        taken = _parse_iso(self.taken)
        if taken and (mtime is None or taken <= mtime):
            return taken, "EXIF"
        return mtime, "file"


EXIF_KEYS = 6  # DateTimeOriginal, Make, Model, LensModel, ExposureTime, GPS


@dataclass
class Criterion:
    name: str  # as written in the policy, e.g. "format:raw,jpeg"
    key: Callable[[Facts], Any]  # higher is better: a number, or a tuple compared in order
    show: Callable[[Facts], str]
    # two candidates' values precise enough to tell apart, where `show` may print equal ones
    pair: Callable[[Facts, Facts], tuple[str, str]] | None = None

    def shown(self, a: Facts, b: Facts) -> tuple[str, str]:
        """The values of two candidates this criterion tells apart, as they differ."""
        return self.pair(a, b) if self.pair else (self.show(a), self.show(b))


@dataclass
class Policy:
    text: str
    criteria: list[Criterion] = field(default_factory=list)

    def rank(self, candidates: list[Facts]) -> list[Facts]:
        """Candidates best first (the path breaks a complete tie)."""
        return sorted(candidates, key=self._sort_key)

    def _sort_key(self, f: Facts) -> tuple:
        keys = tuple(_negate(c.key(f)) for c in (*self.criteria, *self.tie_breakers))
        return keys + (len(f.path), f.path)

    @property
    def tie_breakers(self) -> list["Criterion"]:
        """What decides where the policy ties, before the path: TIE_BREAKERS it does not name."""
        named = {c.name for c in self.criteria}
        return [SIMPLE[n]() for n in TIE_BREAKERS if n not in named]

    def explain(self, kept: Facts, runner_up: Facts | None) -> dict:
        """The criterion that put `kept` ahead of `runner_up`, with both values."""
        if runner_up is None:
            return {"criterion": None, "text": "the only candidate (the others are kept anyway)"}
        same = "byte-identical copies (same SHA-256): " if _identical(kept, runner_up) else ""
        for c in self.criteria:
            if c.key(kept) != c.key(runner_up):
                a, b = c.shown(kept, runner_up)
                text = f"{same}{c.name}: {a} beats {b}{self._although(c, kept, runner_up)}"
                return _reason(c.name, a, b, runner_up, text, kept.path)
        for c in self.tie_breakers:
            if c.key(kept) != c.key(runner_up):
                a, b = c.shown(kept, runner_up)
                text = f"{same}every criterion of the policy ties; then {c.name}: {a} beats {b}"
                return _reason(c.name, a, b, runner_up, text, kept.path)
        text = f"{same}every criterion ties; kept the shortest path"
        return _reason("path", kept.path, runner_up.path, runner_up, text, kept.path)

    def _although(self, decided: "Criterion", kept: Facts, runner_up: Facts) -> str:
        """`; kept although under Downloads`: the original-looking runner-up lost on an earlier
        criterion (a larger export beats the original on resolution)."""
        at = next(n for n, c in enumerate(self.criteria) if c is decided)
        for c in (*self.criteria[at + 1 :], *self.tie_breakers):
            if c.name in ALTHOUGH and c.key(runner_up) > c.key(kept):
                why = ALTHOUGH[c.name](kept, runner_up)
                return f"; kept although {why} ({c.name} comes after {decided.name})"
        return ""


def _reason(
    criterion: str, kept: str, other: str, runner_up: Facts, text: str, kept_path: str = ""
) -> dict:
    name = _distinct_name(runner_up.path, kept_path)
    return {
        "criterion": criterion,
        "kept": kept,
        "runner_up": other,
        "runner_up_path": runner_up.path,
        "text": f"{text} (runner-up {name})",
    }


def _distinct_name(path: str, other: str) -> str:
    """The file's name, with as many folders as it takes to tell it from `other`."""
    parts, others = path.split(os.sep), other.split(os.sep)
    for n in range(1, len(parts) + 1):
        if parts[-n:] != others[-n:]:
            return os.path.join(*parts[-n:])
    return path


def _identical(a: Facts, b: Facts) -> bool:
    return bool(a.hash) and a.hash == b.hash


def _negate(key):
    if isinstance(key, tuple):
        return tuple(-k for k in key)
    return -key


def _parse_iso(text: str | None) -> dt.datetime | None:
    return parse_capture_time(text)  # every stored form, on every supported Python


# --- criteria ------------------------------------------------------------------------------------


def _resolution() -> Criterion:
    return Criterion(
        "resolution", lambda f: f.pixels, lambda f: f"{f.width or '?'}x{f.height or '?'}"
    )


def _format(arg: str) -> Criterion:
    names = [n.strip().lower() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMAT_ALIASES and not n.startswith(".")]
    if not names or unknown:
        raise PolicyError(
            f"format:{arg}: name formats from {', '.join(FORMAT_ALIASES)} (or .ext), best first"
        )
    order = [FORMAT_ALIASES.get(n, frozenset({n})) for n in names]

    def rank(ext: str) -> int:
        return next((len(order) - i for i, exts in enumerate(order) if ext in exts), 0)

    def key(f: Facts) -> int:
        return max(rank(e) for e in (_ext(f.path), *f.capture_formats))

    def show(f: Facts) -> str:
        best = max((_ext(f.path), *f.capture_formats), key=rank)
        own = _ext(f.path).lstrip(".")
        return own if best == _ext(f.path) else f"{own} (capture has {best.lstrip('.')})"

    return Criterion(f"format:{','.join(names)}", key, show)


def _original() -> Criterion:
    def key(f: Facts) -> int:
        return 0 if is_edit_name(f.path) else 1

    return Criterion("original-over-edit", key, lambda f: "edit/copy" if not key(f) else "original")


def _original_folder() -> Criterion:
    """Fewer backup/copy/download/export/temporary/cache/trash folders above the file wins."""

    def key(f: Facts) -> int:
        return -len(copy_folders(f.path))

    def show(f: Facts, below: str = "") -> str:
        found = copy_folders(f.path, below)
        return f"under {'/'.join(found)}/" if found else "not under a backup/copy folder"

    def pair(a: Facts, b: Facts) -> tuple[str, str]:
        """Without the folders both lie under (/tmp for one, /tmp for the other)."""
        common = _common_folder(a.path, b.path)
        return show(a, common), show(b, common)

    return Criterion("original-folder", key, show, pair)


def _exif() -> Criterion:
    return Criterion(
        "exif-complete",
        lambda f: f.exif_fields,
        lambda f: f"{f.exif_fields}/{EXIF_KEYS} EXIF fields",
    )


def _age(oldest: bool) -> Criterion:
    def key(f: Facts) -> float:
        when = f.date[0]
        if when is None:
            return float("-inf")
        return -when.timestamp() if oldest else when.timestamp()

    def show(f: Facts, digits: int | None = None) -> str:
        when, source = f.date
        return f"{_stamp(when, digits)} ({source})" if when else "no date"

    def pair(a: Facts, b: Facts) -> tuple[str, str]:
        """Minutes, else seconds, milliseconds, microseconds: the first at which they differ
        (the key compares the exact times)."""
        for digits in (None, 0, 3):
            if _stamp(a.date[0], digits) != _stamp(b.date[0], digits):
                return show(a, digits), show(b, digits)
        return show(a, 6), show(b, 6)

    return Criterion("oldest" if oldest else "newest", key, show, pair)


def _stamp(when: dt.datetime | None, digits: int | None) -> str:
    """The time to the minute (digits None) or the second and `digits` decimals."""
    if when is None:
        return ""
    if digits is None:
        return f"{when:%Y-%m-%d %H:%M}"
    fraction = f"{when.microsecond:06d}"[:digits]
    return f"{when:%Y-%m-%d %H:%M:%S}" + (f".{fraction}" if digits else "")


def _file_size(largest: bool) -> Criterion:
    return Criterion(
        "largest-file" if largest else "smallest-file",
        lambda f: (f.bytes or 0) if largest else -(f.bytes or 0),
        lambda f: f"{f.bytes or 0:,} bytes",
    )


def _folder(arg: str) -> Criterion:
    folders = [os.path.abspath(os.path.expanduser(p)) for p in arg.split(",") if p.strip()]
    if not folders:
        raise PolicyError("folder:PATH[,PATH...]: name the folders to prefer, best first")

    def key(f: Facts) -> int:
        return next((len(folders) - i for i, d in enumerate(folders) if is_under(f.path, d)), 0)

    def show(f: Facts) -> str:
        inside = [d for d in folders if is_under(f.path, d)]
        return f"in {inside[0]}" if inside else "outside the preferred folders"

    return Criterion(f"folder:{','.join(folders)}", key, show)


SIMPLE = {
    "resolution": _resolution,
    "original-over-edit": _original,
    "original-folder": _original_folder,
    "exif-complete": _exif,
    "oldest": lambda: _age(True),
    "newest": lambda: _age(False),
    "largest-file": lambda: _file_size(True),
    "smallest-file": lambda: _file_size(False),
}
WITH_ARGUMENT = {"format": _format, "folder": _folder}


def parse_policy(text: str | None) -> Policy:
    """`a > b:x,y > c`, or the path of a file holding that; None: DEFAULT_POLICY."""
    text = DEFAULT_POLICY if text is None else _read_if_file(text)
    parts = [p.strip() for p in text.split(">") if p.strip()]
    if not parts:
        raise PolicyError("--keep: an empty policy; e.g. " + DEFAULT_POLICY)
    return Policy(" > ".join(parts), [_criterion(p) for p in parts])


def _read_if_file(text: str) -> str:
    if ">" in text or not os.path.isfile(os.path.expanduser(text)):
        return text
    with open(os.path.expanduser(text), encoding="utf-8") as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    return " > ".join(line for line in lines if line)


def _criterion(part: str) -> Criterion:
    name, _, arg = part.partition(":")
    name = name.strip().lower()
    if name in SIMPLE and not arg:
        return SIMPLE[name]()
    if name in WITH_ARGUMENT and arg:
        return WITH_ARGUMENT[name](arg.strip())
    known = ", ".join([*SIMPLE, "format:LIST", "folder:PATHS"])
    raise PolicyError(f"--keep: unknown criterion {part!r}; use {known}")


def is_edit_name(path: str) -> bool:
    """Does the file name look like an edit or a copy (`IMG_1-edited`, `photo (1)`, ...)?"""
    return bool(EDIT_MARKERS.search(os.path.splitext(os.path.basename(path))[0]))


def copy_folders(path: str, below: str = "") -> list[str]:
    """The folders above `path` (below the folder `below`, if given) named like backups or
    copies (`Backup`, `Downloads`, `tmp`, ...)."""
    folder = os.path.dirname(os.path.abspath(path))
    if below:
        folder = os.path.relpath(folder, below)
    return [d for d in folder.split(os.sep) if d and d != "." and COPY_FOLDER.search(d)]


def _common_folder(a: str, b: str) -> str:
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in (a, b)])
    except ValueError:  # different drives
        return ""


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()
