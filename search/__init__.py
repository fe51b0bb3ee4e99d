"""dinosearch query layer: vector index, queries, duplicates, CLI and API over a library."""
