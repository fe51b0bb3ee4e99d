"""Ray: indexing and dups on a real local Ray cluster equal a local run; Parquet export.

The cluster is started here on loopback (ray.init(num_cpus=2)); its workers inherit the temporary
Hugging Face cache that conftest set up, so they load the same tiny DINOv2 through the product path.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from indexer.decode import Recipe  # noqa: E402
from indexer.job import IndexOptions  # noqa: E402
from indexer.library.store import Store  # noqa: E402
from indexer.ray_backend import RayJobFailed, ray_embedded_batches  # noqa: E402
from search.collection import Collection  # noqa: E402
from search.dups import pairs  # noqa: E402
from search.dups import ray as ray_dups  # noqa: E402
from search.dups.groups import leader_groups  # noqa: E402
from search.dups.pairs import neighbour_pairs  # noqa: E402
from search.dups.ray import ray_neighbour_pairs  # noqa: E402
from tests.helpers import (  # noqa: E402
    PHOTOS,
    SHARED,
    SLOW_LIMIT,
    copy_photos,
    invoke,
    slow_folder,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def ray_cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture
def dup_photos(tmp_path) -> Path:
    """Real photos, plus resized and recompressed copies of three of them."""
    folder = tmp_path / "photos"
    originals = copy_photos(folder, 8)
    for src in originals[:3]:
        with Image.open(src) as img:
            img.convert("RGB").save(folder / f"{src.stem}-q60.jpg", quality=60)
            img.resize((img.width // 2, img.height // 2)).save(folder / f"{src.stem}-half.png")
    return folder


def vectors_by_path(library: Path) -> dict[str, np.ndarray]:
    store = Store.open(library)
    ids, vectors = store.vectors()
    paths = store.images_by_ids(ids, "id, path")
    return {paths[int(i)]["path"]: v for i, v in zip(ids, vectors, strict=True)}


def local_library(folder: Path, library: Path) -> dict[str, np.ndarray]:
    """A local run with the runtime Ray workers use (torch): their vectors must be equal."""
    coll = Collection(library, model="facebook/dinov2-small", runtime="torch")
    coll.index([folder], IndexOptions(workers=0))
    return vectors_by_path(library)


def test_ray_batches_equal_the_local_run(ray_cluster, dup_photos, library, tmp_path):
    local = local_library(dup_photos, library)
    embedder = Collection(library).embedder()
    missing = str(tmp_path / "not-on-this-worker.png")
    not_image = str(SHARED / "README.md")
    paths = sorted(local) + [missing, not_image]
    options = IndexOptions(batch_size=4)
    got = {
        e.path: e
        for batch in ray_embedded_batches(paths, embedder.id, embedder.recipe, options, None)
        for e in batch
    }
    assert set(got) == set(paths)
    for path, vector in local.items():
        item = got[path]
        assert item.error is None and not item.decoded.pixels.size  # freed once embedded
        assert np.abs(item.vector - vector).max() <= TOLERANCE
    stored = Store.open(library).image_by_path(paths[0])
    assert (got[paths[0]].decoded.width, got[paths[0]].decoded.format) == (
        stored["width"],
        stored["format"],
    )
    assert "cannot read file on Ray worker" in got[missing].error
    assert "Beyond one machine" in got[missing].error and got[missing].vector is None
    assert "not an image" in got[not_image].error


def planted_vectors(n: int = 9000, dim: int = 48) -> np.ndarray:
    """Seeded unit vectors where a third are noisy copies of others (several QUERY_BLOCKs)."""
    rng = np.random.default_rng(7)
    space = rng.standard_normal((n, dim)).astype(np.float32)
    space[: n // 3] = space[n // 3 : 2 * n // 3] + 0.25 * rng.standard_normal((n // 3, dim))
    return space / np.linalg.norm(space, axis=1, keepdims=True)


def assert_ray_pairs_equal_local(min_pairs: int) -> None:
    """Pairs, order, scores and dtypes of dups --ray are the local run's, bit for bit."""
    space = planted_vectors()
    local = neighbour_pairs(space, 0.9)
    distributed = ray_neighbour_pairs(space, 0.9, None)
    assert len(local[0]) > min_pairs
    for a, b in zip(local, distributed, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_ray_neighbour_pairs_are_the_local_pairs(ray_cluster):
    assert_ray_pairs_equal_local(min_pairs=1000)


def test_ray_clustered_join_is_the_local_join(ray_cluster, monkeypatch):
    """Above the exact size both runs use the clustered join; Ray tasks join ranges of the
    driver's lists, so pairs, order and scores are the local ones."""
    monkeypatch.setattr(pairs, "EXACT_SEARCH_MAX", 1000)
    monkeypatch.setattr(ray_dups, "EXACT_SEARCH_MAX", 1000)
    monkeypatch.setattr(ray_dups, "LISTS_PER_TASK", 8)  # several tasks even for 3000 vectors
    assert_ray_pairs_equal_local(min_pairs=900)


def test_ray_groups_on_a_real_library_equal_local(ray_cluster, dup_photos, library):
    local_library(dup_photos, library)
    _, space = Store.open(library).vectors()
    threshold = 0.9
    groups = []
    for rows, cols, sims in (
        neighbour_pairs(space, threshold),
        ray_neighbour_pairs(space, threshold, None),
    ):
        priority = np.zeros(len(space))
        groups.append(leader_groups(len(space), rows, cols, sims, threshold, priority))
    assert groups[0] == groups[1]


def export_dir(library: Path, out: Path, *extra) -> dict:
    result = invoke("export", "--format", "parquet", out, "--index", library, "--json", *extra)
    return json.loads(result.stdout)


def test_export_parquet_reads_back(photos, library, tmp_path):
    local = local_library(photos, library)
    out = tmp_path / "export"
    summary = export_dir(library, out)
    table = pq.read_table(out)
    assert summary["rows"] == table.num_rows == len(local)
    assert summary["dim"] == len(next(iter(local.values())))
    assert table.schema.field("vector").type.list_size == summary["dim"]
    assert str(table.schema.field("vector").type.value_type) == "float"
    meta = table.schema.metadata
    assert meta[b"dinosearch.model"] == b"facebook/dinov2-small"
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    for path, vector in zip(table.column("path").to_pylist(), vectors, strict=True):
        assert np.array_equal(vector.astype(np.float32), local[path])
    assert set(table.column_names) >= {"id", "path", "size", "mtime_ns", "hash", "width", "taken"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export")] == []


def test_export_refuses_to_clobber_unless_asked(photos, library, tmp_path):
    local_library(photos, library)
    out = tmp_path / "export"
    export_dir(library, out)
    result = invoke("export", out, "--index", library, expect=1)
    assert "exists" in result.output and "--overwrite" in result.output
    assert export_dir(library, out, "--overwrite")["rows"] == len(photos_in(photos))
    assert not list(tmp_path.glob(".export*"))


def photos_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file()]


def test_export_without_library_is_a_clear_error(tmp_path):
    result = invoke("export", tmp_path / "out", "--index", tmp_path / "none", expect=1)
    assert "no library" in result.output


# --- the CLI as wired by the lead (index --ray, dups --ray) ---------------------------------------


def test_cli_index_with_ray_equals_local(ray_cluster, dup_photos, tmp_path):
    """The default runtime (ONNX Runtime int8 where its gate passes) on both sides: the actors
    load the driver's embedder, gate and int8 scales, not torch fp32."""
    invoke("index", dup_photos, "--index", tmp_path / "local", "--json")
    local = vectors_by_path(tmp_path / "local")
    result = invoke("index", dup_photos, "--index", tmp_path / "ray", "--ray", "--json")
    summary = json.loads(result.stdout)
    assert summary["indexed"] == summary["embedded"] == len(local) and summary["failed"] == []
    distributed = vectors_by_path(tmp_path / "ray")
    assert set(distributed) == set(local)
    for path, vector in local.items():
        assert float(distributed[path] @ vector) > 0.999
        assert np.abs(distributed[path] - vector).max() <= 1e-4  # the same model, batched
    made = [Store.open(tmp_path / d).model().runtime for d in ("local", "ray")]
    assert made[0] == made[1] and made[0]["runtime"] == "onnx"  # the same record, gate, scales
    again = invoke("index", dup_photos, "--index", tmp_path / "ray", "--ray", "--json")
    assert json.loads(again.stdout)["unchanged"] == len(local)  # incremental as usual


def test_cli_dups_with_ray_equals_local(ray_cluster, dup_photos, library):
    local_library(dup_photos, library)
    runs = [
        json.loads(
            invoke("dups", "--index", library, "--threshold", "0.9", "--json", *extra).stdout
        )
        for extra in ((), ("--ray",))
    ]
    assert runs[0]["groups"] == runs[1]["groups"]
    assert runs[0]["stats"]["groups"] >= 1


def test_ray_actors_rebuild_the_static_int8_model_from_the_record(ray_cluster, dup_photos, library):
    """A worker without the cached int8 file (another node) makes it from the record's scales."""
    coll = Collection(library, model="facebook/dinov2-small", dtype="int8")
    coll.index([dup_photos], IndexOptions(workers=0))
    embedder = coll.embedder()
    if embedder.quant != "static":  # the random tiny model missed static int8's gate
        pytest.skip("static int8 missed its gate on the tiny model")
    local = vectors_by_path(library)
    record = {**embedder.record(), "scales": dict(embedder.scales)}
    cached = Path(embedder.path)
    cached.unlink()  # what a worker on another machine lacks
    paths = sorted(local)
    options = IndexOptions(batch_size=4)
    batches = ray_embedded_batches(
        paths, embedder.id, embedder.recipe, options, None, "cpu", "int8", record
    )
    got = {e.path: e.vector for batch in batches for e in batch}
    for path, vector in local.items():
        assert np.abs(got[path] - vector).max() <= 1e-4


def test_a_worker_that_cannot_load_the_model_is_a_clear_error(ray_cluster):
    paths = [str(p) for p in sorted(PHOTOS.glob("*.png"))[:2]]
    batches = ray_embedded_batches(paths, "/nowhere/model", Recipe(), IndexOptions(), None)
    with pytest.raises(RayJobFailed, match="does not exist.*\n.*re-run"):
        list(batches)


def test_a_decode_past_the_time_limit_costs_one_file_on_ray(ray_cluster, tmp_path):
    """--decode-timeout reaches the Ray decode tasks: the slow file is reported, the rest kept."""
    folder = slow_folder(tmp_path, photos=2)
    paths = sorted(str(p) for p in folder.iterdir())
    options = IndexOptions(batch_size=4, decode_timeout_s=float(SLOW_LIMIT))
    got = {
        e.path: e
        for batch in ray_embedded_batches(paths, "facebook/dinov2-small", Recipe(), options, None)
        for e in batch
    }
    assert f"longer than {SLOW_LIMIT}s" in got[paths[0]].error and got[paths[0]].vector is None
    assert all(got[p].error is None and got[p].vector is not None for p in paths[1:])
