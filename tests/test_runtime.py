"""The ONNX Runtime path (indexer/runtime.py, indexer/onnx_runtime.py) on the tiny checkpoints,
through the same loading path as users: export once, cache, reuse, rebuild a damaged file, fall
back to torch, refuse to mix int8 and float vectors, `--runtime torch` as before."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from indexer import model, onnx_runtime, runtime
from indexer.decode import decode_file
from indexer.errors import BadQuery, ModelMismatch
from search.collection import Collection
from tests.helpers import PHOTOS, ROOT, invoke, stored_rows

DINOV2 = "facebook/dinov2-small"


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch):
    """A private export cache: every test starts without ONNX files."""
    folder = tmp_path / "onnx-cache"
    monkeypatch.setenv(onnx_runtime.ENV_CACHE, str(folder))
    return folder


def vectors(library) -> dict[str, np.ndarray]:
    return {r["path"]: np.frombuffer(r["vector"], np.float32) for r in stored_rows(library)}


def torch_vectors(paths) -> dict[str, np.ndarray]:
    """What the torch path makes of each file, one at a time."""
    embedder = model.load(DINOV2, "cpu", "fp32")
    return {p: embedder.embed(decode_file(p, embedder.recipe, None).pixels[None])[0] for p in paths}


def cosines(a: dict, b: dict) -> np.ndarray:
    return np.array([float(a[p] @ b[p]) for p in a])


def test_the_default_on_cpu_is_onnx_and_its_vectors_match_torch(photos, library, onnx_cache):
    summary = json.loads(invoke("index", photos, "--index", library, "--json").stdout)
    assert summary["embedded"] > 0
    info = json.loads(invoke("info", "--index", library, "--json").stdout)["runtime"]
    assert info["runtime"] == "onnx" and info["dtype"] in ("int8", "fp32")
    got = vectors(library)
    cos = cosines(got, torch_vectors(list(got)))
    if info["dtype"] == "int8":  # the gate passed: it holds on these photos too
        assert info["gate"]["passed"] and info["gate"]["images"] > 0
        assert cos.min() >= onnx_runtime.GATE_MIN_COSINE - 0.005
    else:
        assert cos.min() >= 0.9999
    assert sorted(p.suffix for p in onnx_cache.glob("*.onnx"))  # exported into the cache


def test_int8_gate_is_measured_and_recorded(library, onnx_cache):
    assert len(list(PHOTOS.glob("*.png"))) >= onnx_runtime.GATE_IMAGES  # a full sample
    coll = Collection(library, model=DINOV2, dtype="int8")
    try:
        coll.index([PHOTOS])
    except onnx_runtime.GateFailed as exc:  # a random tiny model may miss it: said clearly
        assert "accuracy gate" in str(exc)
        return
    record = coll.store().model().runtime
    assert record["dtype"] == "int8" and record["gate"]["passed"]
    assert record["quant"] == "static" and record["scales"]  # batched int8, its scales kept
    gate_file = next(onnx_cache.glob("*-int8s.gate.json"))
    assert json.loads(gate_file.read_text())["min_cosine"] == record["gate"]["min_cosine"]
    assert json.loads(next(onnx_cache.glob("*-int8s.scales.json")).read_text()) == record["scales"]


def test_the_export_is_cached_and_reused(photos, tmp_path, onnx_cache, monkeypatch):
    invoke("index", photos, "--index", tmp_path / "one", "--runtime", "onnx", "--dtype", "fp32")
    exported = sorted(onnx_cache.glob("*.onnx"))
    assert len(exported) == 1 and "-fp32" in exported[0].name
    mtime = exported[0].stat().st_mtime_ns

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_runtime, "_export", no_export)
    invoke("index", photos, "--index", tmp_path / "two", "--runtime", "onnx", "--dtype", "fp32")
    assert exported[0].stat().st_mtime_ns == mtime
    assert vectors(tmp_path / "one").keys() == vectors(tmp_path / "two").keys()
    for path, vector in vectors(tmp_path / "one").items():
        assert np.allclose(vector, vectors(tmp_path / "two")[path], atol=1e-6)


def test_a_damaged_export_is_made_again(photos, tmp_path, onnx_cache):
    invoke("index", photos, "--index", tmp_path / "one", "--runtime", "onnx", "--dtype", "fp32")
    exported = next(onnx_cache.glob("*-fp32.onnx"))
    exported.write_bytes(exported.read_bytes()[:1000])  # a kill mid-copy, a bad disk
    invoke("index", photos, "--index", tmp_path / "two", "--runtime", "onnx", "--dtype", "fp32")
    assert exported.stat().st_size > 1000
    one, two = vectors(tmp_path / "one"), vectors(tmp_path / "two")
    assert all(np.allclose(one[p], two[p], atol=1e-6) for p in one)


def test_runtime_torch_gives_todays_vectors(photos, library, onnx_cache):
    invoke("index", photos, "--index", library, "--runtime", "torch")
    got = vectors(library)
    expected = torch_vectors(list(got))
    assert all(np.allclose(got[p], expected[p], atol=1e-5) for p in got)
    shown = Collection(library).info()["runtime"]
    assert (shown["runtime"], shown["dtype"], shown["why"]) == ("torch", "fp32", "--runtime torch")
    assert not list(onnx_cache.glob("*.onnx"))  # torch needs no export


def test_int8_and_float_vectors_never_mix(photos, library, onnx_cache):
    invoke("index", photos, "--index", library, "--runtime", "torch")
    result = invoke("index", photos, "--index", library, "--dtype", "int8", expect=1)
    assert "would mix precisions" in result.output
    # auto keeps the library's precision: float here, so ONNX Runtime in fp32
    coll = Collection(library)
    assert coll.embedder().dtype == "fp32"
    with pytest.raises(ModelMismatch):
        runtime.load(DINOV2, dtype="int8", library="float")
    with pytest.raises(ModelMismatch):
        runtime.load(DINOV2, dtype="fp32", library="int8")


def test_int8_is_refused_on_torch(onnx_cache):
    with pytest.raises(BadQuery, match="int8 runs on ONNX Runtime"):
        runtime.load(DINOV2, dtype="int8", runtime="torch")


def test_without_onnxruntime_auto_falls_back_to_torch_with_a_message(
    photos, library, onnx_cache, monkeypatch, caplog
):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    embedder = runtime.load(DINOV2)
    assert embedder.runtime == "torch"
    assert "onnxruntime is not installed" in caplog.text and "torch instead" in caplog.text
    with pytest.raises(onnx_runtime.OnnxUnavailable, match="not installed"):
        runtime.load(DINOV2, runtime="onnx")


def test_a_timm_checkpoint_stays_on_torch(onnx_cache):
    spec = model.resolve("timm/vit_small_patch14_dinov2.lvd142m")
    assert onnx_runtime.weights_file(spec) is None  # not exportable: auto falls back to torch


def test_a_cached_onnx_run_imports_neither_torch_nor_transformers(photos, tmp_path, onnx_cache):
    invoke("index", photos, "--index", tmp_path / "warm", "--runtime", "onnx", "--dtype", "fp32")
    new = tmp_path / "new-photos"
    new.mkdir()
    for p in sorted(photos.iterdir())[:3]:
        (new / p.name).write_bytes(p.read_bytes())
    code = (
        "import sys; from search.collection import Collection; "
        f"c = Collection({str(tmp_path / 'cold')!r}, runtime='onnx', dtype='fp32'); "
        f"s = c.index([{str(new)!r}]); "
        "assert s.embedded == 3, s; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, onnx_runtime.ENV_CACHE: str(onnx_cache)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_fast_embeds_a_new_library_at_196_px_and_the_library_keeps_it(photos, tmp_path, onnx_cache):
    library = tmp_path / "fast"
    invoke("index", photos, "--index", library, "--fast", "--runtime", "onnx", "--dtype", "fp32")
    coll = Collection(library)
    info = coll.store().model()
    assert json.loads(info.recipe)["crop"] == [196, 196] and info.runtime["fast"] is True
    assert coll.embedder().recipe.input_size == (196, 196)  # later runs keep it, no flag needed
    got = vectors(library)
    torch_fast = model.load(DINOV2, "cpu", "fp32")
    torch_fast.recipe = coll.embedder().recipe  # DINOv2 interpolates its position embeddings
    for path, vector in got.items():
        expected = torch_fast.embed(decode_file(path, torch_fast.recipe, None).pixels[None])[0]
        assert float(vector @ expected) > 0.9999
    full = vectors(_index_full(photos, tmp_path / "full"))
    assert any(float(got[p] @ full[p]) < 0.9999 for p in got)  # another input size indeed
    assert "--fast" in invoke("info", "--index", library).output


def _index_full(photos, library):
    invoke("index", photos, "--index", library, "--runtime", "onnx", "--dtype", "fp32")
    return library


def test_fast_never_mixes_into_a_full_size_library(photos, library, onnx_cache):
    invoke("index", photos, "--index", library, "--runtime", "torch")
    result = invoke("index", photos, "--index", library, "--fast", expect=1)
    assert "--fast would mix sizes" in result.output


def test_fast_is_for_dinov2_only(photos, library, onnx_cache):
    result = invoke("index", photos, "--index", library, "--fast", "-m", "dino-vits16", expect=None)
    assert result.exit_code != 0 and "DINOv2 checkpoints only" in result.output


@pytest.mark.parametrize("args", [("--runtime", "torch"), ("--runtime", "onnx", "--dtype", "fp32")])
def test_info_shows_how_the_vectors_were_made(photos, library, onnx_cache, args):
    invoke("index", photos, "--index", library, *args)
    assert f"runtime: {args[1]}" in invoke("info", "--index", library).output


def test_a_gate_on_too_few_photos_is_neither_passed_nor_kept(tmp_path, onnx_cache):
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(PHOTOS.glob("*.png"))[:3]:
        (few / p.name).write_bytes(p.read_bytes())
    coll = Collection(tmp_path / "library", model=DINOV2)
    coll.index([few])
    assert coll.store().model().runtime["dtype"] == "fp32"  # 3 photos say too little for int8
    assert not list(onnx_cache.glob("*.gate.json"))  # and the next library measures again
    assert onnx_runtime.Gate(1.0, 1.0, 3).passed is False
    assert onnx_runtime.Gate(1.0, 1.0, onnx_runtime.GATE_MIN_IMAGES).passed is True


def test_an_int8_library_reloads_without_photos_to_gate_on(photos, library, onnx_cache):
    """An 8-photo library passes the gate (not kept for others: under 16 photos); a later
    command on it with no roots (calibrate, query, dups) must reuse the library's own gate."""
    coll = Collection(library, model=DINOV2, dtype="int8")
    try:
        coll.index([photos])
    except onnx_runtime.GateFailed:  # a random tiny model may miss it: nothing to reload
        return
    assert not list(onnx_cache.glob("*.gate.json"))
    again = Collection(library)  # no roots: nothing to measure a gate on
    assert again.embedder().dtype == "int8"
    assert again.embedder().gate.to_json() == coll.store().model().runtime["gate"]
    invoke("calibrate", "--index", library, "--sample", "4", "--json")


# --- static int8: batched, gated, rebuilt from the record; the fastest path by a probe ----------


def static_int8(library) -> Collection:
    """A library indexed in static int8 (the tiny model passes the gate on the 24 photos)."""
    coll = Collection(library, model=DINOV2, dtype="int8")
    coll.index([PHOTOS])
    assert coll.store().model().runtime["quant"] == "static"
    return coll


def photo_pixels(embedder, count: int = 6) -> np.ndarray:
    files = sorted(PHOTOS.glob("*.png"))[:count]
    return np.stack([decode_file(str(f), embedder.recipe, None).pixels for f in files])


def test_a_static_int8_vector_does_not_depend_on_its_batch(library, onnx_cache):
    embedder = static_int8(library).embedder()
    assert embedder.batched
    pixels = photo_pixels(embedder)
    alone = np.concatenate([embedder.embed(p[None]) for p in pixels])
    together = embedder.embed(pixels)
    others = embedder.embed(pixels[::-1])[::-1]  # other neighbours, other positions
    for batch in (together, others):
        assert (alone * batch).sum(axis=1).min() > 0.9999
    stored = vectors(library)
    path = str(sorted(PHOTOS.glob("*.png"))[0])
    assert float(stored[path] @ alone[0]) > 0.9999  # batch 16 in the run, alone here


def test_the_gate_refuses_a_bad_static_quantization(library, onnx_cache, monkeypatch, caplog):
    def clipped(fp32, tensors, inputs):  # ranges 100x too narrow: activations saturate
        ranges = real_ranges(fp32, tensors, inputs)
        return {name: (lo / 100, hi / 100) for name, (lo, hi) in ranges.items()}

    real_ranges = onnx_runtime._ranges
    monkeypatch.setattr(onnx_runtime, "_ranges", clipped)
    coll = Collection(library, model=DINOV2, dtype="int8")
    try:
        coll.index([PHOTOS])
    except onnx_runtime.GateFailed:  # dynamic int8 missed it too: refused, nothing made
        assert not library.exists() or coll.store().model() is None
    else:
        assert coll.store().model().runtime["quant"] == "dynamic"  # the fallback, gated
        assert not coll.embedder().batched
    assert "static int8 misses the accuracy gate" in caplog.text
    verdict = json.loads(next(onnx_cache.glob("*-int8s.gate.json")).read_text())
    assert verdict["passed"] is False and verdict["min_cosine"] < onnx_runtime.GATE_MIN_COSINE
    with pytest.raises(onnx_runtime.GateFailed, match="accuracy gate"):  # the verdict is kept
        onnx_runtime.load(model.resolve(DINOV2), "int8", None, quant="static")


def test_a_static_int8_library_rebuilds_its_model_from_its_record(library, onnx_cache):
    static_int8(library)
    stored = vectors(library)
    for f in onnx_cache.glob("*int8s*"):
        f.unlink()  # another machine, a cleared cache, a Ray worker: only the record is left
    again = Collection(library).embedder()  # no roots: nothing to calibrate on
    assert again.quant == "static" and again.path.exists()
    path = str(sorted(PHOTOS.glob("*.png"))[0])
    pixels = decode_file(path, again.recipe, None).pixels[None]
    assert np.allclose(again.embed(pixels)[0], stored[path], atol=1e-6)  # the same model


def test_an_older_dynamic_int8_library_keeps_dynamic_int8(library, onnx_cache, monkeypatch):
    def missed(*args):
        raise onnx_runtime.GateFailed("static int8 misses the accuracy gate (test)")

    with monkeypatch.context() as m:
        m.setattr(onnx_runtime, "_static", missed)
        coll = Collection(library, model=DINOV2, dtype="int8")
        try:
            coll.index([PHOTOS])
        except onnx_runtime.GateFailed:  # the tiny model misses dynamic int8's gate
            return
    store = coll.store()
    info = store.model()
    old = {k: v for k, v in info.runtime.items() if k not in ("quant", "why")}  # as before
    with store.transaction():
        store.set_meta("model", json.dumps({**info.__dict__, "runtime": old}))
    coll.close()
    again = Collection(library)
    assert again.embedder().quant == "dynamic" and not again.embedder().batched
    shown = again.info()["runtime"]
    assert shown["quant"] == "dynamic" and shown["batched"] is False and "keeps" in shown["why"]


def test_info_says_which_path_runs_and_why(library, onnx_cache):
    static_int8(library)
    data = json.loads(invoke("info", "--index", library, "--json").stdout)
    shown = data["runtime"]
    assert shown["quant"] == "static" and shown["batched"] is True and "scales" not in shown
    assert "static int8, whole batches" in shown["why"] and "--dtype int8" in shown["why"]
    assert set(data["cpu"]) == {"model", "flags", "int8", "bf16"}
    text = invoke("info", "--index", library).output
    assert "runtime: onnx int8 (static, batched)" in text and "why:     ONNX Runtime" in text


def test_on_a_cpu_with_bf16_the_probe_picks_the_faster_path(tmp_path, onnx_cache, monkeypatch):
    monkeypatch.setenv(runtime.ENV_PROBE, "1")
    monkeypatch.setattr(runtime, "cpu_features", lambda: {**FEATURES, "bf16": "avx512_bf16"})
    first = runtime.load(DINOV2, sample_roots=[str(PHOTOS)])
    rates = next(iter(json.loads((onnx_cache / runtime.PROBE_FILE).read_text()).values()))
    faster = "torch" if rates["torch_bf16"] > rates["onnx_int8"] else "onnx"
    assert first.runtime == faster and "probe: int8" in first.why
    assert first.dtype == ("bf16" if faster == "torch" else "int8")

    def no_measuring(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(model, "load", no_measuring) if faster == "onnx" else None
    second = runtime.load(DINOV2, sample_roots=[str(PHOTOS)])  # read from PROBE_FILE
    assert second.runtime == faster and second.why == first.why


def test_a_bf16_library_stays_on_torch_bf16(photos, library, onnx_cache):
    invoke("index", photos, "--index", library, "--runtime", "torch", "--dtype", "bf16")
    again = Collection(library).embedder()  # auto, no probe: the library's own runtime
    assert (again.runtime, again.dtype) == ("torch", "bf16") and "keeps" in again.why


FEATURES = runtime.cpu_features()


def test_a_rebuild_quantizes_what_the_library_quantized(library, onnx_cache, monkeypatch):
    """The scales decide which MatMuls a rebuilt model quantizes, not today's default."""
    with monkeypatch.context() as m:
        m.setattr(onnx_runtime, "FP32_LAST_LAYERS", 1)  # a library made with the last layer fp32
        static_int8(library)
    stored = vectors(library)
    for f in onnx_cache.glob("*int8s*"):
        f.unlink()
    again = Collection(library).embedder()
    path = str(sorted(PHOTOS.glob("*.png"))[0])
    pixels = decode_file(path, again.recipe, None).pixels[None]
    assert np.allclose(again.embed(pixels)[0], stored[path], atol=1e-6)
