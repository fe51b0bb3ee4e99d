"""Every table of the library and every migration, in order. No other module creates tables."""

import sqlite_utils

SCHEMA_VERSION_KEY = "schema_version"


def m001_images_and_meta(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["images"].create(
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
            "vector": bytes,  # float32, L2-normalised, model's dimension; null when failed
        },
        pk="id",
        not_null={"path", "status"},
    )
    db["images"].create_index(["path"], unique=True)
    db["images"].create_index(["hash"])


def m002_calibration(db: sqlite_utils.Database) -> None:
    """Score normalisation and duplicate threshold, fitted on the library's own images."""
    db["calibration"].create(
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


def m003_decisions_and_journal(db: sqlite_utils.Database) -> None:
    """Duplicate decisions keyed by content hash, and the journal of file actions (apply/undo)."""
    db["decisions"].create(
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
    db["decisions"].create_index(["hash_a", "hash_b"], unique=True)
    db["plans"].create(
        {
            "id": str,  # the plan file's "id"
            "path": str,  # where the plan file was when applied
            "created": str,
            "applied": str,  # last apply started
            "undone": str,
        },
        pk="id",
    )
    db["journal"].create(
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
    db["journal"].create_index(["plan_id", "path"], unique=True)


MIGRATIONS = [m001_images_and_meta, m002_calibration, m003_decisions_and_journal]


def migrate(db: sqlite_utils.Database) -> int:
    """Apply pending migrations, each in its own transaction; returns the schema version."""
    version = 0
    if db["meta"].exists():
        row = db.execute("select value from meta where key = ?", [SCHEMA_VERSION_KEY]).fetchone()
        version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        from .errors import LibraryError

        raise LibraryError(
            f"this library has schema version {version}, newer than this dinosearch understands "
            f"({len(MIGRATIONS)}); upgrade dinosearch"
        )
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        with db.atomic():
            step(db)
            db["meta"].upsert({"key": SCHEMA_VERSION_KEY, "value": str(number)}, pk="key")
    return len(MIGRATIONS)
