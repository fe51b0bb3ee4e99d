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
    gate_file = next(onnx_cache.glob("*-int8.gate.json"))
    assert json.loads(gate_file.read_text())["min_cosine"] == record["gate"]["min_cosine"]


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
    assert Collection(library).info()["runtime"] == {"runtime": "torch", "dtype": "fp32"}
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
