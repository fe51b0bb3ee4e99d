"""Transitional: the bench harness's old name, for scripts not yet converted (see harness.py)."""

from harness import *  # noqa: F403
