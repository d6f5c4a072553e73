"""``semsynth serve``: an HTTP API (FastAPI + uvicorn) and a painter page for semantic image synthesis.

* :mod:`.engine` — the served models (fast copies of the generators, precision, re-sampling modes);
* :mod:`.uploads` — request validation (limits, formats read from the content, decoding);
* :mod:`.pool` — the bounded worker pool (queue, 503 with Retry-After, per-request timeout);
* :mod:`.app` — the FastAPI application (routes, JSON errors, the static painter page);
* :mod:`.server` — binding the address and running uvicorn.

>>> from semsynth.serve import create_app, load_models
>>> app = create_app(load_models(["src/semsynth/assets/scgan-synthetic-faces"]))   # an ASGI app

The guide is ``docs/serve.md``.
"""

from __future__ import annotations

from .engine import RequestError, ServedModel, bundled_models, load_models
from .server import run_server


def create_app(models, **options):
    """The FastAPI application (:func:`semsynth.serve.app.create_app`)."""
    from .app import create_app as _create

    return _create(models, **options)


__all__ = ["RequestError", "ServedModel", "bundled_models", "create_app", "load_models", "run_server"]
