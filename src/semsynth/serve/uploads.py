"""Request validation for ``POST /generate``: what a request may hold, and how its uploads are decoded.

Nothing is trusted: the body's size is counted as it arrives (``Content-Length`` is checked first, a chunked body
is cut off at the limit), every image is identified by its first bytes (never by its file name, extension or
declared content type) and opened with that format's decoder only, its size is read from the header and checked
before the pixels are decoded, and decoding errors become 4xx answers with a message. No file-system path is taken
from a request. Labels are read by the datasets' own reader (:meth:`semsynth.inference.Synthesizer.read_label`:
class ids mapped through the model's label values, or palette colours), so the server, ``semsynth generate`` and
training read a layout alike.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.folder import SampleError
from ..errors import SemsynthError
from .engine import MAX_SEED, Job, RequestError, ServedModel, digest

MIB = 2**20


@dataclass(frozen=True)
class Limits:
    """What one request may hold (``docs/serve.md``, section Limits)."""

    max_body_bytes: int = 8 * MIB  # the whole request body, all uploads together
    max_pixels: int = 2048 * 2048  # per image (label, mask, instance map, style image)
    max_side: int = 4096  # per image side


# the first bytes of each accepted format, and PIL's name for its decoder
SIGNATURES = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",)}
FIELDS = {
    "model": "the model's name (GET /models; default: the first served model)",
    "label": "the layout: a PNG of class ids (the dataset's label values) or of palette colours",
    "seed": "the seed of the picture (an integer 0 .. 2^63-1; default 0)",
    "style": "a style image (PNG, JPEG or WebP) for models with a style encoder",
    "mask": "a PNG at the layout's size whose non-zero pixels mark the region to re-sample (with previous_seed)",
    "previous_seed": "with mask: the seed of the picture to keep outside the region",
    "instance": "an instance-id PNG at the layout's size (models that read instance edges)",
}
FILE_FIELDS = ("label", "style", "mask", "instance")
SEED_RE = re.compile(r"\d{1,19}")


@dataclass
class RawRequest:
    """The fields of a request before any image is decoded (cheap to build on the event loop)."""

    model: str | None = None
    seed: int = 0
    previous_seed: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # label, style, mask, instance (PNG/JPEG bytes)
    arrays: dict[str, Any] = field(default_factory=dict)  # label, mask, instance as JSON arrays


def _format(data: bytes) -> str | None:
    for fmt, sigs in SIGNATURES.items():
        if any(data.startswith(s) for s in sigs):
            return fmt
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def open_image(data: bytes, what: str, formats: tuple[str, ...], limits: Limits) -> Image.Image:
    """Decode an upload: its format from its first bytes (one of ``formats``), its size from its header (checked
    against ``limits`` before the pixels are decoded), then the pixels. Every refusal is a :class:`RequestError`."""
    if not data:
        raise RequestError(400, f"{what}: the upload is empty")
    fmt = _format(data)
    names = "/".join(formats)
    if fmt not in formats:
        head = data[:8]
        raise RequestError(415, f"{what}: not a {names} file (its first bytes are {head!r}; the format is read from "
                                f"the content, never from the file name or declared type)"
                           + ("; layouts and masks must be lossless PNG (JPEG would blur the class ids)"
                              if fmt is not None and formats == ("PNG",) else ""))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            w, h = img.size
            if w < 1 or h < 1:
                raise RequestError(400, f"{what}: the image is {w}x{h} pixels")
            if w * h > limits.max_pixels or max(w, h) > limits.max_side:
                raise RequestError(413, f"{what}: the image is {w}x{h} pixels, more than the server takes (at most "
                                        f"{limits.max_side} pixels a side and {limits.max_pixels:,} pixels); "
                                        f"send it at the model's resolution (GET /models)")
            img.load()
    except RequestError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise RequestError(400, f"{what}: cannot decode this {fmt} (corrupt or truncated: {e})") from e
    return img


def parse_seed(value: Any, name: str) -> int:
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and SEED_RE.fullmatch(value))):
        raise RequestError(400, f"{name} {value!r}: not a seed; seeds are integers from 0 to {MAX_SEED} (2^63 - 1)")
    v = int(value)
    if not 0 <= v <= MAX_SEED:
        raise RequestError(400, f"{name} {v}: seeds go from 0 to {MAX_SEED} (2^63 - 1)")
    return v


def _unknown(keys, where: str) -> None:
    unknown = sorted(set(keys) - set(FIELDS))
    if unknown:
        raise RequestError(400, f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                                f"{', '.join(FIELDS)}")


async def read_body(request, limits: Limits) -> bytes:
    """The request body, refused with 413 above ``limits.max_body_bytes`` (by ``Content-Length`` first, then by
    counting what arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > limits.max_body_bytes:
            raise RequestError(413, f"the request is {int(declared):,} bytes, more than the limit of "
                                    f"{limits.max_body_bytes:,} bytes; send the layout at the model's resolution")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise RequestError(413, f"the request is more than the limit of {limits.max_body_bytes:,} bytes; send "
                                    f"the layout at the model's resolution")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_request(request, limits: Limits) -> RawRequest:
    """The fields of ``POST /generate``: multipart/form-data (files) or application/json (ids as arrays)."""
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        raise RequestError(415, f"Content-Type {kind or '(none)'!r}: send multipart/form-data (the layout as a PNG "
                                f"in the field 'label') or application/json (the layout as an array of class ids)")
    body = await read_body(request, limits)
    raw = RawRequest()
    if kind == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(400, f"the JSON body cannot be parsed: {e}") from e
        if not isinstance(data, dict):
            raise RequestError(400, "the JSON body must be an object such as {\"label\": [[0, 1], [1, 1]], "
                                    "\"seed\": 3}")
        _unknown(data, "JSON body")
        for key in ("label", "mask", "instance"):
            if key in data:
                raw.arrays[key] = data[key]
        if "style" in data:
            raise RequestError(400, "style images are sent as files: use multipart/form-data (style=@face.jpg)")
        fields = {k: data[k] for k in ("model", "seed", "previous_seed") if k in data}
    else:
        from starlette.formparsers import MultiPartException, MultiPartParser

        async def replay():
            yield body
            yield b""

        try:
            form = await MultiPartParser(request.headers, replay(), max_files=len(FILE_FIELDS),
                                         max_fields=len(FIELDS) + 1, max_part_size=64 * 1024).parse()
        except MultiPartException as e:
            raise RequestError(400, f"the multipart body cannot be parsed: {e}") from e
        _unknown(form.keys(), "multipart form")
        fields = {}
        for key in form:
            values = form.getlist(key)
            if len(values) > 1:
                raise RequestError(400, f"field {key!r} is given {len(values)} times; give it once")
            value = values[0]
            is_file = not isinstance(value, str)
            if key in FILE_FIELDS:
                if not is_file:
                    raise RequestError(400, f"field {key!r} must be a file part (curl: -F {key}=@file.png)")
                raw.files[key] = await value.read()
                await value.close()
            else:
                if is_file:
                    await value.close()
                    raise RequestError(400, f"field {key!r} must be a plain value, not a file")
                fields[key] = value
    raw.model = fields.get("model")
    if raw.model is not None and not isinstance(raw.model, str):
        raise RequestError(400, f"model {raw.model!r}: a model name is a string (GET /models)")
    if "seed" in fields:
        raw.seed = parse_seed(fields["seed"], "seed")
    if "previous_seed" in fields:
        raw.previous_seed = parse_seed(fields["previous_seed"], "previous_seed")
    if "label" not in raw.files and "label" not in raw.arrays:
        raise RequestError(400, "no layout: send the layout as a PNG in the multipart field 'label' "
                                "(curl -F label=@layout.png) or as a JSON array of class ids {\"label\": [[...]]}")
    has_mask = "mask" in raw.files or "mask" in raw.arrays
    if has_mask and raw.previous_seed is None:
        raise RequestError(400, "mask needs previous_seed: the seed of the picture to keep outside the region (the "
                                "new noise inside comes from seed)")
    if raw.previous_seed is not None and not has_mask:
        raise RequestError(400, "previous_seed needs mask: the region to re-sample (non-zero pixels, at the "
                                "layout's size)")
    return raw


def _array(value: Any, what: str, limits: Limits, kinds: str) -> np.ndarray:
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise RequestError(400, f"{what}: not a rectangular array ({e})") from e
    if a.ndim != 2 or a.dtype.kind not in kinds or a.size == 0:
        want = "integers" if kinds == "iu" else "0/1 or true/false"
        raise RequestError(400, f"{what}: expected a non-empty 2-D array (rows of {want}), got "
                                f"{'shape ' + str(a.shape) if a.ndim != 2 else 'values of type ' + a.dtype.name}")
    h, w = a.shape
    if h * w > limits.max_pixels or max(h, w) > limits.max_side:
        raise RequestError(413, f"{what}: {w}x{h} values, more than the server takes (at most {limits.max_side} a "
                                f"side and {limits.max_pixels:,} in all)")
    return a


def _mask_of(img: Image.Image) -> np.ndarray:
    """Non-zero pixels (any channel; alpha ignored; palette images: non-zero indices), as ``--resample-mask``."""
    arr = np.asarray(img if img.mode in ("L", "1", "P", "I", "I;16", "F") else img.convert("RGB"))
    return arr != 0 if arr.ndim == 2 else (arr != 0).any(axis=-1)


def decode(raw: RawRequest, model: ServedModel, limits: Limits) -> Job:
    """The images of a request decoded for ``model`` (run in a worker: decoding costs CPU)."""
    syn = model.syn
    n = model.info.num_classes
    try:
        if "label" in raw.files:
            img = open_image(raw.files["label"], "label", ("PNG",), limits)
            labels = syn.read_label("label", image=img)
        else:
            a = _array(raw.arrays["label"], "label", limits, "iu")
            bad = np.unique(a[(a < 0) | (a >= n)])
            if bad.size:
                raise RequestError(400, f"label: class ids {bad[:10].tolist()} are outside the classes of "
                                        f"{model.name!r} (0..{n - 1}; GET /classes?model={model.name}); "
                                        f"{int(((a < 0) | (a >= n)).sum()):,} value(s)")
            labels = torch.from_numpy(a.astype(np.int64))
        size = tuple(labels.shape)
        mask = None
        if "mask" in raw.files:
            mask = _mask_of(open_image(raw.files["mask"], "mask", ("PNG",), limits))
        elif "mask" in raw.arrays:
            mask = _array(raw.arrays["mask"], "mask", limits, "iub") != 0
        if mask is not None:
            if tuple(mask.shape) != size:
                raise RequestError(400, f"mask: the mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but the layout is "
                                        f"{size[1]}x{size[0]}; paint the mask at the layout's size")
            mask = torch.from_numpy(np.ascontiguousarray(mask))
        instances = None
        if "instance" in raw.files:
            img = open_image(raw.files["instance"], "instance", ("PNG",), limits)
            instances = syn.read_instance("instance", size, "the layout", image=img)
        elif "instance" in raw.arrays:
            a = _array(raw.arrays["instance"], "instance", limits, "iu")
            if a.shape != size:
                raise RequestError(400, f"instance: the instance map is {a.shape[1]}x{a.shape[0]} but the layout is "
                                        f"{size[1]}x{size[0]}; give it at the layout's size")
            instances = torch.from_numpy(a.astype(np.int64))
        style = key = None
        if "style" in raw.files:
            data = raw.files["style"]
            img = open_image(data, "style", ("PNG", "JPEG", "WEBP"), limits)
            h, w = model.resolution
            img = img.convert("RGB").resize((w, h), Image.BICUBIC)  # as Synthesizer.read_image
            style = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1
            key = digest(data)
    except SampleError as e:
        raise RequestError(400, f"{e.path}: {e.detail}" + (f" ({e.fix})" if e.fix else "")) from e
    except RequestError:
        raise
    except SemsynthError as e:
        raise RequestError(400, str(e)) from e
    return Job(labels=labels, seed=raw.seed, style=style, style_key=key, mask=mask, previous_seed=raw.previous_seed,
               instances=instances)
