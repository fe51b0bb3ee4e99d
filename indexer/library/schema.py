"""Every table of the library and every migration, in order. No other module creates tables."""

import json
from pathlib import Path

import numpy as np
import sqlite_utils

from indexer.errors import LibraryError
from indexer.library import vectorfile

SCHEMA_VERSION_KEY = "schema_version"
MIGRATION_CHUNK_ROWS = 10_000

# Each step gets the database and the library's directory (for steps that move data out of it).


def m001_images_and_meta(db: sqlite_utils.Database, directory: Path) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("images").create(
        {
            "id": int,
            "path": str,  # absolute path as walked
            "size": int,  # bytes
            "mtime_ns": int,
            "hash": str,  # sha256 of the file's bytes, hex
            "width": int,  # upright (EXIF orientation applied)
            "height": int,
            "format": str,
            "taken": str,  # EXIF capture time, ISO 8601, or null
            "status": str,  # "ok" or "failed"
            "error": str,
            "indexed_at": str,
            "vector": bytes,  # float32, L2-normalised; null when failed (moved out by m004)
        },
        pk="id",
        not_null={"path", "status"},
    )
    db.table("images").create_index(["path"], unique=True)
    db.table("images").create_index(["hash"])


def m002_calibration(db: sqlite_utils.Database, directory: Path) -> None:
    """Score normalisation and duplicate threshold, fitted on the library's own images."""
    db.table("calibration").create(
        {
            "name": str,  # "current"
            "model": str,  # invalid once the library's model differs
            "images": int,  # library size when fitted (refit when it has changed a lot)
            "created": str,
            "params": str,  # JSON: threshold, precision/recall table, confidence fit, ...
            "whitening": bytes,  # float32 mean (D) then projection (D x K), or null
        },
        pk="name",
    )


def m003_decisions_and_journal(db: sqlite_utils.Database, directory: Path) -> None:
    """Duplicate decisions keyed by content hash, and the journal of file actions (apply/undo)."""
    db.table("decisions").create(
        {
            "id": int,
            "hash_a": str,  # sha256 of one file; hash_a <= hash_b (equal: copies of one content)
            "hash_b": str,
            "kind": str,  # "distinct" (not duplicates) or "keep-both"
            "paths": str,  # JSON: the two paths when decided, for display only
            "created": str,
        },
        pk="id",
    )
    db.table("decisions").create_index(["hash_a", "hash_b"], unique=True)
    db.table("plans").create(
        {
            "id": str,  # the plan file's "id"
            "path": str,  # where the plan file was when applied
            "created": str,
            "applied": str,  # last apply started
            "undone": str,
        },
        pk="id",
    )
    db.table("journal").create(
        {
            "id": int,
            "plan_id": str,
            "grp": int,  # group number in the plan
            "path": str,  # the file acted on
            "action": str,  # trash, move, hardlink, symlink, delete; follow-* for sidecars
            "target": str,  # kept file (links) or destination (move; trash location once known)
            "hash": str,
            "size": int,
            "mtime_ns": int,
            "state": str,  # pending, done, skipped, failed, undone, kept
            "detail": str,
            "image": str,  # JSON of the library row removed or moved (for undo), or null
            "vector": bytes,
            "created": str,
            "updated": str,
        },
        pk="id",
        not_null={"plan_id", "path", "action", "state"},
    )
    db.table("journal").create_index(["plan_id", "path"], unique=True)


def m004_vectors_in_a_file(db: sqlite_utils.Database, directory: Path) -> None:
    """Vectors leave the `images` rows for the memory-mapped file (vectorfile.py); rows keep a
    `slot`, and the store `generation` that last wrote their vector (so the FAISS file can be
    brought up to date with what changed since it was built). A row whose blob has the wrong
    length is marked failed, so `dinosearch index --retry-failed` embeds its file again. The file
    is written and synced
    before this transaction commits; a kill before that leaves the blobs, and this step runs
    again from the start."""
    db.table("images").add_column("slot", int)
    db.table("images").add_column("generation", int, not_null_default=0)
    raw = db.execute("select value from meta where key = 'model'").fetchone()
    dim = int(json.loads(raw[0])["dim"]) if raw else 0
    ids = [r[0] for r in db.execute("select id from images where vector is not null order by id")]
    slots: list[tuple[int, int]] = []  # (slot, id)

    def sound_vectors():
        for i in range(0, len(ids), MIGRATION_CHUNK_ROWS):
            chunk = ids[i : i + MIGRATION_CHUNK_ROWS]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"select id, vector from images where id in ({marks}) order by id", chunk
            ).fetchall()
            sound = [(image_id, v) for image_id, v in rows if dim and len(v) == 4 * dim]
            base = len(slots)
            slots.extend((base + n, image_id) for n, (image_id, _) in enumerate(sound))
            yield np.frombuffer(b"".join(v for _, v in sound), "<f4").reshape(-1, dim)

    name = vectorfile.file_name(0)
    vectorfile.write_new(directory / name, sound_vectors())
    db.conn.executemany("update images set slot = ? where id = ?", slots)
    db.execute(
        "update images set status = 'failed', error = ? where vector is not null and slot is null",
        [
            "its stored vector was damaged (found when the library was upgraded); re-run with "
            "--retry-failed to embed it again"
        ],
    )
    db.table("meta").upsert_all(
        [{"key": "vector_file", "value": name}, {"key": "vector_slots", "value": str(len(slots))}],
        pk="key",
    )
    db.table("images").transform(drop={"vector"})
    db.table("images").create_index(["generation"])


def m005_quality(db: sqlite_utils.Database, directory: Path) -> None:
    """Quality measures of each content (indexer/quality.py), by content hash: taken at index
    time in the decode worker; a library from before gets them at its next `index`."""
    db.table("quality").create(
        {
            "hash": str,  # sha256 of the file's bytes, as images.hash
            "brightness": float,  # mean grey level, 0..1
            "clipped": float,  # share of pixels at grey >= 250
            "contrast": float,  # standard deviation of the grey level, 0..1
            "sharpness": float,  # variance of the Laplacian of the 256 px grey downscale
            "information": float,  # bits: entropy of the grey residual
            "colourfulness": float,  # mean max-min channel spread, 0..1
        },
        pk="hash",
    )


def m006_evidence(db: sqlite_utils.Database, directory: Path) -> None:
    """Pixel evidence of each content (indexer/evidence.py), by content hash: taken at index time
    in the decode worker; a library from before gets it from its next `dups` (search/dups)."""
    db.table("evidence").create(
        {
            "hash": str,  # sha256 of the file's bytes, as images.hash
            "thumb_w": int,  # grey thumbnail, long side 64, upright
            "thumb_h": int,
            "thumb": bytes,  # thumb_h x thumb_w uint8
            "greyscale": int,  # 1: the picture has no colour
            "info_bytes": int,  # low-information measures (search/dups/lowinfo.py)
            "periodicity": float,
            "texture": float,
            "looks": bytes,  # zlib: 24x24 RGB colour + 128x128 detail, near-low-information only
        },
        pk="hash",
    )


def m007_evidence_tint(db: sqlite_utils.Database, directory: Path) -> None:
    """Each content's colours (indexer/evidence.py Evidence.tint: the grey thumbnail's size over
    4, RGB), which a copy's colours must agree with (search/dups/tint.py). Rows stored before
    have none; `dups` measures those it needs from their files, once."""
    db.table("evidence").add_column("tint", bytes)


MIGRATIONS = [
    m001_images_and_meta,
    m002_calibration,
    m003_decisions_and_journal,
    m004_vectors_in_a_file,
    m005_quality,
    m006_evidence,
    m007_evidence_tint,
]


def version(db: sqlite_utils.Database) -> int:
    """The library's schema version (0: a new database); refuses one newer than this code."""
    found = 0
    if db["meta"].exists():
        row = db.execute("select value from meta where key = ?", [SCHEMA_VERSION_KEY]).fetchone()
        found = int(row[0]) if row else 0
    if found > len(MIGRATIONS):
        raise LibraryError(
            f"this library has schema version {found}, newer than this dinosearch understands "
            f"({len(MIGRATIONS)}); upgrade dinosearch"
        )
    return found


def migrate(db: sqlite_utils.Database, directory: Path) -> int:
    """Apply pending migrations, each in its own transaction; returns the schema version."""
    current = version(db)
    for number, step in enumerate(MIGRATIONS[current:], start=current + 1):
        with db.atomic():
            step(db, directory)
            db.table("meta").upsert({"key": SCHEMA_VERSION_KEY, "value": str(number)}, pk="key")
    return len(MIGRATIONS)
