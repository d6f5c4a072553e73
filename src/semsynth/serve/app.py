"""The FastAPI application of ``semsynth serve``: the painter page, ``POST /generate``, ``GET /models``,
``GET /classes``, ``GET /health``; OpenAPI at ``/openapi.json`` and ``/docs``.

Every error is JSON, ``{"error": "<what is wrong and what to do>", "status": <code>}``: 4xx for bad requests,
413 for uploads above the limits, 415 for a wrong content type or image format, 503 with ``Retry-After`` when the
queue is full, 504 when a request ran past the timeout.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import EXAMPLES, RequestError, ServedModel
from .pool import Busy, Disconnected, Timeout, WorkerPool
from .uploads import FIELDS, Limits, decode, parse_request

STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/painter.js": ("painter.js", "text/javascript; charset=utf-8"),
         "/painter.css": ("painter.css", "text/css; charset=utf-8")}

GENERATE_DOC = """Synthesise the photo of a layout. Answers a PNG at the model's resolution.

Send **multipart/form-data** (the layout as a PNG in the field `label`: class ids, as the dataset's label files, or
the palette's colours) or **application/json** (`{"label": [[ids...], ...], "seed": 3}`: channel ids
0..num_classes-1 as `GET /classes` lists them). Layouts of another size are resized (nearest) to the model's
resolution.

Fields: """ + "; ".join(f"`{k}`: {v}" for k, v in FIELDS.items()) + """.

Headers of the answer: `X-Seed`, `X-Previous-Seed` (re-sampling), `X-Model`, `X-Mode` (sample, style,
deterministic, local-noise, composite), `X-Precision`, `X-Generation-Time` (the generator's seconds),
`X-Processing-Time` (decoding + generation + PNG, seconds), `X-Queue-Time` (seconds waited for a worker) and
`Server-Timing`."""

_FIELD_SCHEMA = {
    "model": {"type": "string"}, "seed": {"type": "integer", "minimum": 0},
    "previous_seed": {"type": "integer", "minimum": 0},
}
OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["label"], "properties": {
                **_FIELD_SCHEMA,
                **{k: {"type": "string", "format": "binary", "description": FIELDS[k]}
                   for k in ("label", "style", "mask", "instance")}}}},
            "application/json": {"schema": {"type": "object", "required": ["label"], "properties": {
                **_FIELD_SCHEMA,
                "label": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}},
                          "description": "channel ids, rows of the layout"},
                "mask": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}},
                         "description": "1 inside the region to re-sample, 0 elsewhere (the layout's size)"},
                "instance": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}}}},
        },
    },
}
ERROR_SCHEMA = {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "error": {"type": "string"}, "status": {"type": "integer"}}}}}}
ERRORS = {code: {"description": text, **ERROR_SCHEMA} for code, text in (
    (400, "a bad field, an undecodable image, class ids outside the model's classes, sizes that differ"),
    (404, "no model of that name"), (413, "an upload above the limits"),
    (415, "a content type or image format the server does not take"),
    (503, "the queue is full (see Retry-After)"), (504, "the request ran past the timeout"))}

# the offline fallback of /docs: Swagger UI comes from a CDN; without it, list the operations from openapi.json
DOCS_FALLBACK = """<div id="offline-docs" style="font-family:sans-serif;max-width:60em;margin:1em"></div>
<script>
window.addEventListener("load", function () {
  if (window.SwaggerUIBundle) return;
  fetch("/openapi.json").then(function (r) { return r.json(); }).then(function (spec) {
    var out = ["<h1>" + spec.info.title + " (offline: Swagger UI could not be loaded)</h1>",
               "<p>The schema: <a href='/openapi.json'>/openapi.json</a>. The guide: docs/serve.md.</p>"];
    Object.keys(spec.paths).forEach(function (path) {
      Object.keys(spec.paths[path]).forEach(function (method) {
        var op = spec.paths[path][method];
        out.push("<h2>" + method.toUpperCase() + " " + path + "</h2><p><b>" + (op.summary || "") + "</b></p><pre style='white-space:pre-wrap'>"
                 + (op.description || "").replace(/</g, "&lt;") + "</pre>");
      });
    });
    document.getElementById("offline-docs").innerHTML = out.join("\\n");
  });
});
</script>"""


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def create_app(models: Sequence[ServedModel], *, workers: int = 1, queue: int = 8, timeout: float = 30.0,
               threads: int | None = None, limits: Limits | None = None) -> FastAPI:
    """The application serving ``models`` (the first is the default) with a pool of ``workers`` inference threads
    (each using ``threads`` torch threads), ``queue`` waiting places and a ``timeout`` per request."""
    from .. import __version__

    if not models:
        raise ValueError("create_app needs at least one model")
    limits = limits or Limits()
    by_name = {m.name: m for m in models}
    pool = WorkerPool(workers, queue, timeout, threads)
    pages = {route: ((STATIC / name).read_bytes(), media) for route, (name, media) in PAGES.items()}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        pool.shutdown()

    app = FastAPI(title="semsynth serve", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Semantic image synthesis over HTTP: layouts (label maps) in, photos out. "
                              "The painter is at `/`; the guide is docs/serve.md.")
    app.state.models, app.state.pool, app.state.limits = by_name, pool, limits

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, e: RequestError):
        return error_response(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, e: StarletteHTTPException):
        message = e.detail if isinstance(e.detail, str) else str(e.detail)
        if e.status_code == 404:
            message = f"{message}: the routes are / (the painter), /generate, /example, /models, /classes, /health, /docs"
        elif e.status_code == 405:
            message = f"{message}: see /docs for the methods of each route"
        return error_response(e.status_code, message, getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, e: RequestValidationError):
        parts = ["{}: {}".format(".".join(str(x) for x in err.get("loc", ())), err.get("msg")) for err in e.errors()]
        return error_response(400, "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, e: Exception):
        return error_response(500, f"internal error ({type(e).__name__}: {e}); the server log has the details")

    def model_of(name: str | None) -> ServedModel:
        if name is None or name == "":
            return models[0]
        if name not in by_name:
            raise RequestError(404, f"no model named {name!r}; the served models are {', '.join(by_name)} "
                                    f"(GET /models)")
        return by_name[name]

    async def pooled(fn, request: Request):
        """``(fn's result, seconds queued)`` from a worker of the pool, or the error response when the pool
        refuses (503), the timeout passes (504) or the client went away (499, nothing sent)."""
        try:
            return await pool.run(fn, request.is_disconnected)
        except Busy as e:
            return error_response(503, f"the server is busy: {e}", {"Retry-After": str(e.retry_after)})
        except Timeout:
            return error_response(504, f"no answer within the timeout of {pool.timeout:g} s (queue and computation; "
                                       f"the server is overloaded or the model slow): retry, or start the server "
                                       f"with a larger --timeout", {"Retry-After": str(pool.retry_after())})
        except Disconnected:
            return Response(status_code=499)

    def page_route(content: bytes, media: str):
        def page() -> Response:
            return Response(content, media_type=media, headers={"Cache-Control": "no-cache"})
        return page

    for route, (content, media) in pages.items():
        app.add_api_route(route, page_route(content, media), methods=["GET"], include_in_schema=False)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        html = get_swagger_ui_html(openapi_url="/openapi.json", title="semsynth serve: API").body.decode()
        return HTMLResponse(html.replace("</body>", DOCS_FALLBACK + "</body>"))

    @app.get("/health", summary="Liveness and load", responses={200: {"description": "the server is up"}})
    def health() -> dict:
        """`status: ok`, the served models and the pool's counters (computing + waiting, capacity, refused...)."""
        return {"status": "ok", "models": list(by_name), "pool": pool.stats()}

    @app.get("/models", summary="The served models")
    def list_models() -> dict:
        """Each model's name, generator, resolution `[h, w]`, classes, whether it is multi-modal (takes a seed),
        takes a style image, how it re-samples a region (`local-noise`, `composite` or `none`, with an
        explanation), and the precision it runs in. The first is the default of `/generate`."""
        return {"default": models[0].name, "models": [m.describe() for m in models]}

    @app.get("/classes", summary="The class table of a model", responses={404: ERRORS[404]})
    def classes(model: str | None = Query(None, description="a model name (default: the first)")) -> dict:
        """One row per channel: `id`, `name`, `colour` `[r, g, b]` (the palette: a layout PNG in these colours is
        read by colour), `raw_values` (the values a class-id PNG holds for it, as the dataset's label files); the
        class the eraser paints (`background`) and the don't-care channel."""
        return model_of(model).classes()

    @app.get("/example", summary="An example layout of a model's built-in world", response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "the layout, a PNG of class ids"},
                        400: ERRORS[400], 404: ERRORS[404], 503: ERRORS[503]})
    async def example(request: Request,
                      model: str | None = Query(None, description="a model name (default: the first)"),
                      index: int = Query(0, description=f"which validation layout, 0 to {EXAMPLES - 1}")) -> Response:
        """Validation layout `index` of the procedural world the model was trained on (synthetic faces or
        landscapes: layouts it never saw), as a PNG of class ids at the painter's canvas size; `GET /models`
        says how many a model has (`examples`: 0 for a model of another dataset, which answers 404). The
        painter starts from example 0."""
        m = model_of(model)
        done = await pooled(lambda: m.example(index), request)
        if isinstance(done, Response):
            return done
        return Response(done[0], media_type="image/png", headers={"Cache-Control": "no-cache", "X-Model": m.name,
                                                              "X-Example": str(index)})

    @app.post("/generate", summary="Synthesise a photo from a layout", description=GENERATE_DOC,
              openapi_extra=OPENAPI_BODY, response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "the photo (PNG)"}, **ERRORS})
    async def generate(request: Request) -> Response:
        t0 = time.perf_counter()
        raw = await parse_request(request, limits)
        model = model_of(raw.model)

        def work():
            t = time.perf_counter()
            job = decode(raw, model, limits)
            out = model.render(job)
            return out, time.perf_counter() - t

        done = await pooled(work, request)
        if isinstance(done, Response):
            return done
        (out, processing), waited = done
        total = time.perf_counter() - t0
        headers = {
            "X-Seed": str(raw.seed), "X-Model": model.name, "X-Mode": out.mode, "X-Precision": model.precision,
            "X-Generation-Time": f"{out.generation_s:.4f}", "X-Processing-Time": f"{processing:.4f}",
            "X-Queue-Time": f"{waited:.4f}", "Cache-Control": "no-store",
            "Server-Timing": f"queue;dur={waited * 1e3:.1f}, gen;dur={out.generation_s * 1e3:.1f}, "
                             f"total;dur={total * 1e3:.1f}",
        }
        if raw.previous_seed is not None:
            headers["X-Previous-Seed"] = str(raw.previous_seed)
        return Response(out.png, media_type="image/png", headers=headers)

    return app
