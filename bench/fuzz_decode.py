"""Bounded fuzz run of the decode-and-preprocess entry point (indexer.decode.decode_bytes), the
one decoder behind indexing, queries and API uploads, on mutated real image bytes.

    python bench/fuzz_decode.py [--seconds 300] [--limit-s 5] [--out bench/results/...md] [--quick]

Each input runs in a child process with a time limit and a 2 GiB address-space cap. A finding is:
an exception other than ImageError (uncaught), a child that dies (native crash), or a decode
past the limit (hang). Uses hypothesis to mutate (byte flips, splices, truncations, header
rewrites) seeds of every format the indexer reads.
"""

import io
import multiprocessing as mp
import resource
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import harness
from PIL import Image

from indexer.decode import Recipe, decode_bytes
from indexer.errors import ImageError

SHARED = harness.TESTDATA
MEMORY_CAP_BYTES = 2 << 30


def seeds() -> dict[str, bytes]:
    photo = Image.open(SHARED / "photos" / "kodim23.png").convert("RGB").resize((96, 64))
    out = {}
    for fmt, kwargs in {
        "JPEG": {"quality": 80},
        "PNG": {},
        "WEBP": {"quality": 70},
        "GIF": {},
        "TIFF": {},
        "BMP": {},
        "ICO": {},
        "TGA": {},
        "PPM": {},
    }.items():
        buf = io.BytesIO()
        img = photo.convert("P") if fmt == "GIF" else photo
        img.save(buf, fmt, **kwargs)
        out[fmt.lower()] = buf.getvalue()
    heic = sorted((SHARED / "heif" / "heif").glob("*.heic"))[:1]
    if heic:
        out["heic"] = heic[0].read_bytes()
    return out


def child(conn, data: bytes) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))
    try:
        decode_bytes(data, Recipe(), 250_000_000)
        conn.send(("ok", ""))
    except ImageError as exc:
        conn.send(("image_error", str(exc)[:80]))
    except BaseException as exc:  # noqa: BLE001 - the point is to catch anything else
        conn.send(("uncaught", "".join(traceback.format_exception_only(exc)).strip()[:300]))


def run_one(ctx, data: bytes, limit_s: float) -> tuple[str, str]:
    parent, kid = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child, args=(kid, data))
    proc.start()
    kid.close()
    if parent.poll(limit_s):
        outcome = parent.recv()
        proc.join(limit_s)
        return outcome
    proc.kill()
    proc.join()
    if proc.exitcode is not None and proc.exitcode < 0 and proc.exitcode != -9:
        return "crash", f"signal {-proc.exitcode}"
    return ("hang", f"no answer in {limit_s}s") if proc.exitcode == -9 else ("crash", "died")


def main() -> int:
    parser = harness.parser(__doc__, quick="smoke run: --seconds 10")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--limit-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, help="the report (bench/results/reliability_fuzz.md)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 10
    args.out = args.out or harness.results_dir() / "reliability_fuzz.md"
    from hypothesis import HealthCheck, given, settings  # 0.16 s: every fuzz child would pay it
    from hypothesis import strategies as st  # (each forkserver child re-runs module imports)

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["indexer.decode"])
    corpus = seeds()
    names = sorted(corpus)
    outcomes: Counter = Counter()
    findings: dict[tuple[str, str], bytes] = {}
    deadline = time.monotonic() + args.seconds

    mutation = st.tuples(
        st.sampled_from(names),
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "set", "cut", "splice", "insert", "header"]),
                st.floats(0, 1),
                st.binary(min_size=1, max_size=16),
            ),
            min_size=1,
            max_size=6,
        ),
    )

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutation)
    def fuzz(case):
        name, ops = case
        data = mutate(corpus[name], ops, corpus)
        kind, detail = run_one(ctx, data, args.limit_s)
        outcomes[kind] += 1
        outcomes[f"{name}:{kind}"] += 1
        if kind in ("uncaught", "crash", "hang"):
            findings.setdefault((kind, detail.splitlines()[-1][:120]), data)

    started = time.monotonic()
    while time.monotonic() < deadline:  # rounds of 25 fresh random cases
        fuzz()
    elapsed = time.monotonic() - started
    write_report(args.out, outcomes, findings, elapsed, args, names)
    return 0


def mutate(data: bytes, ops, corpus) -> bytes:
    buf = bytearray(data)
    for op, where, blob in ops:
        at = int(where * max(len(buf) - 1, 0))
        if op == "flip" and buf:
            buf[at] ^= blob[0] or 1
        elif op == "set":
            buf[at : at + len(blob)] = blob
        elif op == "cut":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = blob * (1 + blob[0] % 64)
        elif op == "splice":
            other = corpus[sorted(corpus)[blob[0] % len(corpus)]]
            buf[at:] = other[int(where * len(other)) :]
        elif op == "header" and len(buf) > 32:
            pos = 12 + blob[0] % 20  # dimensions and flags live in the first bytes
            buf[pos : pos + 4] = (blob * 4)[:4]
    return bytes(buf)


def write_report(out: Path, outcomes, findings, elapsed, args, names) -> None:
    total = sum(v for k, v in outcomes.items() if ":" not in k)
    lines = [
        "# Reliability: fuzzing `indexer.decode.decode_bytes`",
        "",
        f"Hypothesis-mutated real images ({', '.join(names)}), each decoded in a fresh "
        f"process under a {MEMORY_CAP_BYTES >> 30} GiB address-space cap.",
        "",
        f"- executions: **{total}** in {elapsed:.0f} s",
        f"- decoded fine: {outcomes['ok']}; refused with an ImageError (reason given): "
        f"{outcomes['image_error']}",
        f"- uncaught exceptions: **{outcomes['uncaught']}**; native crashes: "
        f"**{outcomes['crash']}**; over the {args.limit_s:g} s limit: **{outcomes['hang']}**",
        "",
        "| seed format | ok | image_error | uncaught | crash | hang |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        cells = [
            outcomes[f"{name}:{k}"] for k in ("ok", "image_error", "uncaught", "crash", "hang")
        ]
        lines.append(f"| {name} | " + " | ".join(map(str, cells)) + " |")
    lines += ["", "## Findings", ""]
    if not findings:
        lines.append("None.")
    for (kind, detail), data in sorted(findings.items()):
        lines.append(
            f"- **{kind}**: `{detail}` (input {len(data)} bytes, head `{data[:24].hex()}`)"
        )
    found = [{"kind": k, "detail": d, "bytes": len(b)} for (k, d), b in findings.items()]
    data = {"executions": total, "seconds": round(elapsed, 1), "outcomes": dict(outcomes)}
    data["findings"] = found
    harness.write_results(out.stem, lines, data, directory=out.parent, quiet=True)
    print(f"wrote {out}: {total} executions", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
