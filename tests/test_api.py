"""The HTTP API through a TestClient on create_app, and once through a real server on loopback.

Real photos, a real library indexed with the tiny real-architecture DINOv2, real SQLite and FAISS.
"""

import io
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from indexer.job import IndexOptions
from indexer.library.store import Store
from search.cli.serve import serve
from search.collection import Collection
from search.dups.run import DupOptions
from search.web.app import create_app
from tests.helpers import (
    PHOTOS,
    api_client,
    index_in_process,
    library_paths,
    png_header_only,
    wait_until_done,
)
from tests.live_server import live_server
from tests.messy_library import build, plan_violations

BASE_URL = "http://127.0.0.1:8000"  # a loopback Host header, as a browser on this machine sends
ROTATED = "rotated.jpg"  # stored 200x100 with EXIF orientation 6: upright it is 100x200


def rotated_jpeg() -> bytes:
    img = Image.linear_gradient("L").resize((200, 100)).convert("RGB")
    exif = Image.Exif()
    exif[274] = 6
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    return out.getvalue()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    """(library, photos folder): 6 real photos and one EXIF-rotated JPEG, indexed once."""
    base = tmp_path_factory.mktemp("api")
    folder = base / "photos"
    folder.mkdir()
    for src in sorted(PHOTOS.glob("*.png"))[:6]:
        shutil.copy2(src, folder / src.name)
    (folder / ROTATED).write_bytes(rotated_jpeg())
    return index_in_process(base / "library", folder), folder


@pytest.fixture
def client(indexed):
    with api_client(indexed[0], BASE_URL) as c:
        yield c


def image_id(client: TestClient, path: Path) -> int:
    out = client.post("/api/search", files={"file": (path.name, path.read_bytes())}).json()
    return next(r["id"] for r in out["results"] if r["path"] == str(path))


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert "Traceback" not in response.text and body["error"]["message"]
    return body["error"]


# --- basics ---------------------------------------------------------------------------------------


def test_healthz_stats_and_openapi(client, indexed):
    assert client.get("/healthz").json() == {"status": "ok"}
    stats = client.get("/api/stats").json()
    assert stats == Collection(indexed[0]).info()
    assert stats["images"] == 7 and stats["model"] == "facebook/dinov2-small"
    schema = client.get("/openapi.json").json()
    assert {"/api/search", "/api/images/{image_id}/similar", "/api/index"} <= set(schema["paths"])
    assert "swagger" in client.get("/docs").text.lower()


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for name, kind in [("app.js", "javascript"), ("style.css", "css")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert "http://" not in client.get("/static/app.js").text  # no CDN: works offline


# --- search ---------------------------------------------------------------------------------------


def test_search_by_upload_returns_query_json(client, indexed):
    target = sorted(indexed[1].glob("*.png"))[2]
    r = client.post(
        "/api/search", files={"file": (target.name, target.read_bytes())}, data={"k": 3}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"query", "model", "results"}
    assert out["query"] == [target.name] and out["model"] == "facebook/dinov2-small"
    assert [h["rank"] for h in out["results"]] == [1, 2, 3]
    assert out["results"][0]["path"] == str(target)
    assert out["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert set(out["results"][0]) == {"rank", "id", "path", "score"}


def test_search_matches_cli_query(client, indexed):
    target = sorted(indexed[1].glob("*.png"))[0]
    via_api = client.post("/api/search", files={"file": ("q.png", target.read_bytes())}).json()
    via_cli = Collection(indexed[0]).query([str(target)], k=10).to_json()
    assert [h["id"] for h in via_api["results"]] == [h["id"] for h in via_cli["results"]]


def truncated_png() -> bytes:
    data = (PHOTOS / "kodim01.png").read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "name, data, status, code",
    [
        ("notes.txt", b"hello, I am not an image\n" * 20, 415, "unsupported_image"),
        ("empty.png", b"", 422, "bad_image"),
        ("half.png", truncated_png(), 422, "bad_image"),
        ("bomb.png", png_header_only(100_000, 100_000), 413, "too_many_pixels"),
        ("fake.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 100, 415, "unsupported_image"),
    ],
)
def test_search_refuses_hostile_uploads(client, name, data, status, code):
    r = client.post("/api/search", files={"file": (name, data)})
    assert_error(r, status, code)


def test_search_refuses_oversized_upload(indexed):
    app = create_app(Collection(indexed[0]), max_upload_bytes=100_000)
    with TestClient(app, base_url=BASE_URL) as c:
        r = c.post("/api/search", files={"file": ("big.png", b"\0" * 200_000)})
        assert_error(r, 413, "upload_too_large")
        # just over the file cap but within the form allowance: caught when reading the file
        r = c.post("/api/search", files={"file": ("big.png", b"\0" * 100_001)})
        assert_error(r, 413, "upload_too_large")

        def chunks():  # no Content-Length: the streamed body is counted as it arrives
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
            for _ in range(30):
                yield b"x" * 10_000

        kind = {"content-type": "multipart/form-data; boundary=b"}
        r = c.post("/api/search", content=chunks(), headers=kind)
        assert_error(r, 413, "upload_too_large")


@pytest.mark.parametrize(
    "form, files",
    [({}, None), ({"k": "0"}, "file"), ({"k": "many"}, "file"), ({"k": "100000"}, "file")],
)
def test_search_validates_form(client, form, files):
    upload = {"file": ("a.png", (PHOTOS / "kodim01.png").read_bytes())} if files else None
    r = client.post("/api/search", data=form, files=upload)
    assert_error(r, 422, "invalid_request")


# --- images ---------------------------------------------------------------------------------------


def test_image_metadata(client, indexed):
    target = indexed[1] / ROTATED
    meta = client.get(f"/api/images/{image_id(client, target)}").json()
    assert meta["path"] == str(target) and meta["name"] == ROTATED
    assert (meta["width"], meta["height"]) == (100, 200)  # upright
    assert meta["format"] == "JPEG" and meta["status"] == "ok" and len(meta["hash"]) == 64
    assert "vector" not in meta


def test_similar_starts_with_the_image_itself(client, indexed):
    target = sorted(indexed[1].glob("*.png"))[1]
    i = image_id(client, target)
    out = client.get(f"/api/images/{i}/similar", params={"k": 4}).json()
    assert out["query"] == [str(target)] and len(out["results"]) == 4
    assert out["results"][0]["id"] == i
    assert out == Collection(indexed[0]).similar(i, 4).to_json()
    assert_error(client.get(f"/api/images/{i}/similar", params={"k": 0}), 422, "invalid_request")


def test_thumbnail_is_upright_cached_jpeg(client, indexed):
    library, folder = indexed
    i = image_id(client, folder / ROTATED)
    r = client.get(f"/api/images/{i}/thumbnail", params={"size": 60})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(r.content))
    assert thumb.format == "JPEG" and thumb.size == (32, 64)  # snapped to 64, upright
    cached = list((library / "thumbs").rglob("*-64.jpg"))
    assert len(cached) == 1
    again = client.get(f"/api/images/{i}/thumbnail", params={"size": 64})
    assert again.content == r.content == cached[0].read_bytes()


def test_thumbnail_of_a_photo_keeps_aspect(client, indexed):
    target = sorted(indexed[1].glob("*.png"))[0]
    r = client.get(f"/api/images/{image_id(client, target)}/thumbnail")
    w, h = Image.open(io.BytesIO(r.content)).size
    ow, oh = Image.open(target).size
    assert max(w, h) == 256 and abs(w / h - ow / oh) < 0.02


def test_file_serves_the_indexed_original(client, indexed):
    target = sorted(indexed[1].glob("*.png"))[0]
    r = client.get(f"/api/images/{image_id(client, target)}/file")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == target.read_bytes()


def test_file_changed_or_gone_since_indexing(tmp_path):
    folder, library = tmp_path / "p", tmp_path / "lib"
    folder.mkdir()
    a, b = (shutil.copy2(src, folder) for src in sorted(PHOTOS.glob("*.png"))[:2])
    Collection(library).index([folder], IndexOptions(workers=0))
    with TestClient(create_app(Collection(library)), base_url=BASE_URL) as c:
        ids = {Path(a): image_id(c, Path(a)), Path(b): image_id(c, Path(b))}
        Path(a).write_bytes(b"now something else entirely")
        os.unlink(b)
        assert_error(c.get(f"/api/images/{ids[Path(a)]}/file"), 409, "conflict")
        assert_error(c.get(f"/api/images/{ids[Path(a)]}/thumbnail"), 409, "conflict")
        assert_error(c.get(f"/api/images/{ids[Path(b)]}/file"), 404, "not_found")


@pytest.mark.parametrize(
    "url",
    [
        "/api/images/999999",
        "/api/images/999999/similar",
        "/api/images/999999/thumbnail",
        "/api/images/999999/file",
        "/api/images/0/file",
        "/api/images/-1/file",
        "/api/images/99999999999999999999999/file",
        "/api/images/abc/file",
        "/api/images/..%2F..%2F..%2Fetc%2Fpasswd/file",
        "/api/images/%2Fetc%2Fpasswd/file",
        "/api/images/1/..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/%2e%2e/%2e%2e/api.py",
        "/api/jobs/..%2F..%2Fetc",
        "/etc/passwd",
    ],
)
def test_unknown_ids_and_traversal_get_404(client, url):
    r = client.get(url)
    assert r.status_code == 404, (url, r.text)
    assert "root:" not in r.text


def test_failed_image_has_metadata_but_no_file(tmp_path):
    folder, library = tmp_path / "p", tmp_path / "lib"
    folder.mkdir()
    shutil.copy2(PHOTOS / "kodim01.png", folder)
    (folder / "broken.png").write_bytes(truncated_png())
    Collection(library).index([folder], IndexOptions(workers=0))
    coll = Collection(library)
    bad = coll.store().db.execute("select id from images where status = 'failed'").fetchone()[0]
    with TestClient(create_app(coll), base_url=BASE_URL) as c:
        meta = c.get(f"/api/images/{bad}").json()
        assert meta["status"] == "failed" and "truncated" in meta["error"]
        for tail in ("file", "thumbnail", "similar"):
            assert_error(c.get(f"/api/images/{bad}/{tail}"), 404, "not_found")


# --- errors ---------------------------------------------------------------------------------------


def test_empty_library_is_a_clear_error(tmp_path):
    with TestClient(create_app(Collection(tmp_path / "nothing")), base_url=BASE_URL) as c:
        assert c.get("/healthz").status_code == 200
        err = assert_error(c.get("/api/stats"), 409, "no_library")
        assert "index a folder first" in err["message"]
        assert_error(c.get("/api/images/1"), 409, "no_library")


def test_unexpected_errors_are_generic_500(indexed):
    app = create_app(Collection(indexed[0]))

    def boom():
        raise RuntimeError("secret internals /home/user/.ssh")

    app.add_api_route("/boom", boom)
    with TestClient(app, base_url=BASE_URL) as c:  # answered, not re-raised
        err = assert_error(c.get("/boom"), 500, "internal")
        assert "secret" not in err["message"]


def test_other_hosts_are_refused_without_token(client):
    # DNS rebinding: another site's name pointed at 127.0.0.1 must not read the library
    r = client.get("/api/stats", headers={"host": "evil.example:8000"})
    assert_error(r, 421, "misdirected_request")
    assert client.get("/api/stats", headers={"host": "localhost:8000"}).status_code == 200


# --- token ----------------------------------------------------------------------------------------

TOKEN = "s3cret-token"


@pytest.fixture
def guarded(indexed):
    app = create_app(Collection(indexed[0]), token=TOKEN)
    with TestClient(app, base_url="http://192.168.1.20:8000") as c:
        yield c


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/healthz",
        "/api/stats",
        "/api/images/1",
        "/docs",
        "/openapi.json",
        "/static/app.js",
        "/api/images/1/file",
        "/api/jobs/x",
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer ", TOKEN])
def test_token_required_everywhere(guarded, url, auth):
    headers = {"authorization": auth} if auth is not None else {}
    r = guarded.get(url, headers=headers)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


def test_token_refuses_upload_before_reading_it(guarded):
    r = guarded.post("/api/search", files={"file": ("a.png", b"\0" * 1000)})
    assert_error(r, 401, "unauthorized")


def test_right_token_opens_everything(guarded, indexed):
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/api/stats", headers=auth).json()["images"] == 7
    target = sorted(indexed[1].glob("*.png"))[0]
    r = guarded.post("/api/search", files={"file": ("q.png", target.read_bytes())}, headers=auth)
    assert r.status_code == 200 and r.json()["results"][0]["path"] == str(target)


def test_page_token_link_sets_a_strict_cookie(guarded):
    assert_error(guarded.get("/?token=nope", follow_redirects=False), 401, "unauthorized")
    r = guarded.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert guarded.get("/api/stats").status_code == 200  # the client now sends the cookie
    guarded.cookies.clear()
    assert guarded.get("/api/stats").status_code == 401


# --- index jobs -----------------------------------------------------------------------------------


def wait_for_job(client: TestClient, job_id: str, timeout_s: float = 120) -> dict:
    return wait_until_done(client, f"/api/jobs/{job_id}", timeout_s, poll_s=0.1)


@pytest.fixture
def roots(tmp_path) -> Path:
    root = tmp_path / "root"
    (root / "set1").mkdir(parents=True)
    (root / "set2").mkdir()
    for i, src in enumerate(sorted(PHOTOS.glob("*.png"))[6:12]):  # not in `indexed`
        shutil.copy2(src, root / ("set1" if i < 3 else "set2") / src.name)
    (root / "set2" / "junk.png").write_bytes(b"not a png")
    return root


def test_index_job_under_root_then_search_sees_it(roots, tmp_path):
    app = create_app(Collection(tmp_path / "lib"), root=[roots])
    with TestClient(app, base_url=BASE_URL) as c:
        assert c.get("/api/roots").json() == {"roots": [str(roots.resolve())]}
        assert_error(c.get("/api/stats"), 409, "no_library")
        r = c.post("/api/index", json={"path": "set1"})
        assert r.status_code == 202, r.text
        job = wait_for_job(c, r.json()["job"])
        assert job["state"] == "done" and job["summary"]["indexed"] == 3, job
        assert job["done"] == job["total"] == 3 and job["stage"] == "embed"
        assert job["rate"] > 0 and job["eta_seconds"] is None and job["failures"] == []
        assert c.get("/api/stats").json()["images"] == 3

        job = wait_for_job(
            c, c.post("/api/index", json={"path": str(roots / "set2")}).json()["job"]
        )
        assert job["summary"]["indexed"] == 3
        assert [f["path"] for f in job["failures"]] == [str(roots / "set2" / "junk.png")]
        target = roots / "set2" / sorted(p.name for p in (roots / "set2").glob("kodim*"))[0]
        out = c.post("/api/search", files={"file": ("q.png", target.read_bytes())}).json()
        assert out["results"][0]["path"] == str(target) and len(out["results"]) == 6


@pytest.mark.parametrize(
    "given", ["..", "../..", "set1/../../..", "/etc", "/", "missing", "set1/../../lib"]
)
def test_index_outside_roots_gets_404(roots, tmp_path, given):
    app = create_app(Collection(tmp_path / "lib"), root=[roots])
    with TestClient(app, base_url=BASE_URL) as c:
        assert_error(c.post("/api/index", json={"path": given}), 404, "not_found")


def test_index_refuses_symlink_out_of_root(roots, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (roots / "sneaky").symlink_to(outside)
    app = create_app(Collection(tmp_path / "lib"), root=[roots])
    with TestClient(app, base_url=BASE_URL) as c:
        assert_error(c.post("/api/index", json={"path": "sneaky"}), 404, "not_found")


def test_index_without_roots_is_off(tmp_path):
    with TestClient(create_app(Collection(tmp_path / "lib")), base_url=BASE_URL) as c:
        err = assert_error(c.post("/api/index", json={"path": str(tmp_path)}), 403, "forbidden")
        assert "--root" in err["message"]
        assert_error(c.post("/api/index", json={}), 422, "invalid_request")
        assert_error(c.get("/api/jobs/nope"), 404, "not_found")


def test_index_body_must_be_json(roots, tmp_path):
    # a cross-site form post cannot send application/json without a CORS preflight
    app = create_app(Collection(tmp_path / "lib"), root=[roots])
    with TestClient(app, base_url=BASE_URL) as c:
        r = c.post("/api/index", content='{"path": "set1"}', headers={"content-type": "text/plain"})
        assert_error(r, 422, "invalid_request")


def test_one_index_job_at_a_time(roots, tmp_path):
    app = create_app(Collection(tmp_path / "lib"), root=[roots])
    with TestClient(app, base_url=BASE_URL) as c:
        first = c.post("/api/index", json={"path": "set1"}).json()["job"]
        second = c.post("/api/index", json={"path": "set2"})
        if c.get(f"/api/jobs/{first}").json()["state"] == "running":  # it may already be done
            assert_error(second, 409, "conflict")
        wait_for_job(c, first)
        if second.status_code == 202:
            wait_for_job(c, second.json()["job"])


# --- the serve command and a real server ----------------------------------------------------------


def test_serve_refuses_public_bind_without_token(tmp_path):
    r = CliRunner().invoke(serve, ["--host", "0.0.0.0", "--index", str(tmp_path)])
    assert r.exit_code == 2 and "--token" in r.output


def test_real_server_on_loopback(indexed, roots, tmp_path):
    library, folder = tmp_path / "library", indexed[1]
    shutil.copytree(indexed[0], library)  # this test adds to it
    target = sorted(folder.glob("*.png"))[0]
    with (
        live_server(library, "--root", str(roots)) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        assert http.get("/healthz").json() == {"status": "ok"}
        assert "/static/app.js" in http.get("/").text
        out = http.post("/api/search", files={"file": (target.name, target.read_bytes())}).json()
        assert out["results"][0]["path"] == str(target)
        first = out["results"][0]["id"]
        # queries keep being answered (no 5xx) while an index job writes the same library
        job = http.post("/api/index", json={"path": "set1"}).json()["job"]

        def query(i: int) -> int:
            if i % 4 == 0:
                files = {"file": ("q.png", target.read_bytes())}
                return httpx.post(f"{url}/api/search", files=files, timeout=60).status_code
            return httpx.get(f"{url}/api/images/{first}/similar", timeout=60).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(query, range(48)))
        assert statuses == [200] * 48
        deadline = time.monotonic() + 120
        while http.get(f"/api/jobs/{job}").json()["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert http.get(f"/api/jobs/{job}").json()["state"] == "done"
        assert http.get("/api/stats").json()["images"] == 10


def test_real_server_with_token(indexed):
    with live_server(indexed[0], "--token", TOKEN) as url:
        assert httpx.get(f"{url}/api/stats", timeout=60).status_code == 401
        auth = {"authorization": f"Bearer {TOKEN}"}
        r = httpx.get(f"{url}/api/stats", headers=auth, timeout=60)
        assert r.status_code == 200 and r.json()["images"] == 7


# --- duplicates -----------------------------------------------------------------------------------


def without_seconds(report: dict) -> dict:
    return {**report, "stats": {k: v for k, v in report["stats"].items() if k != "seconds"}}


def test_duplicates_is_the_dups_json(tmp_path):
    folder, library = tmp_path / "p", tmp_path / "lib"
    folder.mkdir()
    for src in sorted(PHOTOS.glob("*.png"))[:5]:
        shutil.copy2(src, folder)
    shutil.copy2(PHOTOS / "kodim01.png", folder / "copy-of-01.png")
    Image.open(PHOTOS / "kodim02.png").convert("RGB").save(folder / "02.jpg", quality=90)
    Collection(library).index([folder], IndexOptions(workers=0))
    with TestClient(create_app(Collection(library)), base_url=BASE_URL) as c:
        r = c.get("/api/duplicates", params={"threshold": "0.9"})
        assert r.status_code == 200, r.text
        out = r.json()
        expected = Collection(library).duplicates(DupOptions(threshold=0.9)).to_json()
        assert without_seconds(out) == without_seconds(expected)
        groups = [sorted(os.path.basename(m["path"]) for m in g["members"]) for g in out["groups"]]
        assert ["copy-of-01.png", "kodim01.png"] in groups
        auto = c.get("/api/duplicates", params={"include_similar": "true"})
        assert auto.status_code == 200 and auto.json()["stats"]["mode"] == "auto", auto.text
        assert_error(c.get("/api/duplicates", params={"threshold": "lots"}), 400, "bad_query")
        assert_error(c.get("/api/duplicates", params={"precision": "2"}), 422, "invalid_request")


# --- acting on duplicates: decisions, plan, apply, undo -------------------------------------------


EXACT = {"threshold": "0.999"}  # exact and pixel-identical copies only: no model quality involved


def dup_client(library: Path, **kwargs) -> TestClient:
    return TestClient(create_app(Collection(library), **kwargs), base_url=BASE_URL)


def group_names(report: dict) -> list[list[str]]:
    return sorted(
        sorted(os.path.basename(m["path"]) for m in g["members"]) for g in report["groups"]
    )


def wait_for_run(c: TestClient, run_id: str, timeout_s: float = 60) -> dict:
    return wait_until_done(c, f"/api/apply/{run_id}", timeout_s, poll_s=0.05)


def test_decisions_persist_and_are_respected(dup_lib):
    folder, library = dup_lib
    copy_pair = ["kodim01 copy.png", "kodim01.png"]
    with dup_client(library) as c:
        assert copy_pair in group_names(c.get("/api/duplicates", params=EXACT).json())
        ids = [image_id(c, folder / n) for n in copy_pair]
        r = c.post("/api/duplicates/decisions", json={"action": "distinct", "ids": ids})
        assert r.status_code == 200, r.text
        assert r.json()["decision"]["kind"] == "distinct"
        assert copy_pair not in group_names(c.get("/api/duplicates", params=EXACT).json())
        plan = c.post("/api/plan", json=EXACT).json()
        assert str(folder / "kodim01 copy.png") not in plan["image_ids"]
    with dup_client(library) as c:  # stored in the library: a new server respects it too
        listed = c.get("/api/duplicates/decisions").json()["decisions"]
        assert [d["kind"] for d in listed] == ["distinct"]
        assert copy_pair not in group_names(c.get("/api/duplicates", params=EXACT).json())
        r = c.post("/api/duplicates/decisions", json={"action": "unmark", "ids": ids})
        assert r.json()["removed"] is True
        assert copy_pair in group_names(c.get("/api/duplicates", params=EXACT).json())
        bad = {"action": "distinct", "ids": [ids[0], ids[0]]}
        assert_error(c.post("/api/duplicates/decisions", json=bad), 400, "bad_query")
        bad = {"action": "distinct", "ids": [ids[0], 99999]}
        assert_error(c.post("/api/duplicates/decisions", json=bad), 404, "not_found")
        for bad in ({"action": "merge", "ids": ids}, {"action": "distinct", "ids": ids * 2}):
            assert_error(c.post("/api/duplicates/decisions", json=bad), 422, "invalid_request")


def test_plan_shape_reason_and_keeper_choice(dup_lib):
    folder, library = dup_lib
    with dup_client(library) as c:
        r = c.post("/api/plan", json={**EXACT, "keep": "resolution > original-over-edit"})
        assert r.status_code == 200, r.text
        plan = r.json()
        assert {"version", "id", "library", "policy", "action", "groups", "summary"} <= set(plan)
        assert plan["policy"] == "resolution > original-over-edit"
        assert (library / "plans" / f"{plan['id']}.json").is_file()  # `dinosearch undo` finds it
        group = next(g for g in plan["groups"] if g["tier"] == "exact")
        assert os.path.basename(group["keep"]) == "kodim01.png"
        assert group["reason"]["criterion"] == "original-over-edit" and group["reason"]["text"]
        actions = {os.path.basename(f["path"]): f["action"] for f in group["files"]}
        assert actions == {"kodim01.png": "keep", "kodim01 copy.png": "trash"}
        assert set(plan["image_ids"]) == {f["path"] for g in plan["groups"] for f in g["files"]}
        assert plan["summary"]["actions"]["trash"] == len(plan["groups"])
        assert c.get(f"/api/plan/{plan['id']}").json() == plan

        copy = str(folder / "kodim01 copy.png")
        body = {"group": group["group"], "id": plan["image_ids"][copy]}
        r = c.post(f"/api/plan/{plan['id']}/keep", json=body)
        assert r.status_code == 200, r.text
        changed = next(g for g in r.json()["groups"] if g["group"] == group["group"])
        assert changed["keep"] == copy and changed["reason"]["criterion"] == "chosen"
        actions = {os.path.basename(f["path"]): f["action"] for f in changed["files"]}
        assert actions == {"kodim01.png": "trash", "kodim01 copy.png": "keep"}
        assert c.get(f"/api/plan/{plan['id']}").json()["groups"] == r.json()["groups"]
        other = next(i for p, i in plan["image_ids"].items() if p not in (copy, group["keep"]))
        body = {"group": group["group"], "id": other}
        assert_error(c.post(f"/api/plan/{plan['id']}/keep", json=body), 404, "not_found")

        assert_error(c.post("/api/plan", json={"keep": "prettiest"}), 400, "bad_query")
        policy_file = folder.parent / "policy.txt"
        policy_file.write_text("oldest\n")
        r = c.post("/api/plan", json={**EXACT, "keep": str(policy_file)})
        assert_error(r, 400, "bad_query")  # no reading files on the server through the API
        assert_error(c.post("/api/plan", json={"action": "keep"}), 422, "invalid_request")
        for url in ("/api/plan/deadbeef", "/api/plan/..%2F..%2Fetc%2Fpasswd", "/api/apply/nope"):
            assert_error(c.get(url), 404, "not_found")


def test_apply_without_confirm_is_a_dry_run(dup_lib, trash):
    folder, library = dup_lib
    before, rows_before = sorted(os.listdir(folder)), library_paths(library)
    with dup_client(library) as c:
        plan = c.post("/api/plan", json=EXACT).json()
        r = c.post("/api/apply", json={"plan_id": plan["id"]})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["dry_run"] is True and out["counts"] == {"would": 2}, out
        assert out["summary"]["actions"]["trash"] == 2 and "confirm" in out["message"]
        r = c.post("/api/apply", json={"plan_id": plan["id"], "confirm": False})
        assert r.status_code == 200 and r.json()["dry_run"] is True
        assert_error(c.post("/api/apply", json={}), 400, "bad_query")
        assert_error(c.post("/api/apply", json={"plan_id": "0" * 32}), 404, "not_found")
    assert sorted(os.listdir(folder)) == before and library_paths(library) == rows_before
    assert not trash.exists() or not any(trash.rglob("*.png"))
    assert Store.open(library).db["journal"].count == 0


def test_apply_with_confirm_trashes_and_the_library_follows_then_undo(dup_lib, trash):
    folder, library = dup_lib
    rows_before = library_paths(library)
    with dup_client(library) as c:
        plan = c.post("/api/plan", json=EXACT).json()
        gone = {f["path"] for g in plan["groups"] for f in g["files"] if f["action"] == "trash"}
        assert {os.path.basename(p) for p in gone} == {"kodim01 copy.png", "kodim02-export.webp"}
        gone_ids = [plan["image_ids"][p] for p in gone]
        images = c.get("/api/stats").json()["images"]
        r = c.post("/api/apply", json={"plan_id": plan["id"], "confirm": True})
        assert r.status_code == 202, r.text
        run = wait_for_run(c, r.json()["run"])
        assert run["state"] == "done" and run["kind"] == "apply", run
        assert run["result"]["counts"] == {"done": 2}
        assert not any(os.path.exists(p) for p in gone)
        assert sorted(p.name for p in (trash / "files").iterdir()) == sorted(
            os.path.basename(p) for p in gone
        )
        assert library_paths(library) == rows_before - gone
        assert c.get("/api/stats").json()["images"] == images - 2
        assert c.get("/api/duplicates", params=EXACT).json()["groups"] == []
        for i in gone_ids:
            assert_error(c.get(f"/api/images/{i}/similar"), 404, "not_found")
        again = wait_for_run(
            c, c.post("/api/apply", json={"plan_id": plan["id"], "confirm": True}).json()["run"]
        )
        assert again["result"]["counts"] == {"already": 2}  # idempotent

        assert_error(c.post("/api/undo", json={"plan_id": plan["id"]}), 400, "bad_query")
        r = c.post("/api/undo", json={"plan_id": plan["id"], "confirm": True})
        assert r.status_code == 202, r.text
        run = wait_for_run(c, r.json()["run"])
        assert run["state"] == "done" and run["result"]["counts"] == {"undone": 2}, run
        assert all(os.path.exists(p) for p in gone)
        assert library_paths(library) == rows_before
        assert c.get("/api/stats").json()["images"] == images
        assert_error(
            c.post("/api/undo", json={"plan_id": "f" * 32, "confirm": True}), 404, "not_found"
        )


def test_move_only_under_a_root(dup_lib, tmp_path):
    folder, library = dup_lib
    move = {**EXACT, "action": "move"}
    with dup_client(library) as c:  # no --root: moving is off
        assert_error(c.post("/api/plan", json={**move, "move_to": str(tmp_path)}), 403, "forbidden")
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with dup_client(library, root=root) as c:
        for outside in (str(tmp_path / "elsewhere"), "../elsewhere", "escape/x", "/"):
            r = c.post("/api/plan", json={**move, "move_to": outside})
            assert_error(r, 403, "forbidden")
        assert_error(c.post("/api/plan", json=move), 400, "bad_query")  # where to?
        plan = c.post("/api/plan", json={**move, "move_to": "dupes"}).json()
        assert plan["move_to"] == str(root / "dupes")
        moving = {f["path"] for g in plan["groups"] for f in g["files"] if f["action"] == "move"}
        edited = {**plan, "move_to": str(tmp_path / "elsewhere")}  # an edited plan: checked too
        assert_error(c.post("/api/apply", json={"plan": edited, "confirm": True}), 403, "forbidden")
        r = c.post("/api/apply", json={"plan_id": plan["id"], "confirm": True})
        run = wait_for_run(c, r.json()["run"])
        assert run["result"]["counts"] == {"done": 2}, run
        moved = {os.path.join(root / "dupes", os.path.relpath(p, folder)) for p in moving}
        assert all(os.path.exists(p) for p in moved) and not any(map(os.path.exists, moving))
        assert moved <= library_paths(library) and not moving & library_paths(library)
    assert not (tmp_path / "elsewhere").exists()


def test_posted_plans_act_only_on_library_files(dup_lib, tmp_path, trash):
    folder, library = dup_lib
    outsider = tmp_path / "not-indexed.png"
    shutil.copy2(folder / "kodim01.png", outsider)
    with dup_client(library) as c:
        plan = c.post("/api/plan", json=EXACT).json()

        def edited(fn):
            copy = json.loads(json.dumps(plan))
            fn(copy)
            return c.post("/api/apply", json={"plan": copy, "confirm": True})

        def outside_file(p):
            p["groups"][0]["files"][1]["path"] = str(outsider)

        def etc_passwd(p):
            p["groups"][0]["files"][1]["path"] = "/etc/passwd"

        def act_on_kept(p):
            p["groups"][0]["files"][0]["action"] = "trash"

        def other_library(p):
            p["library"] = str(tmp_path)

        def bad_id(p):
            p["id"] = "../../x"

        assert_error(edited(outside_file), 404, "not_found")
        assert_error(edited(etc_passwd), 404, "not_found")
        assert_error(edited(act_on_kept), 400, "bad_query")
        assert_error(edited(other_library), 400, "bad_query")
        assert_error(edited(bad_id), 400, "bad_query")
        assert_error(c.post("/api/apply", json={"plan": {"groups": 1}}), 400, "bad_query")

        def smuggled_sidecar(p):  # a posted "companion" is not trusted: sidecars are recomputed
            p["groups"][0]["files"][1]["companions"] = [
                {
                    "path": str(outsider),
                    "role": "sidecar",
                    "follows": True,
                    "size": 1,
                    "mtime_ns": 1,
                }
            ]
            for g in p["groups"][1:]:
                for f in g["files"]:
                    f["action"] = "keep"

        r = edited(smuggled_sidecar)
        assert r.status_code == 202, r.text
        run = wait_for_run(c, r.json()["run"])
        assert run["result"]["counts"] == {"done": 1}, run
    assert outsider.exists()
    assert not os.path.exists(plan["groups"][0]["files"][1]["path"])


def test_keeper_choices_and_decisions_on_a_messy_folder_keep_every_plan_applicable(tmp_path):
    """The page's journey with default options: whatever file of a group is chosen to keep, and
    after "not a duplicate", the plan still passes the dry run (one file, one group)."""
    manifest = build(tmp_path / "messy")
    library = tmp_path / "library"
    Collection(library).index([manifest.root], IndexOptions(workers=0))
    with dup_client(library) as c:
        plan = c.post("/api/plan", json={}).json()
        assert plan["groups"] and plan_violations(plan) == {}
        for group in plan["groups"]:  # keep the last file of every group instead
            path = group["files"][-1]["path"]
            body = {"group": group["group"], "id": plan["image_ids"][path]}
            r = c.post(f"/api/plan/{plan['id']}/keep", json=body)
            assert r.status_code == 200, r.text
        dry = c.post("/api/apply", json={"plan_id": plan["id"]})
        assert dry.status_code == 200, dry.text
        assert set(dry.json()["counts"]) == {"would"}, dry.json()["counts"]
        group = max(plan["groups"], key=lambda g: len(g["files"]))
        ids = [plan["image_ids"][group["keep"]], plan["image_ids"][group["files"][1]["path"]]]
        r = c.post("/api/duplicates/decisions", json={"action": "distinct", "ids": ids})
        assert r.status_code == 200, r.text
        again = c.post("/api/plan", json={}).json()
        assert plan_violations(again) == {}
        dry = c.post("/api/apply", json={"plan_id": again["id"]})
        assert dry.status_code == 200 and set(dry.json()["counts"]) == {"would"}, dry.text


# --- reads racing writers (bench/api_load.py) ---------------------------------------------------


def test_duplicates_survive_a_writer_removing_rows_between_their_reads(dup_lib):
    """GET /api/duplicates reads the vectors, then the rows: a writer of another connection
    (here an index run sweeping a deleted file) may commit in between. It was a 500 (KeyError in
    load_library) once in bench/api_load.py; the vanished image is left out instead."""
    folder, library = dup_lib
    gone = folder / "kodim01 copy.png"
    serving = Collection(library)
    store = serving.store()
    real_vectors = store.vectors

    def vectors_then_a_writer_commits():
        out = real_vectors()
        if gone.exists():  # once: the next read sees the commit
            gone.unlink()
            Collection(library).index([folder], IndexOptions(workers=0))
        return out

    with TestClient(create_app(serving), base_url=BASE_URL) as c:
        assert ["kodim01 copy.png", "kodim01.png"] in group_names(
            c.get("/api/duplicates", params=EXACT).json()
        )
        store.vectors = vectors_then_a_writer_commits  # a real commit, at the racy moment
        r = c.get("/api/duplicates", params=EXACT)
        assert r.status_code == 200, r.text
        assert not gone.exists()
        names = [n for g in group_names(r.json()) for n in g]
        assert "kodim01 copy.png" not in names and "kodim02-export.webp" in names


@pytest.mark.parametrize("ids", [[2**80, 1], [1, -5], [0, 1]])
def test_decision_ids_outside_sqlites_range_are_refused_not_a_500(client, ids):
    """Found by bench/api_fuzz.py: an id past SQLite's integer range reached the store and
    raised OverflowError (500); ids are bounded like every other image id now."""
    r = client.post("/api/duplicates/decisions", json={"action": "unmark", "ids": ids})
    assert_error(r, 422, "invalid_request")


def test_apply_documents_its_202_like_undo_and_index(client):
    """Found by bench/api_fuzz.py: a confirmed POST /api/apply answers 202, which the OpenAPI
    schema did not list (only 200), so clients generated from it would treat it as an error."""
    operations = client.get("/openapi.json").json()["paths"]
    assert {"200", "202"} <= set(operations["/api/apply"]["post"]["responses"])
    assert "202" in operations["/api/undo"]["post"]["responses"]
    assert "202" in operations["/api/index"]["post"]["responses"]
