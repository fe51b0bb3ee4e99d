"""dinosearch query layer: vector index, queries, duplicates, CLI and API over a library."""

import indexer  # noqa: F401  first: its telemetry switches (indexer/privacy.py) precede all else
