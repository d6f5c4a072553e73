"""The HTTP API of ``semsynth serve`` through FastAPI's TestClient: each route, what the pictures are (seeds, styles,
re-sampling), and every bad input as a 4xx JSON answer whose message says what is wrong.

The models are the tiny ones of conftest.py: ``faces`` (SC-GAN 64x64, 15 classes, style encoder: composite
re-sampling), ``oasis`` (OASIS 64x64, 4 classes, noise per pixel: local re-sampling), ``det`` (deterministic SC-GAN).
"""

from __future__ import annotations

import io
import json
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsynth.serve.engine import BF16_MAX_ABS, BF16_MEAN_ABS, ServedModel
from semsynth.serve.uploads import Limits
from tests.serve.conftest import decode_png, face_layout, oasis_layout, png_bytes

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
STATIC = Path(__file__).resolve().parents[2] / "src" / "semsynth" / "serve" / "static"


def gen(client, label: np.ndarray | bytes, **fields):
    files = {"label": ("layout.png", label if isinstance(label, bytes) else png_bytes(label), "image/png")}
    for key in ("style", "mask", "instance"):
        if key in fields:
            value = fields.pop(key)
            files[key] = (f"{key}.png", value if isinstance(value, bytes) else png_bytes(value), "image/png")
    return client.post("/generate", files=files, data={k: str(v) for k, v in fields.items()})


def photo(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return decode_png(r.content)


def refused(r, status: int, *phrases: str) -> str:
    """The answer is ``status`` with a JSON error that contains each phrase."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["status"] == status and isinstance(body["error"], str) and len(body["error"]) > 20, body
    for p in phrases:
        assert p in body["error"], (p, body["error"])
    return body["error"]


# -- routes ------------------------------------------------------------------------------------------------------


def test_health_lists_the_models_and_the_pool(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["models"] == ["faces", "oasis", "det"]
    assert body["pool"]["workers"] == 1 and body["pool"]["queue"] == 8 and body["pool"]["capacity"] == 9


def test_models_describe_style_resampling_and_precision(client):
    body = client.get("/models").json()
    assert body["default"] == "faces"
    m = {d["name"]: d for d in body["models"]}
    assert (m["faces"]["generator"], m["faces"]["resolution"], m["faces"]["num_classes"]) == ("scgan", [64, 64], 15)
    assert (m["faces"]["style"], m["faces"]["multimodal"], m["faces"]["resample"]) == (True, True, "composite")
    assert (m["oasis"]["style"], m["oasis"]["resample"], m["oasis"]["z_dim"]) == (False, "local-noise", 3)
    assert (m["det"]["multimodal"], m["det"]["resample"], m["det"]["z_dim"]) == (False, "none", 0)
    assert {d["precision"] for d in m.values()} == {"fp32"}
    assert all(d["prepared"] == "prepared for inference (norms folded)" for d in m.values())
    assert "pasted" in m["faces"]["resample_explained"] and "noise" in m["oasis"]["resample_explained"]


def test_classes_give_names_colours_and_the_eraser_class(client):
    faces = client.get("/classes").json()
    assert faces["model"] == "faces" and faces["num_classes"] == 15 and len(faces["classes"]) == 15
    assert faces["classes"][0]["name"] == "background" and faces["background"] == 0
    assert faces["classes"][1]["name"] == "skin"
    assert all(c["hex"] == "#{:02x}{:02x}{:02x}".format(*c["colour"]) for c in faces["classes"])
    oasis = client.get("/classes", params={"model": "oasis"}).json()
    assert [c["name"] for c in oasis["classes"]] == ["ground", "sky", "tree", "road"]
    assert [c["raw_values"] for c in oasis["classes"]] == [[0], [1], [2], [3]]
    refused(client.get("/classes", params={"model": "nope"}), 404, "'nope'", "faces, oasis, det")


def test_example_layouts_of_a_built_in_world(client):
    from semsynth.data.synthetic_faces import SyntheticFaces
    from semsynth.serve.engine import EXAMPLES

    m = {d["name"]: d for d in client.get("/models").json()["models"]}
    assert (m["faces"]["examples"], m["det"]["examples"], m["oasis"]["examples"]) == (EXAMPLES, EXAMPLES, 0)
    r = client.get("/example", params={"index": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert (r.headers["x-model"], r.headers["x-example"]) == ("faces", "3")
    ids = np.asarray(Image.open(io.BytesIO(r.content)))
    # validation face 3 of the model's world (its data seed), rendered at the painter's canvas size (64 x 4)
    _, want = SyntheticFaces("val", resolution=256, num_samples=EXAMPLES, seed=0).sample_arrays(3)
    assert ids.shape == (256, 256) and np.array_equal(ids, want)
    assert client.get("/example", params={"index": 3}).content == r.content  # the same layout every time
    assert client.get("/example", params={"index": 4}).content != r.content
    # the layout it gives is one /generate takes as it is
    assert gen(client, ids).status_code == 200
    refused(client.get("/example", params={"model": "oasis"}), 404, "'custom'", "no built-in example layouts",
            "load a label PNG")
    refused(client.get("/example", params={"index": EXAMPLES}), 400, f"index {EXAMPLES}", f"0 to {EXAMPLES - 1}")
    refused(client.get("/example", params={"index": -1}), 400, "index -1")
    refused(client.get("/example", params={"index": "x"}), 400, "index")
    refused(client.get("/example", params={"model": "nope"}), 404, "'nope'")


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert {"/generate", "/example", "/models", "/classes", "/health"} <= set(spec["paths"])
    body = spec["paths"]["/generate"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert body["multipart/form-data"]["schema"]["required"] == ["label"]
    assert {"413", "415", "503", "504"} <= set(spec["paths"]["/generate"]["post"]["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "offline-docs" in docs.text  # the operations are listed from openapi.json when the CDN is unreachable


def test_the_page_is_served_and_needs_no_network(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for src in ("/painter.js", "/painter.css"):
        assert src in page.text
        r = client.get(src)
        assert r.status_code == 200 and r.content == (STATIC / src[1:]).read_bytes()
    for f in STATIC.iterdir():  # no CDN, no font service: everything comes from this server
        text = f.read_text()
        assert "://" not in text.replace("http://www.w3.org", ""), f.name


# -- pictures ----------------------------------------------------------------------------------------------------


def test_a_seed_gives_the_same_png_bytes_and_seeds_differ(client):
    lab = face_layout()
    a, b, c = (gen(client, lab, seed=s) for s in (3, 3, 4))
    assert a.status_code == b.status_code == c.status_code == 200
    assert a.content == b.content
    assert a.headers["x-seed"] == "3" and a.headers["x-mode"] == "sample" and a.headers["x-model"] == "faces"
    assert photo(a).shape == (64, 64, 3)
    assert np.abs(photo(a) - photo(c)).mean() > 2
    for h in ("x-generation-time", "x-processing-time", "x-queue-time"):
        assert 0 <= float(a.headers[h]) < 30
    assert "gen;dur=" in a.headers["server-timing"]


def test_json_ids_ids_png_and_palette_png_give_the_same_picture(client):
    lab = face_layout()
    by_png = gen(client, lab, seed=5)
    by_json = client.post("/generate", json={"label": lab.tolist(), "seed": 5})
    palette = np.array([c["colour"] for c in client.get("/classes").json()["classes"]], np.uint8)
    by_colour = gen(client, palette[lab], seed=5)
    assert by_png.content == by_json.content == by_colour.content


def test_layouts_of_other_sizes_are_resized_nearest(client):
    """Documented in docs/serve.md: any size within the limits is resized (nearest) to the model's resolution."""
    lab = face_layout()
    twice = np.kron(lab, np.ones((2, 2), np.uint8))  # 128x128: nearest down-sizing gives lab back
    assert gen(client, twice, seed=1).content == gen(client, lab, seed=1).content
    odd = gen(client, face_layout(24, 40), seed=1)  # another aspect ratio: stretched, the answer is 64x64
    assert photo(odd).shape == (64, 64, 3)


def test_the_deterministic_model_ignores_the_seed(client):
    a, b = (gen(client, face_layout(), model="det", seed=s) for s in (1, 2))
    assert a.content == b.content and a.headers["x-mode"] == "deterministic"


def test_a_style_image_sets_the_look(client):
    rng = np.random.default_rng(0)
    style1 = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    style2 = np.zeros((80, 50, 3), np.uint8)  # any size: resized to the model's resolution
    style2[..., 2] = 255
    lab = face_layout()
    a, a2 = gen(client, lab, seed=0, style=style1), gen(client, lab, seed=99, style=style1)
    b = gen(client, lab, seed=0, style=style2)
    plain = gen(client, lab, seed=0)
    assert a.headers["x-mode"] == "style"
    assert a.content == a2.content  # the style image replaces the seed
    assert np.abs(photo(a) - photo(b)).mean() > 1 and np.abs(photo(a) - photo(plain)).mean() > 1
    buf = io.BytesIO()
    Image.fromarray(style1).save(buf, format="JPEG", quality=95)
    jpeg = gen(client, lab, style=buf.getvalue())  # photos may be JPEG (layouts may not)
    assert jpeg.status_code == 200 and jpeg.headers["x-mode"] == "style"


def test_resampling_a_region_with_local_noise_keeps_the_far_pixels(client):
    lab = oasis_layout()
    mask = np.zeros((64, 64), np.uint8)
    mask[8:28, 8:28] = 255
    before = photo(gen(client, lab, model="oasis", seed=1))
    r = gen(client, lab, model="oasis", seed=2, previous_seed=1, mask=mask)
    after = photo(r)
    assert r.headers["x-mode"] == "local-noise" and r.headers["x-previous-seed"] == "1"
    diff = np.abs(after - before).sum(-1)
    inside, far = diff[8:28, 8:28], diff[44:, 44:]
    assert inside.mean() > 20, inside.mean()
    assert far.max() == 0  # beyond the receptive field nothing moves
    far_mask = np.ones((64, 64), bool)
    far_mask[0:36, 0:36] = False
    assert diff[far_mask].mean() < inside.mean() / 10
    # the mask as a JSON array gives the same picture
    js = client.post("/generate", json={"label": lab.tolist(), "model": "oasis", "seed": 2, "previous_seed": 1,
                                        "mask": (mask > 0).astype(int).tolist()})
    assert js.content == r.content


def test_resampling_a_region_by_compositing_keeps_every_outside_pixel(client):
    lab = face_layout()
    mask = np.zeros((64, 64), np.uint8)
    mask[20:44, 10:40] = 1
    old, new = photo(gen(client, lab, seed=1)), photo(gen(client, lab, seed=2))
    r = gen(client, lab, seed=2, previous_seed=1, mask=mask)
    out = photo(r)
    assert r.headers["x-mode"] == "composite"
    outside = mask == 0
    assert np.array_equal(out[outside], old[outside])
    assert np.array_equal(out[21:43, 11:39], new[21:43, 11:39])  # the region's interior is the new seed's
    assert np.abs(out[20:44, 10:40] - old[20:44, 10:40]).mean() > 2


# -- bad inputs: each a 4xx JSON answer with a message -------------------------------------------------------------


@pytest.fixture(scope="module")
def small(served):
    """An app with tight limits: 20,000 bytes a request, 128x128 pixels an image."""
    from fastapi.testclient import TestClient

    from semsynth.serve import create_app

    limits = Limits(max_body_bytes=20_000, max_pixels=128 * 128, max_side=256)
    with TestClient(create_app(served, limits=limits)) as c:
        yield c


def test_too_many_bytes(small):
    noise = np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8)  # ~43 kB of PNG
    refused(gen(small, face_layout(), style=noise), 413, "20,000 bytes")
    refused(small.post("/generate", content=b"x" * 30_000, headers={"content-type": "application/json"}), 413,
            "30,000 bytes", "limit")

    def chunks():  # no Content-Length: counted as it arrives, cut off at the limit
        for _ in range(40):
            yield b" " * 1000

    refused(small.post("/generate", content=chunks(), headers={"content-type": "application/json"}), 413, "limit")


def test_too_many_pixels(small, client):
    refused(gen(small, np.zeros((130, 130), np.uint8)), 413, "130x130 pixels", "16,384")
    refused(client.post("/generate", json={"label": [[0] * 5000]}), 413, "5000x1 values", "4096")
    # a tiny file that claims a huge picture is refused from its header, before its pixels are decoded
    refused(gen(client, np.zeros((1, 5000), np.uint8)), 413, "5000x1 pixels", "4096")


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_from_its_header(client):
    t = time.perf_counter()
    refused(gen(client, _png_header_only(4000, 4000)), 413, "4000x4000 pixels")
    assert time.perf_counter() - t < 10  # (not a timing test: 16 MP were never allocated)


def test_wrong_content_types(client):
    refused(client.post("/generate", content=b"label=1", headers={"content-type": "text/plain"}), 415,
            "'text/plain'", "multipart/form-data")
    refused(client.post("/generate", content=b"{}"), 415, "(none)")
    refused(client.post("/generate", content=b"x", headers={"content-type": "image/png"}), 415)


def test_the_format_is_read_from_the_content(client):
    buf = io.BytesIO()
    Image.fromarray(face_layout()).save(buf, format="JPEG")
    refused(gen(client, buf.getvalue()), 415, "lossless PNG")
    buf = io.BytesIO()
    Image.fromarray(face_layout()).save(buf, format="GIF")
    refused(gen(client, buf.getvalue()), 415, "not a PNG", "GIF8")
    refused(gen(client, b"%PDF-1.4 not an image"), 415, "never from the file name")
    refused(gen(client, face_layout(), style=b"GIF89a......"), 415, "PNG/JPEG/WEBP")


def test_undecodable_images(client):
    good = png_bytes(face_layout())
    refused(gen(client, good[: len(good) // 2]), 400, "cannot decode", "truncated")
    refused(gen(client, good[:16] + b"\x00" * 100), 400, "cannot decode")
    refused(gen(client, b""), 400, "empty")
    refused(gen(client, face_layout(), previous_seed=1, mask=b"\x89PNG\r\n\x1a\n garbage"), 400, "mask",
            "cannot decode")


def test_class_ids_outside_the_table(client):
    lab = face_layout()
    lab[0, 0] = 15
    refused(client.post("/generate", json={"label": lab.tolist()}), 400, "[15]", "0..14", "GET /classes")
    refused(client.post("/generate", json={"label": [[0, -1]]}), 400, "[-1]")
    lab[0, 0] = 200
    refused(gen(client, lab), 400, "200")  # a PNG of ids: read as the dataset reads its label files
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    refused(gen(client, rgb), 400, "colour")


def test_sizes_that_must_match(client):
    refused(gen(client, oasis_layout(), model="oasis", seed=2, previous_seed=1, mask=np.ones((32, 64), np.uint8)),
            400, "mask", "64x32", "64x64", "layout's size")
    refused(client.post("/generate", json={"label": [[0, 1]], "model": "oasis", "seed": 2, "previous_seed": 1,
                                           "mask": [[1, 1], [1, 1]]}), 400, "mask")
    refused(gen(client, face_layout(), instance=np.zeros((64, 64), np.uint8)), 400, "instance")


def test_unknown_model(client):
    refused(gen(client, face_layout(), model="imagenet"), 404, "'imagenet'", "faces, oasis, det", "GET /models")
    refused(gen(client, face_layout(), model="../../etc/passwd"), 404, "no model named")


@pytest.mark.parametrize("seed", ["abc", "-1", "1.5", "9223372036854775808", "", " 3"])
def test_bad_seeds(client, seed):
    refused(gen(client, face_layout(), seed=seed), 400, "seed")


@pytest.mark.parametrize("seed", [True, 1.5, -3, "x", None, [1]])
def test_bad_json_seeds(client, seed):
    refused(client.post("/generate", json={"label": [[0]], "seed": seed}), 400, "seed")


def test_seed_limits_are_accepted(client):
    assert gen(client, face_layout(), seed=0).status_code == 200
    assert gen(client, face_layout(), seed=2**63 - 1).status_code == 200


def test_resampling_fields_go_together(client):
    lab, mask = oasis_layout(), np.ones((64, 64), np.uint8)
    refused(gen(client, lab, model="oasis", mask=mask), 400, "mask needs previous_seed")
    refused(gen(client, lab, model="oasis", previous_seed=3), 400, "previous_seed needs mask")
    refused(gen(client, face_layout(), model="det", previous_seed=1, mask=np.ones((64, 64), np.uint8)), 400,
            "deterministic")
    refused(gen(client, lab, model="oasis", style=np.zeros((8, 8, 3), np.uint8)), 400, "no style encoder")


def test_malformed_requests(client):
    refused(client.post("/generate", data={"seed": "1"}, files={"x": ("a", b"1")}), 400, "unknown field", "'x'")
    refused(client.post("/generate", data={"seed": "1"}), 415)  # a form without files is url-encoded
    refused(client.post("/generate", files={"seed": (None, "1")}), 400, "no layout")
    refused(client.post("/generate", files={"label": (None, "1,2,3")}), 400, "must be a file part")
    two = [("label", ("a.png", png_bytes(face_layout()), "image/png"))] * 2
    refused(client.post("/generate", files=two), 400, "2 times")
    refused(client.post("/generate", content=b"--xyz\r\ngarbage",
                        headers={"content-type": "multipart/form-data; boundary=xyz"}), 400)
    refused(client.post("/generate", content=b"{not json", headers={"content-type": "application/json"}), 400,
            "cannot be parsed")
    refused(client.post("/generate", json=[[0, 1]]), 400, "must be an object")
    refused(client.post("/generate", json={"label": [[0, 1], [1]]}), 400, "label")
    refused(client.post("/generate", json={"label": [[[0]]]}), 400, "2-D")
    refused(client.post("/generate", json={"label": [["a"]]}), 400, "2-D")
    refused(client.post("/generate", json={"label": []}), 400, "non-empty")
    refused(client.post("/generate", json={"label": [[0]], "colour": 1}), 400, "unknown field", "'colour'")
    refused(client.post("/generate", json={"label": [[0]], "style": "face.jpg"}), 400, "multipart")
    refused(client.post("/generate", json={"label": [[0]], "model": 3}), 400, "model")


def test_other_routes_and_methods_answer_json(client):
    refused(client.get("/generate"), 405, "/docs")
    refused(client.get("/nowhere"), 404, "/generate")


def test_no_path_is_taken_from_a_request(client, tiny_dirs):
    """File names and strings are never opened: the server reads only the bytes it was sent."""
    real = str(tiny_dirs["faces"] / "config.json")
    r = client.post("/generate", files={"label": (real, b"", "image/png")})
    assert real not in refused(r, 400, "empty")
    refused(client.post("/generate", json={"label": real}), 400, "2-D")
    refused(client.post("/generate", files={"label": (real, b'{"format": "semsynth-model"}', "image/png")}), 415)
    refused(gen(client, face_layout(), model=str(tiny_dirs["faces"])), 404, "no model named")


# -- the worker pool: queue full, timeout --------------------------------------------------------------------------


class Gated:
    """A served model whose ``render`` waits for ``release`` (and says when it started), or sleeps ``delay``."""

    def __init__(self, model: ServedModel, delay: float = 0.0) -> None:
        self._model, self.delay = model, delay
        self.started, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self._model, name)

    def render(self, job):
        self.started.set()
        if self.delay:
            time.sleep(self.delay)
        else:
            assert self.release.wait(30)
        return self._model.render(job)


def test_a_full_queue_answers_503_with_retry_after(served):
    from fastapi.testclient import TestClient

    from semsynth.serve import create_app

    gated = Gated(served[0])
    with TestClient(create_app([gated], workers=1, queue=1, timeout=60)) as c:
        answers = []
        first = threading.Thread(target=lambda: answers.append(gen(c, face_layout(), seed=1)))
        first.start()
        assert gated.started.wait(30)
        second = threading.Thread(target=lambda: answers.append(gen(c, face_layout(), seed=2)))
        second.start()
        for _ in range(200):  # the second waits in the queue
            if c.get("/health").json()["pool"]["pending"] == 2:
                break
            time.sleep(0.02)
        r = gen(c, face_layout(), seed=3)
        refused(r, 503, "busy", "retry in")
        assert int(r.headers["retry-after"]) >= 1
        gated.release.set()
        first.join(30)
        second.join(30)
        assert [a.status_code for a in answers] == [200, 200]
        pool = c.get("/health").json()["pool"]
        assert (pool["refused"], pool["completed"], pool["pending"]) == (1, 2, 0)


def test_a_request_past_the_timeout_answers_504(served):
    from fastapi.testclient import TestClient

    from semsynth.serve import create_app

    slow = Gated(served[0], delay=0.8)
    with TestClient(create_app([slow], workers=1, queue=4, timeout=0.2)) as c:
        r = gen(c, face_layout())
        refused(r, 504, "timeout of 0.2 s", "--timeout")
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/health").json()["pool"]["timed_out"] == 1
        time.sleep(0.8)  # the computation that started runs to its end; its slot is then free again
        assert c.get("/health").json()["pool"]["pending"] == 0


# -- precision -----------------------------------------------------------------------------------------------------


def test_precision_choice(served):
    """fp32 on request; auto picks bf16 only with native support, within the tolerance, and faster; an explicit
    bf16 request on a CPU without it is refused."""
    import torch

    from semsynth.errors import SemsynthError
    from semsynth.serve import engine

    m = served[0]
    sem = m.syn.prepare(torch.from_numpy(face_layout()).long()[None])
    z = torch.randn(1, m.syn.z_dim)
    assert engine.choose_precision(m.G, sem, z, "fp32") == ("fp32", "fp32 requested")
    precision, why = engine.choose_precision(m.G, sem, z, "auto", runs=2)
    if not engine.bf16_supported():
        assert (precision, why) == ("fp32", "no native bf16 on this CPU")
    elif precision == "bf16":
        assert "faster" in why
    with torch.inference_mode():
        ref = m.G(sem, z)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=engine.bf16_supported()):
            low = m.G(sem, z).float()
    if precision == "bf16":  # what was chosen is within the stated tolerance
        assert float((ref - low).abs().max()) <= BF16_MAX_ABS and float((ref - low).abs().mean()) <= BF16_MEAN_ABS
    orig = engine.bf16_supported
    try:
        engine.bf16_supported = lambda: False
        with pytest.raises(SemsynthError, match="no native bfloat16"):
            engine.choose_precision(m.G, sem, z, "bf16")
        assert engine.choose_precision(m.G, sem, z, "auto")[0] == "fp32"
    finally:
        engine.bf16_supported = orig
    assert json.loads(json.dumps(m.describe()))["precision"] == "fp32"


def test_a_request_whose_client_left_while_queued_is_never_computed(served):
    """The painter aborts the requests a newer stroke made stale: one that still waits for a worker is dropped."""
    import socket

    import uvicorn

    from semsynth.serve import create_app
    from semsynth.serve.server import bind

    gated = Gated(served[0])
    calls = []
    render = gated.render
    gated.render = lambda job: (calls.append(job.seed), render(job))[1]
    app = create_app([gated], workers=1, queue=4, timeout=60)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            answers = []
            first = threading.Thread(target=lambda: answers.append(gen(c, face_layout(), seed=1)))
            first.start()
            assert gated.started.wait(30)
            body = json.dumps({"label": face_layout().tolist(), "seed": 2}).encode()
            with socket.create_connection(("127.0.0.1", port)) as raw:  # queued behind the first, then gone
                raw.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body)
                for _ in range(200):
                    if c.get("/health").json()["pool"]["pending"] == 2:
                        break
                    time.sleep(0.02)
            for _ in range(200):
                if c.get("/health").json()["pool"]["dropped"] == 1:
                    break
                time.sleep(0.02)
            pool = c.get("/health").json()["pool"]
            gated.release.set()
            first.join(30)
            assert answers[0].status_code == 200
            assert (pool["dropped"], pool["pending"]) == (1, 1)
            assert calls == [1]  # the second request never reached the model
    finally:
        gated.release.set()
        srv.should_exit = True
        thread.join(10)
