"""timm models through timm.create_model(..., pretrained=True) and the normal hub cache.

timm needs torchvision, which needs a matching torch build, so these run in CI's second
environment (.ci/run: .venv-timm); in an environment without timm they are skipped.
"""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

timm = pytest.importorskip("timm", reason="timm not installed (pip install 'dinosearch[timm]')")

from indexer import model  # noqa: E402
from indexer.decode import decode_file  # noqa: E402
from search.cli.app import cli  # noqa: E402
from tests.checkpoints import populate_timm_cache  # noqa: E402
from tests.helpers import PHOTOS, model_input  # noqa: E402

NAME = "vit_small_patch14_dinov2.lvd142m"
pytestmark = pytest.mark.timm


@pytest.fixture(scope="module")
def timm_cache(hub_cache):
    populate_timm_cache(hub_cache, NAME)
    return hub_cache


def test_timm_embedding_is_the_cls_token_after_the_final_norm(timm_cache):
    embedder = model.load(f"timm/{NAME}")
    assert embedder.spec.backend == "timm" and embedder.dim == 384
    assert embedder.recipe.crop == (518, 518)  # timm's own recipe for this checkpoint
    pixels = decode_file(str(PHOTOS / "kodim01.png"), embedder.recipe, None).pixels[None]
    ours = embedder.embed(pixels)[0]
    with torch.no_grad():
        cls = embedder.net.forward_features(model_input(pixels, embedder.recipe))[0, 0].numpy()
    np.testing.assert_allclose(ours, cls / np.linalg.norm(cls), atol=1e-5)


def test_index_and_query_with_a_timm_model(timm_cache, tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    for src in sorted(PHOTOS.glob("*.png"))[:3]:
        (folder / src.name).write_bytes(src.read_bytes())
    lib = tmp_path / "lib"
    runner = CliRunner()
    args = ["index", str(folder), "--index", str(lib), "--model", f"timm/{NAME}", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == f"timm/{NAME}"
    target = sorted(folder.glob("*.png"))[1]
    out = runner.invoke(cli, ["query", str(target), "--index", str(lib), "--json"])
    assert json.loads(out.stdout)["results"][0]["path"] == str(target)


def test_uncached_timm_model_exits_2(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "index",
            str(PHOTOS),
            "--index",
            str(tmp_path / "l"),
            "--model",
            "timm/vit_base_patch16_224.dino",
        ],
    )
    assert result.exit_code == 2
    assert "timm/vit_base_patch16_224.dino" in result.stderr and "hf download" in result.stderr
