"""The freedesktop.org trash (Linux), where `send2trash` puts files: finding a trashed file again
and restoring it for `undo`. Elsewhere the system's Trash app restores."""

import os
import re
import shutil
import sys
from urllib.parse import unquote

try:
    from send2trash import plat_other  # the freedesktop implementation
except ImportError:  # where send2trash does not ship it
    plat_other = None


def move_file(src: str, dst: str) -> None:
    """Rename, or copy (with times) then remove across devices."""
    try:
        os.rename(src, dst)
    except OSError:
        shutil.copy2(src, dst)  # another device: copy (with times), then remove the source
        os.unlink(src)


def trash_dirs(path: str) -> list[str]:
    """Where send2trash may have put `path`: the home trash, then the volume's."""
    if not sys.platform.startswith("linux") or plat_other is None:
        return []
    home = os.fsdecode(plat_other.HOMETRASH_B)
    top = plat_other.find_mount_point(os.path.dirname(path))
    top = os.fsdecode(top) if isinstance(top, bytes) else top
    uid = str(os.getuid())
    return [home, os.path.join(top, ".Trash", uid), os.path.join(top, f".Trash-{uid}")]


def find_in_trash(path: str) -> str | None:
    """The trashed copy of `path` (the most recently trashed one), or None."""
    best: tuple[float, str] | None = None
    for trash in trash_dirs(path):
        for info, original in _trash_infos(trash):
            if original != path and not _same_relative(original, path, trash):
                continue
            name = os.path.basename(info)[: -len(".trashinfo")]
            stored = os.path.join(trash, "files", name)
            if os.path.lexists(stored) and (best is None or os.path.getmtime(info) >= best[0]):
                best = (os.path.getmtime(info), stored)
    return best[1] if best else None


def drop_orphan_infos(path: str) -> int:
    """Remove the .trashinfo files of `path` whose trashed file does not exist; how many.

    A trash move killed after creating the info, before moving the file, leaves one: naming
    `path`, or still empty (killed before its text reached the disk), then known by its name."""
    dropped = 0
    for trash in trash_dirs(path):
        for info, original in list(_trash_infos(trash)):
            name = os.path.basename(info)[: -len(".trashinfo")]
            if original is None:
                ours = _trash_name_of(name, path) and os.path.getsize(info) == 0
            else:
                ours = original == path or _same_relative(original, path, trash)
            if ours and not os.path.lexists(os.path.join(trash, "files", name)):
                os.unlink(info)
                dropped += 1
    return dropped


def _trash_name_of(name: str, path: str) -> bool:
    """Whether send2trash may have named `path`'s trashed copy `name` ("a.png", "a 2.png")."""
    stem, ext = os.path.splitext(os.path.basename(path))
    return re.fullmatch(re.escape(stem) + r"( \d+)?" + re.escape(ext), name) is not None


def _trash_infos(trash: str):
    folder = os.path.join(trash, "info")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.endswith(".trashinfo"):
            info = os.path.join(folder, name)
            yield info, _original_path(info)


def _original_path(info: str) -> str | None:
    try:
        with open(info, encoding="utf-8") as f:
            for line in f:
                if line.startswith("Path="):
                    return unquote(line[5:].strip())
    except OSError:
        return None
    return None


def _same_relative(original: str | None, path: str, trash: str) -> bool:
    """Volume trashes store paths relative to the volume's top directory."""
    if not original or os.path.isabs(original):
        return False
    top = os.path.dirname(trash.rstrip(os.sep))
    if os.path.basename(top) == ".Trash":
        top = os.path.dirname(top)
    return os.path.join(top, original) == path


def restore_from_trash(stored: str, path: str) -> None:
    move_file(stored, path)
    forget_trashed(stored)


def forget_trashed(stored: str) -> None:
    """Remove the .trashinfo of a trashed file that has left the trash (a restore killed between
    moving the file and this step leaves it behind)."""
    info = os.path.join(
        os.path.dirname(os.path.dirname(stored)), "info", os.path.basename(stored) + ".trashinfo"
    )
    if os.path.exists(info) and not os.path.lexists(stored):
        os.unlink(info)
