"""Nothing leaves the machine: the telemetry switches of the libraries dinosearch loads.

`stay_local()` runs when the `indexer` package is first imported (search/ imports it first
too), before any of these libraries is, and puts the switches in os.environ, so they hold for
this process and every child it starts (decode workers, a local Ray cluster, uvicorn):

- ONNX Runtime (the CPU default runtime): from 1.2x its Linux wheels carry 1DS telemetry that,
  on `import onnxruntime`, writes a device id and an event queue (onnxruntime.db) under
  ~/.cache/Microsoft/DeveloperTools/.onnxruntime. ORT_DISABLE_TELEMETRY=1 must be set before the
  import; `onnxruntime()` below also calls `disable_telemetry_events()` once it is imported.
- Hugging Face hub and transformers: HF_HUB_DISABLE_TELEMETRY=1 (read when huggingface_hub is
  imported; transformers reads the hub's flag). DO_NOT_TRACK=1 for any other library that
  honours the convention.
- Ray (the `[ray]` extra): RAY_USAGE_STATS_ENABLED=0, read when a cluster starts; also passed to
  the workers' runtime env (indexer/ray_backend.py).

The values are forced, not defaults: the README's promise does not depend on the user's shell.
"""

import os

OFFLINE_ENV = {
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def stay_local() -> None:
    """Switch every known telemetry off, for this process and its children."""
    os.environ.update(OFFLINE_ENV)


def onnxruntime():
    """`import onnxruntime`, with its telemetry off (the env var first: the import itself writes
    the device id otherwise). Returns the module."""
    stay_local()
    import onnxruntime as ort  # 0.2 s; the torch path never needs it

    ort.disable_telemetry_events()
    return ort
