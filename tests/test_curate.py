"""Curating a training set: outliers, clusters, leakage between splits, keep-lists, the parquet
keep column and the API endpoints (issue 16). Tiny random-init checkpoints through the real
loading path; the precision claim on real weights skips without DINOSEARCH_REAL_WEIGHTS."""

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from search.collection import Collection
from search.curate import outliers as O
from search.dups.leakage import cross_pairs
from search.dups.pairs import components
from search.web.app import create_app
from tests.helpers import PHOTOS, ROOT, index, invoke

WEIGHTS = os.environ.get("DINOSEARCH_REAL_WEIGHTS")
OUTLIER_KEYS = {"rank", "id", "path", "score", "nearest", "copies", "copy_paths"}
CLUSTER_KEYS = {"id", "size", "representative", "members"}
COPY = "0.999"  # a copy for the tiny random model (distinct photos reach 0.995)


def load_planted():
    """bench/curate_planted.py: real photos plus odd images made with PIL."""
    if str(ROOT / "bench") not in sys.path:  # it imports its sibling bench/harness.py
        sys.path.append(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(
        "curate_planted", ROOT / "bench/curate_planted.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> tuple[Path, Path]:
    """(folder, library): train/ with 10 photos, a byte copy and a lossless re-encode; test/ with
    a byte copy and a lossless re-encode of train photos, and 3 photos of its own; indexed. (The
    tiny random model puts distinct photos up to cosine 0.995 apart: 0.999 is a copy here.)"""
    base = tmp_path_factory.mktemp("curate")
    folder = base / "data"
    train, test = folder / "train", folder / "test"
    train.mkdir(parents=True)
    test.mkdir()
    photos = sorted(PHOTOS.glob("*.png"))
    for src in photos[:10]:
        shutil.copy2(src, train / src.name)
    shutil.copy2(photos[0], train / "kodim01 copy.png")
    with Image.open(photos[1]) as img:
        img.save(train / "kodim02-export.webp", lossless=True)
    shutil.copy2(photos[2], test / "t-kodim03.png")
    with Image.open(photos[3]) as img:
        img.save(test / "t-kodim04.webp", lossless=True)
    for src in photos[12:15]:
        shutil.copy2(src, test / src.name)
    library = base / "library"
    index(folder, library)
    return folder, library


def dups_json(library, *args) -> dict:
    return json.loads(invoke("dups", "--index", library, "--json", *args).stdout)


# --- outliers -------------------------------------------------------------------------------------


def photo_like(n: int, dim: int = 48, seed: int = 0) -> np.ndarray:
    """Unit vectors in events of ~30 around a shared mean, like a photo library's."""
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(dim)
    centres = rng.standard_normal((max(1, n // 30), dim))
    x = (
        2 * mean
        + 0.8 * centres[rng.integers(0, len(centres), n)]
        + 0.7 * rng.standard_normal((n, dim))
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def plant_group(vectors: np.ndarray, size: int, seed: int = 1) -> np.ndarray:
    """Replace `size` rows by one tight group far from the rest (a batch of screenshots)."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size, replace=False)
    direction = rng.standard_normal(vectors.shape[1])
    group = direction + 0.15 * rng.standard_normal((size, vectors.shape[1]))
    vectors[rows] = group / np.linalg.norm(group, axis=1, keepdims=True)
    return rows


def kth_neighbour_outliers(vectors: np.ndarray, k: int, top: int) -> set[int]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return set(np.argsort(np.sort(sims, axis=1)[:, -k])[:top].tolist())


def paths_of(ids):
    return {int(i): f"/img/{i}" for i in ids}


def test_a_planted_group_of_outliers_is_found_where_five_neighbours_miss_it():
    vectors = photo_like(2000)
    group = plant_group(vectors, 20)  # 1 % of the collection, each other's nearest neighbours
    report = O.find_outliers(np.arange(2000), vectors, paths_of, 20)
    found = {o.id for o in report.outliers}
    assert len(found & set(group.tolist())) >= 19
    assert len(kth_neighbour_outliers(vectors, 5, 20) & set(group.tolist())) <= 2
    assert report.stats["k"] == 40 and report.stats["reference"] == 2000


def test_above_the_reference_size_the_sampled_estimate_still_finds_the_group(monkeypatch):
    monkeypatch.setattr(O, "REFERENCE_MAX", 800)
    vectors = photo_like(6000, seed=3)
    group = plant_group(vectors, 60, seed=4)
    report = O.find_outliers(np.arange(6000), vectors, paths_of, 60)
    assert (
        report.stats["reference"] == 800 and report.stats["reference_rank"] == 20
    )  # 120 * 800 / 6000 = 16: the floor
    assert len({o.id for o in report.outliers} & set(group.tolist())) >= 57


def test_the_exact_score_is_the_kth_neighbour_cosine():
    vectors = photo_like(300, seed=5)
    sims, m, k = O.kth_similarity(vectors, 20)
    brute = vectors @ vectors.T
    np.fill_diagonal(brute, -np.inf)
    assert (m, k) == (300, 20)
    assert np.allclose(sims, np.sort(brute, axis=1)[:, -20], atol=1e-5)
    rows = np.array([0, 7, 299])
    assert np.array_equal(O.nearest_other(vectors, rows, block=64), brute[rows].argmax(1))


def test_outliers_cli_json_shape_and_ranking(splits):
    folder, library = splits
    data = json.loads(invoke("outliers", "--index", library, "-n", "5", "--json").stdout)
    assert set(data) == {"outliers", "stats"}
    assert [o["rank"] for o in data["outliers"]] == [1, 2, 3, 4, 5]
    assert all(set(o) == OUTLIER_KEYS for o in data["outliers"])
    scores = [o["score"] for o in data["outliers"]]
    assert scores == sorted(scores, reverse=True)
    assert all(o["nearest"] and o["nearest"] != o["path"] for o in data["outliers"])
    assert data["stats"]["images"] == 17 and data["stats"]["k"] == 16
    inside = json.loads(
        invoke("outliers", "--index", library, "--within", folder / "test", "--json").stdout
    )
    assert inside["stats"]["images"] == 5
    assert all(o["path"].startswith(str(folder / "test")) for o in inside["outliers"])
    text = invoke("outliers", "--index", library, "-n", "3").stdout
    assert "nearest" in text and "3 of 17 images" in text


@pytest.mark.quality
@pytest.mark.skipif(not WEIGHTS, reason="set DINOSEARCH_REAL_WEIGHTS to the real weights dir")
def test_real_weights_rank_a_batch_of_screenshots_and_documents_first(tmp_path):
    truth = load_planted().make(tmp_path / "set", odd=12)
    odd = [p for p in truth["odd"] if "screenshot" in p or "document" in p]
    for p in set(truth["odd"]) - set(odd):
        os.remove(p)
    invoke("index", tmp_path / "set", "--index", tmp_path / "lib", "--model", WEIGHTS)
    out = json.loads(invoke("outliers", "--index", tmp_path / "lib", "-n", "10", "--json").stdout)
    top = [o["path"] for o in out["outliers"]][: len(odd)]
    assert set(top) == set(odd)  # 6 of 6; the 5th neighbour ranks them last (bench results)


# --- clusters -------------------------------------------------------------------------------------


def test_components_agree_with_a_plain_union_find():
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 500, 400), rng.integers(0, 500, 400)
    parent = list(range(500))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in zip(rows.tolist(), cols.tolist(), strict=True):
        parent[root(a)] = root(b)
    label = components(500, rows, cols)
    for a in range(500):
        for b in range(a + 1, 500, 37):
            assert (label[a] == label[b]) == (root(a) == root(b))


@pytest.mark.parametrize("threshold", ["auto", COPY, "0.98"])
def test_clusters_partition_every_image_once_and_never_split_a_dup_group(splits, threshold):
    _, library = splits
    out = json.loads(
        invoke(
            "clusters", "--index", library, "--threshold", threshold, "--min-size", "1", "--json"
        ).stdout
    )
    assert set(out) == {"clusters", "stats"}
    members = [m["id"] for c in out["clusters"] for m in c["members"]]
    assert len(members) == len(set(members)) == out["stats"]["images"] == 17
    for c in out["clusters"]:
        assert set(c) >= CLUSTER_KEYS and c["size"] == len(c["members"])
        assert set(c["representative"]) == {"path", "id"}
        assert c["members"][0]["id"] == c["representative"]["id"]
        assert all({"path", "id", "score"} <= set(m) for m in c["members"])
    cluster_of = {m["path"]: c["id"] for c in out["clusters"] for m in c["members"]}
    groups = dups_json(library, "--threshold", threshold)["groups"]
    assert groups  # the byte copy and the lossless re-encode at least
    for g in groups:
        assert len({cluster_of[m["path"]] for m in g["members"]}) == 1
    listed = json.loads(
        invoke("clusters", "--index", library, "--threshold", threshold, "--json").stdout
    )
    assert all(c["size"] >= 2 for c in listed["clusters"])
    assert listed["stats"]["singletons"] == sum(c["size"] == 1 for c in out["clusters"])


def test_clusters_csv_and_html_gallery(splits, tmp_path):
    _, library = splits
    csv_path, html = tmp_path / "c.csv", tmp_path / "c.html"
    invoke("clusters", "--index", library, "--threshold", COPY, "--csv", csv_path, "--html", html)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "cluster,size,representative,path,id,score" and len(lines) > 2
    page = html.read_text()
    assert page.count('class="cluster"') >= 1 and "data:image/jpeg;base64," in page
    assert "<script" not in page and "http" not in page.replace('lang="en"', "")


# --- leakage between splits -----------------------------------------------------------------------


def test_leakage_lists_the_test_images_with_a_duplicate_in_train(splits):
    folder, library = splits
    train, test = folder / "train", folder / "test"
    out = dups_json(library, "--threshold", COPY, "--within", train, "--against", test)
    leaked = {Path(x["path"]).name: x for x in out["leaks"]}
    assert set(leaked) == {"t-kodim03.png", "t-kodim04.webp"}
    assert leaked["t-kodim03.png"]["tier"] == "exact"
    assert [Path(t["path"]).name for t in leaked["t-kodim03.png"]["train"]] == ["kodim03.png"]
    assert [Path(t["path"]).name for t in leaked["t-kodim04.webp"]["train"]] == ["kodim04.png"]
    assert all(t["path"].startswith(str(train)) for x in out["leaks"] for t in x["train"])
    assert sorted(Path(p).name for p in out["new"]) == ["kodim13.png", "kodim14.png", "kodim15.png"]
    assert out["stats"]["checked"] == 5 and out["stats"]["leaked"] == 2


def test_leakage_from_stored_vectors_equals_embedding_the_test_files(splits, tmp_path):
    """The same test folder, once indexed (bulk, stored vectors) and once as an outside copy
    (each file embedded and looked up): the same leaks."""
    folder, library = splits
    outside = tmp_path / "test-copy"
    shutil.copytree(folder / "test", outside)
    inside = dups_json(
        library, "--threshold", COPY, "--within", folder / "train", "--against", folder / "test"
    )
    copied = dups_json(
        library, "--threshold", COPY, "--within", folder / "train", "--against", outside
    )

    def leaks(out):
        return {
            (Path(x["path"]).name, x["tier"], tuple(t["path"] for t in x["train"]))
            for x in out["leaks"]
        }

    assert leaks(inside) == leaks(copied) and len(leaks(inside)) == 2


def test_cross_pairs_clustered_join_finds_the_exact_pairs(monkeypatch):
    rng = np.random.default_rng(0)
    base = photo_like(3000, seed=8)
    queries = base[rng.choice(3000, 300, replace=False)] + 0.02 * rng.standard_normal((300, 48))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    exact = set(zip(*[a.tolist() for a in cross_pairs(queries, base, 0.95)[:2]], strict=True))
    monkeypatch.setattr("search.dups.leakage.EXACT_BASE_MAX", 100)
    joined = set(zip(*[a.tolist() for a in cross_pairs(queries, base, 0.95)[:2]], strict=True))
    assert len(exact) >= 300 and len(joined & exact) / len(exact) > 0.98 and joined <= exact


# --- keep-list and the parquet keep column --------------------------------------------------------


def test_keep_list_is_every_non_duplicate_plus_one_per_group(splits, tmp_path):
    folder, library = splits
    keep = tmp_path / "keep.txt"
    out = dups_json(library, "--threshold", COPY, "--keep-list", keep)
    kept = keep.read_text().splitlines()
    grouped = [m["path"] for g in out["groups"] for m in g["members"]]
    everything = {str(p) for p in folder.rglob("*") if p.is_file()}
    assert set(kept) == (everything - set(grouped)) | {
        next(p for p in kept if p in {m["path"] for m in g["members"]}) for g in out["groups"]
    }
    for g in out["groups"]:
        assert sum(m["path"] in kept for m in g["members"]) == 1
    assert out["keep_list"]["kept"] == len(kept) == len(everything) - out["stats"]["duplicates"]
    # the policy decides which one: the shortest path keeps among byte copies of equal facts
    assert str(folder / "train" / "kodim01.png") in kept
    assert str(folder / "train" / "kodim01 copy.png") not in kept


def test_keep_list_drops_outliers_and_refuses_what_it_cannot_do(splits, tmp_path):
    _, library = splits
    keep = tmp_path / "keep.txt"
    plain = dups_json(library, "--threshold", COPY, "--keep-list", keep)["keep_list"]
    out = dups_json(library, "--threshold", COPY, "--keep-list", keep, "--drop-outliers", "3")
    top = json.loads(invoke("outliers", "--index", library, "-n", "3", "--json").stdout)
    kept = set(keep.read_text().splitlines())
    assert not kept & {o["path"] for o in top["outliers"]}
    assert out["keep_list"]["kept"] == plain["kept"] - out["keep_list"]["why"].get("outlier", 0)
    for args, words in [
        (("--drop-outliers", "2"), "add one"),
        (("--keep-list", keep, "--against", PHOTOS), "not with --against"),
        (("--keep-list", tmp_path / "no" / "keep.txt"), "does not exist"),
        (("--keep-list", keep, "--drop-flags", ","), "name flags"),
    ]:
        result = invoke("dups", "--index", library, "--threshold", COPY, *args, expect=1)
        assert words in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(
    importlib.util.find_spec("pyarrow") is None, reason="the parquet export needs dinosearch[ray]"
)
def test_export_keep_column_matches_the_default_keep_list(splits, tmp_path):
    import pyarrow.parquet as pq  # optional extra: only `.[dev]` is the README's test install

    folder, _ = splits
    lib = tmp_path / "lib"
    index(folder / "train", lib)  # a library of its own: never calibrated yet
    before = json.loads(invoke("export", tmp_path / "e0", "--index", lib, "--json").stdout)
    assert before["keep"] is None  # never calibrated: no model is loaded for the column
    assert pq.read_table(tmp_path / "e0").column("keep").null_count == before["rows"]
    keep = tmp_path / "keep.txt"
    dups_json(lib, "--keep-list", keep)  # calibrates, then writes the default keep-list
    summary = json.loads(invoke("export", tmp_path / "e1", "--index", lib, "--json").stdout)
    table = pq.read_table(tmp_path / "e1")
    kept = {
        p
        for p, k in zip(
            table.column("path").to_pylist(), table.column("keep").to_pylist(), strict=True
        )
        if k
    }
    assert kept == set(keep.read_text().splitlines()) and summary["keep"]["kept"] == len(kept)
    assert json.loads(table.schema.metadata[b"dinosearch.keep"])["kept"] == len(kept)


# --- API and errors -------------------------------------------------------------------------------


def test_api_outliers_and_clusters_are_the_cli_objects(splits):
    _, library = splits
    with TestClient(create_app(Collection(library)), base_url="http://127.0.0.1") as client:
        got = client.get("/api/outliers", params={"n": 4})
        assert got.status_code == 200 and set(got.json()) == {"outliers", "stats"}
        cli = json.loads(invoke("outliers", "--index", library, "-n", "4", "--json").stdout)
        assert [o["path"] for o in got.json()["outliers"]] == [o["path"] for o in cli["outliers"]]
        got = client.get("/api/clusters", params={"threshold": COPY, "min_size": 1})
        assert got.status_code == 200 and sum(c["size"] for c in got.json()["clusters"]) == 17
        assert client.get("/api/outliers", params={"n": 0}).status_code == 422
        bad = client.get("/api/clusters", params={"threshold": "lots"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_query"
        bad = client.get("/api/outliers", params={"within": "/nowhere"})
        assert bad.status_code == 400 and "no indexed image" in bad.json()["error"]["message"]
        assert "/api/clusters" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    "args, words",
    [
        (("outliers", "--within", "/nowhere"), "no indexed image lies under"),
        (("clusters", "--threshold", "lots"), "'auto' or a number"),
        (("clusters", "--threshold", "1.5"), "between -1 and 1"),
        (("clusters", "--min-size", "0"), "--min-size"),
        (("outliers", "-n", "0"), "-n"),
        (("clusters", "--html", "/nowhere/c.html"), "does not exist"),
    ],
)
def test_bad_input_is_one_line_error(splits, args, words):
    _, library = splits
    result = invoke(*args, "--index", library, expect=None)
    assert result.exit_code in (1, 2) and words in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_outliers_and_clusters_without_a_library_say_so(tmp_path):
    for command in ("outliers", "clusters"):
        result = invoke(command, "--index", tmp_path / "none", expect=1)
        assert "no library" in result.output.lower()


def test_keep_list_drops_flagged_images(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted(PHOTOS.glob("*.png"))[:4]:
        shutil.copy2(src, folder / src.name)
    Image.new("RGB", (640, 480), (128, 128, 128)).save(folder / "flat.png")
    index(folder, tmp_path / "lib")
    keep = tmp_path / "keep.txt"
    out = dups_json(
        tmp_path / "lib",
        "--threshold",
        COPY,
        "--keep-list",
        keep,
        "--drop-flags",
        "low-information",
    )
    kept = keep.read_text().splitlines()
    assert str(folder / "flat.png") not in kept and len(kept) == 4
    assert out["keep_list"]["why"] == {"flag": 1}
    bad = invoke(
        "dups", "--index", tmp_path / "lib", "--keep-list", keep, "--drop-flags", "darkk", expect=1
    )
    assert "unknown flag darkk" in bad.output and len(bad.output.strip().splitlines()) == 1
