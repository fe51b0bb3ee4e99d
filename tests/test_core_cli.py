"""Index + query through the CLI, as a user runs it, on real photos and a tiny real-architecture
DINOv2 loaded from a Hugging Face cache under its real repo id."""

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from indexer import job, model
from indexer.decode import Recipe
from indexer.decode_pool import Isolation, decode_all
from indexer.library.store import Store
from search import knn
from search.cli.app import cli
from tests.helpers import HEIF, IMAGEDEDUP, PHOTOS, invoke, stored_rows


def index_json(*args):
    return json.loads(invoke("index", *args, "--json", "--workers", "1").stdout)


def stored_vectors(library) -> dict[str, np.ndarray]:
    return {
        r["path"]: np.frombuffer(r["vector"], dtype=np.float32)
        for r in stored_rows(library)
        if r["status"] == "ok"
    }


def test_index_then_query_round_trip(photos, library):
    summary = index_json(photos, "--index", library)
    assert set(summary) >= {
        "indexed",
        "unchanged",
        "moved",
        "removed",
        "failed",
        "seconds",
        "model",
    }
    assert summary["indexed"] == 8 and summary["failed"] == []
    assert summary["model"] == "facebook/dinov2-small"

    target = sorted(photos.glob("*.png"))[3]
    out = json.loads(invoke("query", target, "--index", library, "-k", "3", "--json").stdout)
    assert out["query"] == [str(target)] and out["model"] == "facebook/dinov2-small"
    assert [r["rank"] for r in out["results"]] == [1, 2, 3]
    first = out["results"][0]
    assert first["path"] == str(target) and first["score"] == pytest.approx(1.0, abs=1e-4)
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)

    human = invoke("query", target, "--index", library, "-k", "2").stdout
    assert "rank" in human and str(target) in human.splitlines()[1]


def test_query_image_outside_library_is_embedded(photos, library, tmp_path):
    index_json(photos, "--index", library)
    outside = tmp_path / "outside.png"
    shutil.copy(sorted(photos.glob("*.png"))[0], outside)
    out = json.loads(invoke("query", outside, "--index", library, "--json").stdout)
    assert out["results"][0]["path"] == str(sorted(photos.glob("*.png"))[0])
    assert out["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_query_several_images_uses_their_mean(photos, library):
    index_json(photos, "--index", library)
    a, b = sorted(photos.glob("*.png"))[:2]
    out = json.loads(invoke("query", a, b, "--index", library, "--json", "-k", "8").stdout)
    vectors = stored_vectors(library)
    mean = vectors[str(a)] + vectors[str(b)]
    mean /= np.linalg.norm(mean)
    expected = sorted(vectors, key=lambda p: -float(vectors[p] @ mean))
    assert [r["path"] for r in out["results"]] == expected


def test_within_restricts_results(photos, library, tmp_path):
    sub = photos / "sub"
    sub.mkdir()
    for p in sorted(photos.glob("*.png"))[:3]:
        shutil.move(p, sub / p.name)
    index_json(photos, "--index", library)
    query = sorted(photos.glob("*.png"))[0]  # not under sub/
    out = json.loads(invoke("query", query, "--within", sub, "--index", library, "--json").stdout)
    assert len(out["results"]) == 3
    assert all(r["path"].startswith(str(sub) + os.sep) for r in out["results"])


def test_rerun_embeds_nothing(photos, library):
    index_json(photos, "--index", library)
    before = stored_vectors(library)
    again = index_json(photos, "--index", library)
    assert again["indexed"] == 0 and again["unchanged"] == 8 and again["embedded"] == 0
    assert stored_vectors(library).keys() == before.keys()


def test_rename_is_a_move_not_a_new_embedding(photos, library):
    index_json(photos, "--index", library)
    before = stored_vectors(library)
    old = sorted(photos.glob("*.png"))[0]
    new = photos / "renamed" / "holiday.png"
    new.parent.mkdir()
    old.rename(new)
    summary = index_json(photos, "--index", library)
    assert summary["moved"] == 1 and summary["embedded"] == 0 and summary["removed"] == 0
    after = stored_vectors(library)
    assert str(old) not in after
    np.testing.assert_array_equal(after[str(new)], before[str(old)])


def test_deleted_file_leaves_the_index(photos, library):
    index_json(photos, "--index", library)
    gone = sorted(photos.glob("*.png"))[2]
    gone.unlink()
    summary = index_json(photos, "--index", library)
    assert summary["removed"] == 1
    assert str(gone) not in stored_vectors(library)
    out = json.loads(
        invoke(
            "query", sorted(photos.glob("*.png"))[0], "--index", library, "-k", "20", "--json"
        ).stdout
    )
    assert str(gone) not in {r["path"] for r in out["results"]}
    assert len(out["results"]) == 7


def test_changed_file_is_re_embedded(photos, library):
    index_json(photos, "--index", library)
    a, b = sorted(photos.glob("*.png"))[:2]
    shutil.copy(b, a)  # same path, other content
    summary = index_json(photos, "--index", library)
    assert summary["indexed"] == 1
    vectors = stored_vectors(library)
    np.testing.assert_allclose(vectors[str(a)], vectors[str(b)], atol=1e-6)


def test_bad_files_are_reported_and_skipped(tmp_path, library):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(IMAGEDEDUP / "mixed_images" / "ukbench09268_corrupt.jpg", folder)
    shutil.copytree(HEIF / "heif_corrupted", folder / "heif_corrupted")
    shutil.copytree(HEIF / "heif_truncated", folder / "heif_truncated")
    shutil.copy(HEIF / "heif" / "zPug_3.heic", folder)
    shutil.copy(HEIF / "heif" / "RGBA_10__29x100.heif", folder)
    shutil.copy(PHOTOS / "kodim05.png", folder)
    (folder / "notes.jpg").write_text("not an image at all")
    data = (PHOTOS / "kodim06.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    summary = index_json(folder, "--index", library)
    failed = {os.path.basename(f["path"]): f["error"] for f in summary["failed"]}
    assert set(failed) == {
        "ukbench09268_corrupt.jpg",
        "corrupted.heic",
        "corrupted.hif",
        "empty.heic",
        "truncated.heic",
        "notes.jpg",
        "cut.png",
    }
    assert all(failed.values())
    assert summary["indexed"] == 3  # the two good HEIFs and the PNG
    info = json.loads(invoke("info", "--index", library, "--json").stdout)
    assert info["images"] == 3 and info["failed"] == 7
    # failures are remembered: an unchanged bad file is not retried or re-reported
    again = index_json(folder, "--index", library)
    assert again["failed"] == [] and again["unchanged"] == 10


def test_human_output_lists_skipped_files(tmp_path, library):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    shutil.copy(PHOTOS / "kodim07.png", folder)
    result = invoke("index", folder, "--index", library, "--workers", "0")
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr
    assert "1 indexed" in result.stdout


def test_info_json_shape(photos, library):
    index_json(photos, "--index", library)
    info = json.loads(invoke("info", "--index", library, "--json").stdout)
    assert info["library"] == str(library)
    assert info["model"] == "facebook/dinov2-small" and info["images"] == 8
    assert info["failed"] == 0
    assert info["index"]["type"] == "flat" and info["index"]["vectors"] == 8
    assert info["bytes"] > 0


def test_index_dir_from_environment(photos, library, monkeypatch):
    monkeypatch.setenv("DINOSEARCH_INDEX", str(library))
    index_json(photos)
    assert (library / "library.db").exists()


def test_query_without_library_is_a_clear_error(tmp_path):
    result = invoke("query", PHOTOS / "kodim01.png", "--index", tmp_path / "none", expect=1)
    assert "no library" in result.stderr and "dinosearch index" in result.stderr


def test_other_model_into_same_library_is_refused(photos, library):
    index_json(photos, "--index", library)
    result = invoke("index", photos, "--index", library, "--model", "dinov2-base", expect=1)
    assert "holds facebook/dinov2-small" in result.stderr


def test_library_dir_inside_walked_folder_is_skipped(photos):
    library = photos / ".dinosearch"
    summary = index_json(photos, "--index", library, "--include-hidden")
    assert summary["indexed"] == 8 and summary["failed"] == []


def test_exclude_and_hidden(photos, library):
    (photos / ".hidden").mkdir()
    shutil.copy(PHOTOS / "kodim20.png", photos / ".hidden")
    (photos / "skipme").mkdir()
    shutil.copy(PHOTOS / "kodim21.png", photos / "skipme")
    summary = index_json(photos, "--index", library, "--exclude", "skipme")
    assert summary["indexed"] == 8
    summary = index_json(photos, "--index", library, "--include-hidden")
    assert summary["indexed"] == 2  # .hidden/ and skipme/ now


def test_symlink_loop_does_not_hang(photos, library):
    os.symlink(photos, photos / "loop")
    summary = index_json(photos, "--index", library)
    assert summary["indexed"] == 8


def test_copy_of_known_content_reuses_its_vector(photos, library):
    index_json(photos, "--index", library)
    src = sorted(photos.glob("*.png"))[0]
    shutil.copy(src, photos / "copy.png")
    summary = index_json(photos, "--index", library)
    assert summary["indexed"] == 1 and summary["embedded"] == 0


def test_dino_v1_model(photos, library):
    summary = index_json(photos, "--index", library, "--model", "dino-vits16")
    assert summary["model"] == "facebook/dino-vits16" and summary["indexed"] == 8
    target = sorted(photos.glob("*.png"))[1]
    out = json.loads(invoke("query", target, "--index", library, "--json").stdout)
    assert out["model"] == "facebook/dino-vits16"
    assert out["results"][0]["path"] == str(target)


def test_local_model_directory(photos, library, hub_cache, tmp_path):
    snap = next((hub_cache / "models--facebook--dinov2-small" / "snapshots").iterdir())
    local = tmp_path / "my-model"
    shutil.copytree(snap, local)
    summary = index_json(photos, "--index", library, "--model", local)
    assert summary["model"] == str(local) and summary["indexed"] == 8


def test_a_file_that_hangs_the_decoder_costs_one_file(tmp_path):
    """A FIFO blocks read() forever: a real hang inside a decode worker, cut by the time limit.
    (The walk itself only yields regular files; this drives the decode pool directly.)"""
    fifo = tmp_path / "hangs.jpg"
    os.mkfifo(fifo)
    good = sorted(PHOTOS.glob("*.png"))[:3]
    paths = [str(good[0]), str(fifo), str(good[1]), str(good[2])]
    out = list(decode_all(paths, Recipe(), None, workers=1, isolation=Isolation(3.0, None)))
    assert [o.path for o in out] == paths
    assert out[1].decoded is None and "longer than 3s" in out[1].error
    assert all(o.decoded is not None for o in out[:1] + out[2:])


def test_a_decoder_memory_blow_up_costs_one_file(tmp_path, library):
    """A 120 MP image under a 600 MiB cap per worker fails alone; the job completes."""
    folder = tmp_path / "mem"
    folder.mkdir()
    Image.new("RGB", (12000, 10000), (90, 120, 200)).save(folder / "huge.png", compress_level=1)
    shutil.copy(PHOTOS / "kodim08.png", folder)
    summary = index_json(folder, "--index", library, "--decode-memory", "600")
    assert summary["indexed"] == 1
    (failure,) = summary["failed"]
    assert failure["path"].endswith("huge.png") and "memory" in failure["error"]


@pytest.mark.parametrize("hint", ["right", "wrong"])
def test_decoding_starts_before_the_model_loads_and_a_wrong_hint_costs_nothing(
    tmp_path, photos, hint
):
    """job.run decodes with the hinted recipe while the model loads; if the loaded model
    preprocesses differently the head start is thrown away, never used."""
    embedder = model.load("dinov2-small", device="cpu")

    def load_embedder():
        return embedder

    def index(directory, recipe_hint):
        store = Store.open(directory, create=True)
        opts = job.IndexOptions(workers=1)
        summary = job.run(store, [str(photos)], load_embedder, opts, None, recipe_hint)
        store.close()
        vectors = {r["path"]: r["vector"] for r in stored_rows(directory)}
        return summary, vectors

    wrong = Recipe(shortest_edge=64, crop=(56, 56))
    hinted = embedder.recipe if hint == "right" else wrong
    summary, with_hint = index(tmp_path / "a", hinted)
    _, without = index(tmp_path / "b", None)
    assert summary.embedded == 8 and not summary.failed
    assert with_hint == without  # byte-identical vectors either way


def test_the_index_is_updated_not_rebuilt_after_a_small_change(photos, library, monkeypatch):
    """Adding a file and re-embedding another brings the FAISS file up to date in place (no
    build), and it then agrees with SQLite as a fresh build would (check compares vectors)."""
    names = sorted(p.name for p in photos.iterdir())
    extra = photos.parent / "held-back.png"
    (photos / names[-1]).rename(extra)
    index_json(photos, "--index", library)
    (photos / names[-1]).write_bytes(extra.read_bytes())  # a new file
    changed = photos / names[0]
    shutil.copy(sorted(PHOTOS.glob("*.png"))[-1], changed)  # new content under an indexed path

    def no_build(*args, **kwargs):
        raise AssertionError("the index was rebuilt, not updated")

    monkeypatch.setattr(knn.VectorIndex, "build", no_build)
    summary = index_json(photos, "--index", library)
    assert summary["embedded"] == 2
    monkeypatch.undo()
    report = CliRunner().invoke(cli, ["check", "--index", str(library), "--json"])
    assert report.exit_code == 0 and json.loads(report.stdout)["ok"], report.stdout
    hit = json.loads(invoke("query", changed, "--index", library, "-k", "1", "--json").stdout)
    assert hit["results"][0]["path"] == str(changed) and hit["results"][0]["score"] > 0.9999


def test_index_type_is_chosen_by_the_user_and_kept(photos, library):
    """--index-type overrides the size rule, is kept for later commands, and a change rebuilds
    the FAISS file; queries answer the same neighbours either way."""

    def kind():
        store = Store.open(library)
        try:
            return knn.VectorIndex.load(library, store.generation).kind
        finally:
            store.close()

    invoke("index", photos, "--index", library, "--index-type", "hnsw")
    assert kind() == "hnsw"
    query = sorted(photos.iterdir())[0]
    via_hnsw = json.loads(invoke("query", query, "--index", library, "-k", "4", "--json").stdout)
    invoke("index", photos, "--index", library, "--index-type", "flat")  # nothing new to embed
    assert kind() == "flat"
    via_flat = json.loads(invoke("query", query, "--index", library, "-k", "4", "--json").stdout)
    assert [r["path"] for r in via_flat["results"]] == [r["path"] for r in via_hnsw["results"]]
    invoke("index", photos, "--index", library)  # no option: the library keeps "flat"
    assert kind() == "flat"
    invoke("index", photos, "--index", library, "--index-type", "ivfpq")
    assert kind() == "flat"  # 8 vectors are too few to train PQ codes on: exact search
    check = CliRunner().invoke(cli, ["check", "--index", str(library), "--json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["ok"], check.stdout


def test_an_object_store_uri_gets_the_way_to_index_it(library):
    result = CliRunner().invoke(cli, ["index", "s3://bucket/photos", "--index", str(library)])
    assert result.exit_code == 2
    assert "local filesystem only" in result.output and "Mount" in result.output
    assert not library.exists()
