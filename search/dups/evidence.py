"""Pixel evidence in a duplicate run, from what the indexer stored of each content
(indexer/evidence.py): a duplicate run decodes nothing for it, at any library size.

Two images are judged the same picture by their pixels when
- both are ordinary pictures and their grey thumbnails correlate over the whole frame ("tone":
  the same picture up to gain and offset, so grey, brightness, contrast and colour edits too) or
  one is a window of the other ("crop") (search/dups/verify.py); or
- either is a low-information image (flat, gradient, pattern, document, near-black, tiny) and the
  two have the same shape, colour layout, detail and texture, and, where they have any structure
  at all, the same structure once their contrast is normalised ("looks": search/dups/lowinfo.py).
  Embeddings of such images sit close together whatever they show, so for them this is the only
  way into a copy group, at any size.

Rows whose content has no stored evidence (a library indexed before it was kept, rows embedded on
a Ray cluster) are measured here once, from a small decode, and the result is stored.
"""

import contextlib
import ctypes
import dataclasses
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps

from indexer.decode import IMAGE_ERRORS, pixel_digest
from indexer.evidence import Evidence, from_file
from indexer.library import evidence as stored
from search.dups import lowinfo, tint, verify
from search.dups.filecache import per_file_version
from search.dups.groups import Library

VERIFY_MIN_COSINE = 0.85  # raw cosine of a candidate below the threshold for a crop search
STRUCTURE_MIN_STD = 0.5  # grey levels: a thumbnail with less spread has no structure to compare
STRUCTURE_NCC = 0.98  # low-information pictures with structure (near-black photos, pages of text)
# must correlate this well once contrast is normalised, less what the thumbnails' own noise
# (STRUCTURE_NOISE: rounding to grey levels, JPEG) takes from a faint picture. Copies of near-black
# pictures (half size, brighter, grey): >= 0.983 at a spread of 2 levels, >= 0.95 at 1.4, >= 0.87
# at 0.8; distinct pictures darkened from one template (bench/make_distractors.py): <= 0.952 at
# 2.4 levels in the 5,200 distractors and 0.966 at 4 (tests/test_lowinfo.py), <= 0.92 at 1.4,
# <= 0.52 below 1 (bench/results/dups_distractors.md); distinct pages <= 0.7
STRUCTURE_NOISE = 0.3
LOW_INFO_EDGES = 6.0  # Laplacian std of a 64 px thumbnail below which a low-information picture
# is smooth (a sky tile: ~2; a dark photo with structure: 6+): a tone or crop match of it must be
# near perfect (verify.SMOOTH_NCC, SMOOTH_DETAIL)
LOOKS_EDGES = 2.0  # Laplacian std of a 64 px thumbnail above JPEG noise (see same_edges)
LOOKS_DETAIL = 0.15
FINE_MIN_STD = 3.0  # grey levels of the 192 px Laplacian: below it a picture has no fine edges
FINE_NCC = 0.88  # see same_fine_detail
TONE_FINE_NCC = 0.5  # ... for a whole-frame (tone) match: two pages of one layout 0.02, a phone
# photo and its WhatsApp copy at half the size 0.81 (the look-alike set at 1,000 files)
MEASURE_BATCH = 256  # evidence measured by a run is stored this many contents at a time
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
JUDGE_CHUNK = 2000  # pairs a judging process takes at a time (~1 s); fewer pairs: no processes

Progress = Callable[[str, int, int], None]


class Seen:
    """The pixel evidence of a run's images, aligned by row (None: the file could not be read)."""

    def __init__(
        self,
        evidence: list[Evidence | None],
        dims: list[tuple[int, int]],
        tints: Callable[[list[int]], dict[int, np.ndarray]] | None = None,
    ):
        self.evidence, self.dims = evidence, dims
        self._tints = tints  # rows -> their colours, measured from their files (fill_colours)
        self._low = [
            ev is not None and lowinfo.is_low(ev, *size)
            for ev, size in zip(evidence, dims, strict=True)
        ]

    @classmethod
    def of_library(cls, store, lib: Library, progress: Progress | None = None) -> "Seen":
        """Stored evidence of every row; rows without it are measured now and it is stored."""
        found = stored.load(store, [h for h in lib.hashes if h])
        missing: dict[str, str] = {}
        for row, r in enumerate(lib.rows):
            if r["hash"] not in found:
                missing.setdefault(r["hash"] or f"row:{row}", r["path"])
        if missing:
            found.update(_measure(store, missing, progress))
        evidence = [found.get(r["hash"] or f"row:{row}") for row, r in enumerate(lib.rows)]
        dims = [(r["width"] or 1, r["height"] or 1) for r in lib.rows]
        by_hash = _rows_by_hash(lib.rows)  # for the colours' fill
        return cls(evidence, dims, lambda rows: _tints_of(store, lib.rows, rows, evidence, by_hash))

    def low(self, i: int) -> bool:
        """Low information: embeddings alone never call it a copy."""
        return self._low[i]

    def grey(self, i: int) -> bool:
        """No colour: whitening scatters grey copies and gathers grey pictures, so a pair with a
        grey picture is a copy only with pixel evidence."""
        ev = self.evidence[i]
        return ev is not None and ev.greyscale

    def needs_evidence(self, i: int) -> bool:
        return self._low[i] or self.grey(i) or self.evidence[i] is None

    def judge(
        self,
        i: int,
        j: int,
        crops: bool = True,
        turn: str | None = None,
        coarse: float | None = None,
    ) -> str | None:
        """How the pixels of rows i and j show one picture: "tone", "crop", "looks" or None
        (with `turn`: j as i turned by it; `coarse`: verify.locate)."""
        ev_i, ev_j = self.evidence[i], self.evidence[j]
        return judge(ev_i, self.dims[i], ev_j, self.dims[j], crops, turn, coarse)

    def judge_coloured(
        self, i: int, j: int, crops: bool = True, turn: str | None = None
    ) -> str | None:
        """`judge`, with the colours of rows stored before colours were kept measured first
        where the grey evidence matches (fill_colours). In the run's own process only."""
        how = self.judge(i, j, crops, turn)
        if how in ("tone", "crop") and self._colourless(i, j) and self.fill_colours([i, j]):
            how = self.judge(i, j, crops, turn)
        return how

    def judge_pairs(self, rows, cols, crops, progress: Progress | None = None) -> np.ndarray:
        """`judge` of every pair (rows[k], cols[k], crop search when crops[k]), as an array of
        "tone", "crop", "looks" or "". A long list is split over a process per core (forked:
        they share this evidence without copying it); the answers do not depend on how. The
        matches of rows stored before colours were kept are judged again with their colours."""
        crops = np.asarray(crops, bool)
        how = self._judged(rows, cols, crops, progress)
        matched = np.flatnonzero((how == "tone") | (how == "crop"))
        again = [k for k in matched if self._colourless(int(rows[k]), int(cols[k]))]
        if again and self.fill_colours([int(x) for k in again for x in (rows[k], cols[k])]):
            picked = np.array(again)
            how[picked] = self._judged(rows[picked], cols[picked], crops[picked], None)
        return how

    def _judged(self, rows, cols, crops: np.ndarray, progress: Progress | None) -> np.ndarray:
        how = np.full(len(rows), "", dtype=object)
        chunks = np.array_split(np.arange(len(rows)), max(1, len(rows) // JUDGE_CHUNK))
        work = [(rows[c].tolist(), cols[c].tolist(), crops[c].tolist()) for c in chunks]
        workers = min(_cores(), len(chunks))
        done = 0
        with _forked_pool(self, workers) as pool:
            answers = pool.imap(_judge_chunk, work) if pool else map(_judge_chunk, work)
            for chunk, got in zip(chunks, answers, strict=True):
                how[chunk] = got
                done += len(chunk)
                if progress:
                    progress("checking pixels", done, len(rows))
        return how

    def fill_colours(self, rows: list[int]) -> bool:
        """Give the colour pictures among these rows whose evidence was stored before colours
        were kept their colours, measured once from their files and stored (a library indexed
        before needs no re-index, and the next run decodes nothing). Whether any was filled."""
        lacking = sorted({r for r in rows if _untinted(self.evidence[r])})
        if not lacking or self._tints is None:
            return False
        filled = self._tints(lacking)
        for row, colours in filled.items():
            ev = self.evidence[row]
            if ev is not None:
                self.evidence[row] = dataclasses.replace(ev, tint=colours)
        return bool(filled)

    def _colourless(self, i: int, j: int) -> bool:
        """Two colour pictures, one of whose colours were not stored."""
        a, b = self.evidence[i], self.evidence[j]
        if a is None or b is None or a.greyscale or b.greyscale:
            return False
        return a.tint is None or b.tint is None

    def descriptors(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grey layouts of these rows as unit vectors (verify.descriptor), and the rows that
        have one (flat pictures have none)."""
        out, have = [], []
        for row in rows.tolist():
            ev = self.evidence[row]
            vector = None if ev is None else verify.descriptor(ev.thumb)
            if vector is not None:
                out.append(vector)
                have.append(row)
        dim = verify.DESCRIPTOR_PX**2
        return np.array(out, np.float32).reshape(-1, dim), np.array(have, np.int64)


_JUDGING: Seen | None = None  # the evidence a forked judging process reads (judge_pairs)


def _judge_chunk(work: tuple[list[int], list[int], list[bool]]) -> list[str]:
    """`judge` of a chunk of pairs, whose half-size crop searches are made all at once."""
    seen = _JUDGING
    assert seen is not None
    rows, cols, crops = work
    coarse: list[float | None] = [None] * len(rows)
    searched, thumbs = [], []
    for k, (i, j, crop) in enumerate(zip(rows, cols, crops, strict=True)):
        a, b = seen.evidence[i], seen.evidence[j]
        if crop and a is not None and b is not None:
            searched.append(k)
            thumbs.append((a.thumb, b.thumb))
    for k, score in zip(searched, verify.coarse_crop_scores(thumbs).tolist(), strict=True):
        coarse[k] = score
    return [
        seen.judge(i, j, c, coarse=pre) or ""
        for i, j, c, pre in zip(rows, cols, crops, coarse, strict=True)
    ]


def _die_with_parent() -> None:
    """A judging process ends when the run that forked it does, even when that run is killed
    (Linux's parent-death signal; a pool's own clean-up never runs after a SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # no prctl: the pool's clean-up still ends them on exit
        pass
    if os.getppid() == 1:  # the parent died before the signal was asked for
        os._exit(0)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _forked_pool(seen: Seen, workers: int):
    """A pool of `workers` forked processes that see `seen`, or None where one process is all
    there is to use or processes cannot be forked safely (not Linux)."""
    global _JUDGING
    _JUDGING = seen
    try:
        if workers < 2 or not sys.platform.startswith("linux"):
            yield None
            return
        with multiprocessing.get_context("fork").Pool(workers, _die_with_parent) as pool:
            yield pool
    finally:
        _JUDGING = None


def judge(
    a: Evidence | None,
    size_a,
    b: Evidence | None,
    size_b,
    crops: bool = True,
    turn: str | None = None,
    coarse: float | None = None,
) -> str | None:
    """How two images' evidence shows one picture: "tone", "crop", "looks" or None. A whole-frame
    (`tone`) match of two pictures that both kept their 192 px detail (text, a UI, near low
    information) needs that detail to agree too (TONE_FINE_NCC): two pages of one layout matched
    at 64 px. A tone or crop match of two colour pictures needs their colours to agree where they
    match (tint.same_colours): pictures drawn from one template agree in grey, not in colour.
    With `turn` (verify.TURNS), b is judged as a turned by it; low-information pictures are
    never matched turned (a gradient turned is another gradient). `coarse`: verify.locate."""
    if a is None or b is None:
        return None
    low = lowinfo.is_low(a, *size_a) or lowinfo.is_low(b, *size_b)
    if low and turn is not None:
        return None
    if low:
        if look_alike(a, size_a, b, size_b):
            return "looks"
        # a crop or tone edit of a smooth low-information picture: any two smooth pictures
        # correlate, so both the correlation and their few edges must agree nearly perfectly
        smooth = min(_edges(a.thumb), _edges(b.thumb)) < LOW_INFO_EDGES
        found = verify.locate(a.thumb, b.thumb, crops, smooth=smooth, coarse=coarse)
    else:
        found = verify.locate(a.thumb, b.thumb, crops, turn, coarse=coarse)
    if found is None:
        return None
    fine_a = None if a.fine is None else verify.turned(a.fine, turn)
    if found.how == "tone" and not same_fine_detail(fine_a, b.fine, TONE_FINE_NCC):
        return None  # (110 of 110 tone copies of the near-duplicate set that kept it agree)
    if a.greyscale or b.greyscale or a.tint is None or b.tint is None:
        return found.how  # a grey copy has no colours to agree (nor has evidence stored before)
    tint_a = verify.turned(a.tint, turn)
    return found.how if tint.same_colours(tint_a, found.box_a, b.tint, found.box_b) else None


def _untinted(ev: Evidence | None) -> bool:
    return ev is not None and ev.tint is None and not ev.greyscale


def _tints_of(
    store, rows: list[dict], wanted, evidence, by_hash: dict[str, list[int]]
) -> dict[int, np.ndarray]:
    """The colours of library rows (indexes into `rows`, whose evidence is `evidence`, and whose
    rows of each content are `by_hash`) that have none stored, from a small decode of their
    files, stored by content; for every row of each content measured. A file whose size is no
    longer its row's (changed since it was indexed: the next `index` embeds it anew), that
    cannot be read, or whose picture has another shape than its stored evidence is left
    without: its matches are judged in grey alone, as before."""
    paths: dict[str, str] = {}
    for row in wanted:
        digest = rows[row]["hash"]
        if digest and digest not in paths:
            path = next(_paths_of(rows, by_hash[digest]), None)
            if path is not None:
                paths[digest] = path
    out: dict[int, np.ndarray] = {}
    fresh: list[tuple[str, np.ndarray]] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for digest, got in zip(paths, pool.map(of_file, paths.values()), strict=True):
            old = evidence[by_hash[digest][0]]
            if got is None or old is None or got[0].tint is None:
                continue
            if got[0].thumb.shape != old.thumb.shape:
                continue  # not the picture its evidence was measured from
            fresh.append((digest, got[0].tint))
            out.update((row, got[0].tint) for row in by_hash[digest])
    if fresh and not getattr(store, "read_only", False):
        stored.write_tints(store, fresh)
    return out


def _rows_by_hash(rows: list[dict]) -> dict[str, list[int]]:
    """Content hash -> the indexes of its rows."""
    out: dict[str, list[int]] = {}
    for row, r in enumerate(rows):
        if r["hash"]:
            out.setdefault(r["hash"], []).append(row)
    return out


def _paths_of(rows: list[dict], candidates: list[int]):
    """The paths of these rows whose files still have the size indexed."""
    for row in candidates:
        try:
            if os.stat(rows[row]["path"]).st_size == rows[row]["size"]:
                yield rows[row]["path"]
        except OSError:
            continue


def _edges(thumb: np.ndarray) -> float:
    return float(verify.laplacian(thumb).std())


def needs_evidence(seen: tuple[Evidence, tuple[int, int]] | None) -> bool:
    """An image embeddings alone never call a copy: unreadable, low information or colourless."""
    return seen is None or seen[0].greyscale or lowinfo.is_low(seen[0], *seen[1])


def look_alike(a: Evidence, size_a, b: Evidence, size_b) -> bool:
    """Two low-information images are the same picture: same shape, colours, detail, texture,
    and, where both have structure, the same structure up to contrast (two different near-black
    photos or pages of text agree in every other measure)."""
    sig_a, sig_b = lowinfo.from_evidence(a, *size_a), lowinfo.from_evidence(b, *size_b)
    if sig_a is None or sig_b is None:
        return False
    if a.greyscale != b.greyscale:  # a grey copy: compare the colour layouts as grey
        sig_a, sig_b = _grey_layout(sig_a), _grey_layout(sig_b)
    if not lowinfo.same_picture(sig_a, sig_b):
        return False
    return (
        same_structure(a.thumb, b.thumb)
        and same_edges(a.thumb, b.thumb)
        and same_fine_detail(a.fine, b.fine)
    )


def same_edges(a: np.ndarray, b: np.ndarray) -> bool:
    """Where both thumbnails have edges above JPEG noise (LOOKS_EDGES), their Laplacians
    correlate (LOOKS_DETAIL): two neighbouring tiles of one flat yellow band share layout,
    colour and texture (structure NCC 0.945) but not an edge (0.008); copies of smooth pictures
    on the look-alike sets >= 0.33."""
    fb = np.asarray(Image.fromarray(b).resize(a.shape[::-1], Image.Resampling.BILINEAR))
    if min(_edges(a), _edges(fb)) < LOOKS_EDGES:
        return True  # flat: their Laplacians are JPEG noise
    return verify.same_detail(a.astype(np.float32), fb.astype(np.float32), LOOKS_DETAIL)


def same_fine_detail(a: np.ndarray | None, b: np.ndarray | None, floor: float = FINE_NCC) -> bool:
    """Where both pictures have edges at 192 px (text, a UI), their Laplacians correlate:
    copies of a screenshot >= 0.95 (a quarter-size JPEG), other screenshots of the same app
    <= 0.79, other pages of text lower still."""
    if a is None or b is None:
        return True  # measured before fine detail was kept: the other measures decide
    la, lb = verify.laplacian(a), verify.laplacian(b)
    sa, sb = float(la.std()), float(lb.std())
    if sa < FINE_MIN_STD or sb < FINE_MIN_STD:
        return True  # flat: nothing fine to compare
    la, lb = la - la.mean(), lb - lb.mean()
    return float((la * lb).mean() / (sa * sb)) >= floor


def _grey_layout(sig: lowinfo.Signature) -> lowinfo.Signature:
    grey = np.clip((sig.colour.astype(np.float32) @ lowinfo.LUMA).round(), 0, 255)
    return dataclasses.replace(sig, colour=np.repeat(grey[..., None], 3, axis=2).astype(np.uint8))


def same_structure(a: np.ndarray, b: np.ndarray) -> bool:
    """Contrast-normalised correlation of two thumbnails, where both have any spread: at least
    STRUCTURE_NCC, less the share of the fainter one's spread that is noise."""
    fa = a.astype(np.float32)
    fb = np.asarray(Image.fromarray(b).resize(a.shape[::-1], Image.Resampling.BILINEAR), np.float32)
    fa, fb = fa - fa.mean(), fb - fb.mean()
    sa, sb = float(fa.std()), float(fb.std())
    if sa < STRUCTURE_MIN_STD or sb < STRUCTURE_MIN_STD:
        return sa < STRUCTURE_MIN_STD and sb < STRUCTURE_MIN_STD  # flat against flat only
    spread = min(sa, sb) ** 2
    floor = STRUCTURE_NCC * spread / (spread + STRUCTURE_NOISE**2)
    return float((fa * fb).mean() / (sa * sb)) >= floor


def of_rows(store, rows: list[dict]) -> dict[int, tuple[Evidence, tuple[int, int]] | None]:
    """Library row id -> (evidence, upright size), for rows with id, path, hash, width, height,
    size; contents without stored evidence are measured now (and stored), and colour pictures
    stored before colours were kept get them (_tints_of; not on a read-only library)."""
    found = stored.load(store, [r["hash"] for r in rows if r["hash"]])
    missing = {r["hash"]: r["path"] for r in rows if r["hash"] and r["hash"] not in found}
    if missing:
        found.update(_measure(store, missing, None))
    untinted = [r for r in rows if r["hash"] and _untinted(found.get(r["hash"]))]
    if untinted and not getattr(store, "read_only", False):  # stored before colours were kept
        own = [found[r["hash"]] for r in untinted]
        by_hash = _rows_by_hash(untinted)
        for k, colours in _tints_of(store, untinted, range(len(untinted)), own, by_hash).items():
            digest = untinted[k]["hash"]
            found[digest] = dataclasses.replace(found[digest], tint=colours)
    return {
        r["id"]: (found[r["hash"]], (r["width"] or 1, r["height"] or 1))
        if r["hash"] in found
        else None
        for r in rows
    }


def of_file(path: str) -> tuple[Evidence, tuple[int, int]] | None:
    """Evidence of a file that is not in the library (--against, --of), or None."""
    try:
        ev, width, height = from_file(path)
    except IMAGE_ERRORS:
        return None
    return ev, (width, height)


def _measure(store, missing: dict[str, str], progress: Progress | None) -> dict[str, Evidence]:
    """Measure contents that have no stored evidence (hash -> a path of it), a thread per core
    (decoding releases the GIL); store what was measured when the library can be written."""
    keys = list(missing)
    out: dict[str, Evidence] = {}
    batch: list[tuple[str, Evidence]] = []
    writable = not getattr(store, "read_only", False)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        measured = zip(keys, pool.map(of_file, missing.values()), strict=True)
        for done, (key, got) in enumerate(measured, 1):
            if got is not None:
                out[key] = got[0]
                if not key.startswith("row:"):
                    batch.append((key, got[0]))
            if writable and (len(batch) >= MEASURE_BATCH or (done == len(keys) and batch)):
                stored.write(store, batch)
                batch = []
            if progress:
                progress("measuring pixels", done, len(keys))
    return out


def pixel_pairs(lib: Library, rows, cols, close) -> list[tuple[int, int]]:
    """Close same-size pairs of different content whose decoded pixels are identical (a full
    decode of each candidate, once; byte twins are represented by their first copy)."""
    hashes = lib.hashes
    first: dict[str | int, int] = {}  # content hash (or the row, without one) -> its first row
    for row, digest in enumerate(hashes):
        first.setdefault(digest or row, row)
    return [
        (int(a), int(b))
        for a, b in zip(rows[close], cols[close], strict=True)
        if hashes[a] != hashes[b]
        and first[hashes[a] or a] == a
        and first[hashes[b] or b] == b
        and same_pixels(lib.rows[a], lib.rows[b])
    ]


def same_pixels(a: dict, b: dict) -> bool:
    """Identical decoded pixels (checked only for same-size candidates: a full decode each)."""
    if (a["width"], a["height"]) != (b["width"], b["height"]):
        return False
    digest = _digest(a["path"])
    return digest is not None and digest == _digest(b["path"])


_digest = per_file_version(None)(pixel_digest)  # one short string a file: all are kept


def dims(path: str) -> dict:
    """The upright size of an image file, as a library row has it."""
    with Image.open(path) as img:
        w, h = ImageOps.exif_transpose(img).size if img.getexif().get(274, 1) != 1 else img.size
    return {"width": w, "height": h}
