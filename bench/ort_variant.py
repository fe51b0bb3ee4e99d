"""dinosearch with ONNX Runtime's session options changed, to diagnose runtime_speed.py results.

    python bench/ort_variant.py SPIN THREADS dinosearch-args...

SPIN: 1 (onnxruntime's default: intra-op threads spin-wait between calls) or 0
(session.intra_op.allow_spinning = 0); THREADS: intra_op_num_threads, 0 = keep the product's.
Only the sessions the product creates are changed; nothing else differs from `dinosearch`.
"""

import sys

if sys.argv[1:2] in (["-h"], ["--help"]):  # a helper other scripts run: its usage, nothing else
    print(__doc__.strip())
    sys.exit(0)


def main() -> None:
    spin, threads, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    from indexer import privacy

    ort = privacy.onnxruntime()  # the product's import: telemetry off

    original = ort.InferenceSession.__init__

    def init(self, path, sess_options=None, *a, **k):
        if sess_options is None:
            sess_options = ort.SessionOptions()
        sess_options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        if threads:
            sess_options.intra_op_num_threads = threads
        original(self, path, sess_options, *a, **k)

    ort.InferenceSession.__init__ = init
    sys.argv = ["dinosearch", *args]
    from search.cli.app import main as cli

    sys.exit(cli())


if __name__ == "__main__":
    main()
