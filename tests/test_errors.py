"""One error vocabulary: every typed error carries its exit status, HTTP status and code; the
routes raise those, never HTTPException; a missing optional runtime answers 503, as missing
weights do; and every code the API can answer is in docs/api.md."""

import re
import sys

import pytest
from fastapi.testclient import TestClient

import indexer.onnx_runtime
import indexer.ray_backend
import search.cleanup.plan
import search.cleanup.policy  # noqa: F401  their errors join the tree below
from indexer import errors, model
from indexer.job import IndexOptions
from search.collection import Collection
from search.web.app import create_app
from search.web.errors import describe
from search.web.schemas import ERROR_RESPONSES
from tests.helpers import PHOTOS, ROOT

BASE_URL = "http://127.0.0.1:8000"


def error_classes(base=errors.DinosearchError) -> list[type]:
    found = [base]
    for sub in base.__subclasses__():
        found += error_classes(sub)
    return found


def test_every_error_carries_its_status_and_code_and_docs_list_it():
    api_page = (ROOT / "docs" / "api.md").read_text()
    documented = set(re.findall(r"^\| (\d{3}) \| (.*?) \|", api_page, re.M))
    codes = {(status, c) for status, cell in documented for c in re.findall(r"`(\w+)`", cell)}
    missing = []
    for cls in error_classes():
        assert isinstance(cls.http_status, int) and isinstance(cls.exit_code, int), cls
        exc = cls.__new__(cls)  # whatever its __init__ takes
        Exception.__init__(exc, "why")
        status, code, message = describe(exc)
        assert (status, code, message) == (cls.http_status, cls.code, "why")
        assert status in ERROR_RESPONSES or status == 500, f"{cls.__name__}: {status} undeclared"
        if (str(status), code) not in codes:
            missing.append(f"{status} `{code}` ({cls.__module__}.{cls.__name__})")
    assert not missing, "error codes missing from docs/api.md's table:\n" + "\n".join(missing)


def test_a_missing_optional_runtime_is_a_503_like_missing_weights():
    for cls in (
        indexer.onnx_runtime.OnnxUnavailable,
        indexer.onnx_runtime.GateFailed,
        indexer.ray_backend.RayUnavailable,
    ):
        assert issubclass(cls, errors.RuntimeUnavailable), cls
    assert errors.RuntimeUnavailable.http_status == errors.WeightsUnavailable.http_status == 503
    assert errors.RuntimeUnavailable.exit_code == errors.WeightsUnavailable.exit_code == 2


def test_the_routes_raise_typed_errors_not_http_exceptions():
    web = ROOT / "search" / "web"
    offenders = [
        f.name
        for f in sorted(web.glob("*.py"))
        if f.name not in ("errors.py", "guard.py")  # the mapping itself; the ASGI body cap
        and "HTTPException" in f.read_text()
    ]
    assert not offenders, f"raise the typed errors of indexer/errors.py instead: {offenders}"


def test_timm_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` fails
    spec = model.resolve("timm/vit_small_patch14_dinov2.lvd142m")
    with pytest.raises(errors.RuntimeUnavailable, match=r"pip install 'dinosearch\[timm\]'"):
        model._load_timm(spec)


def test_serving_onnx_without_onnxruntime_answers_503(tmp_path, monkeypatch):
    library = tmp_path / "library"
    folder = tmp_path / "photos"
    folder.mkdir()
    photo = sorted(PHOTOS.glob("*.png"))[0]
    (folder / photo.name).write_bytes(photo.read_bytes())
    coll = Collection(library, runtime="torch")
    coll.index([folder], IndexOptions(workers=0))
    coll.close()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    with TestClient(create_app(Collection(library, runtime="onnx")), base_url=BASE_URL) as c:
        response = c.post("/api/search", files={"file": ("query.png", photo.read_bytes())})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert set(response.json()) == {"error"} and set(error) == {"code", "message"}
    assert error["code"] == "runtime_unavailable"
    assert "onnxruntime is not installed" in error["message"], error
