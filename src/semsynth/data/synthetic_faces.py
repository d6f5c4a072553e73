"""synthetic-faces: a procedural, CelebAMask-HQ-like face-parsing world (layout -> stylised portrait).

Each sample is generated on the fly from its own seed, so the dataset needs no files, is identical on every
machine and run, and is cheap enough to train a small GAN on CPU.

Left/right follow the subject (anatomical convention): ``l_eye``, ``l_brow`` and ``l_ear`` are the person's
own left, which is on the *right-hand side of the image* for a frontal face.

Appearance is tied to the layout in ways a model can learn: both eyes share one iris colour, both brows
take the (darkened) hair colour, both lips share one lip colour, and skin, nose, ears and neck share one
skin tone under one lighting direction.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import DATASETS
from .worlds import ProceduralWorld

CLASS_NAMES = ["background", "skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
               "mouth", "u_lip", "l_lip", "hair", "neck", "cloth"]
(BG, SKIN, NOSE, L_EYE, R_EYE, L_BROW, R_BROW, L_EAR, R_EAR,
 MOUTH, U_LIP, L_LIP, HAIR, NECK, CLOTH) = range(len(CLASS_NAMES))
PALETTE = [(0, 0, 0), (204, 0, 0), (76, 153, 0), (51, 51, 255), (204, 0, 204), (0, 255, 255),
           (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153),
           (0, 0, 204), (255, 153, 51), (0, 204, 0)]

# Appearance-only ids: details painted inside a class region that never appear in the label map.
IRIS, PUPIL, LASH, GLINT, NOSTRIL, TEETH, NOSE_SHADE = range(len(CLASS_NAMES), len(CLASS_NAMES) + 7)
_NUM_LOOKS = NOSE_SHADE + 1
# Which class a detail must lie in (eye details in either eye); drawn details outside it are erased,
# which is how the iris gets clipped by the eyelids without any per-shape masking.
_HOST = np.full(_NUM_LOOKS, -1, np.int16)
_HOST[[IRIS, PUPIL, LASH, GLINT]] = L_EYE
_HOST[[NOSTRIL, NOSE_SHADE]], _HOST[TEETH] = NOSE, MOUTH
_GROUP = np.arange(len(CLASS_NAMES), dtype=np.int16)
_GROUP[R_EYE] = L_EYE
_SKINLIKE = np.isin(np.arange(len(CLASS_NAMES)), [SKIN, NOSE, L_EAR, R_EAR, NECK])

# Black, dark brown, brown, auburn, blonde, grey; common ones more often.
_HAIR_COLOURS = [(22, 18, 16), (58, 38, 26), (100, 66, 42), (135, 62, 32), (198, 160, 100), (160, 156, 150)]
_HAIR_P = [0.24, 0.26, 0.2, 0.1, 0.13, 0.07]
_IRIS_COLOURS = [(65, 105, 165), (75, 120, 80), (92, 58, 34), (128, 98, 52), (118, 128, 140), (45, 30, 22)]
_LIPSTICKS = [(170, 25, 45), (196, 70, 100), (118, 34, 52)]


class _Pose:
    """Rigid transform from a part's local frame (pixels, y down) to the canvas."""

    def __init__(self, cx: float, cy: float, angle: float) -> None:
        c, s = math.cos(angle), math.sin(angle)
        self.c, self.cos, self.sin = np.array([cx, cy]), c, s
        self.m = np.array([[c, s], [-s, c]])  # row vectors: p @ m rotates by +angle (clockwise on screen)

    def __call__(self, pts) -> np.ndarray:
        return np.asarray(pts, dtype=np.float64) @ self.m + self.c


class _Canvas:
    """A label map and an appearance map drawn together, so they can never disagree."""

    def __init__(self, w: int, h: int) -> None:
        self.label, self.look = Image.new("L", (w, h), BG), Image.new("L", (w, h), BG)
        self._dl, self._da = ImageDraw.Draw(self.label), ImageDraw.Draw(self.look)

    def poly(self, pts: np.ndarray, cls: int | None, look: int | None = None) -> None:
        xy = pts.ravel().tolist()
        if cls is not None:
            self._dl.polygon(xy, fill=cls)
        self._da.polygon(xy, fill=cls if look is None else look)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24, t0: float = 0.0,
             t1: float = 2 * math.pi, p: float = 2.0) -> np.ndarray:
    """Points of an (super)ellipse arc; p > 2 gives the boxier outline used for shoulders."""
    t = np.linspace(t0, t1, n)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / p
    return np.stack([cx + rx * np.sign(c) * np.abs(c) ** e, cy + ry * np.sign(s) * np.abs(s) ** e], 1)


def _band(xs: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Polygon between two curves sampled at the same xs (top left->right, bottom right->left)."""
    return np.concatenate([np.stack([xs, top], 1), np.stack([xs, bottom], 1)[::-1]])


def _layout(rng: np.random.Generator, w: int, h: int) -> tuple[_Canvas, dict]:
    """Draw one face back-to-front on a (w, h) canvas; returns the canvas and the head geometry."""
    U = rng.uniform
    unit = min(w, h)
    a = 0.2 * unit * U(0.85, 1.12)  # face half-width
    b = a * U(1.25, 1.42)  # face half-height
    cx, cy = w / 2 + unit * U(-0.07, 0.07), h * 0.46 + unit * U(-0.05, 0.05)
    tilt = float(np.clip(rng.normal(0, 0.1), -0.28, 0.28))
    yaw = U(-0.2, 0.2)  # shifts features sideways, nose most (it sticks out furthest)
    head = _Pose(cx, cy, tilt)
    body = _Pose(cx + unit * U(-0.03, 0.03), cy + b * U(1.3, 1.5), tilt * 0.25 + rng.normal(0, 0.03))
    style = int(rng.choice(3, p=[0.35, 0.25, 0.4]))  # 0 short, 1 bob, 2 long
    cv = _Canvas(w, h)

    # Cloth: boxy shoulders running off the bottom of the picture.
    sw, sry = a * U(1.9, 2.6), b * U(0.5, 0.9)
    top = _ellipse(0, sry, sw, sry, 24, math.pi, 2 * math.pi, p=3.0)
    cv.poly(body(np.concatenate([top, [(sw, 3 * unit), (-sw, 3 * unit)]])), CLOTH)

    # Long hair hangs behind the neck and over the shoulders.
    if style:
        hrx, hry, hcy = a * U(1.15, 1.35), b * U(1.08, 1.16), -0.06 * b
        length = b * (U(0.75, 1.1) if style == 1 else U(1.7, 2.4))
        flare = U(0.9, 1.05) if style == 1 else U(1.0, 1.3)
        xs = np.linspace(hrx * flare, -hrx * flare, 9)
        ends = np.stack([xs, length + b * U(-0.08, 0.08, 9)], 1)
        cv.poly(head(np.concatenate([_ellipse(0, hcy, hrx, hry, 24, math.pi, 2 * math.pi), ends])), HAIR)

    # Neck: top follows the head, bottom the body; its lower edge is the cloth's V or round neckline.
    nw, depth = a * U(0.48, 0.6), b * U(0.1, 0.55)
    if rng.random() < 0.5:
        neckline = np.array([(nw * 1.5, 0.0), (0.0, depth), (-nw * 1.5, 0.0)])
    else:
        neckline = _ellipse(0, 0, nw * 1.5, depth, 12, 0, math.pi)
    neck = [head([(-nw, 0.5 * b), (nw, 0.5 * b)]), body([(nw * 1.05, -0.05 * b)]), body(neckline),
            body([(-nw * 1.05, -0.05 * b)])]
    cv.poly(np.concatenate(neck), NECK)

    # Ears: the one the face turns away from slides behind the head.
    erx, ery, ev = a * U(0.14, 0.19), b * U(0.18, 0.24), b * U(-0.02, 0.08)
    for s, cls in ((1, L_EAR), (-1, R_EAR)):
        vis = float(np.clip(1 - s * yaw * 2.5, 0.35, 1.4))
        cv.poly(head(_ellipse(s * a * (0.9 + 0.06 * vis), ev, erx * vis, ery, 16)), cls)

    # Face: an ellipse whose lower half narrows into a jaw.
    t = np.linspace(0, 2 * math.pi, 48)
    fx, fy = a * np.cos(t), b * np.sin(t)
    fx = np.where(fy > 0, fx * (1 - U(0.12, 0.28) * np.sin(t) ** 2), fx)
    cv.poly(head(np.stack([fx, fy], 1)), SKIN)

    def feat(pts, depth_: float) -> np.ndarray:  # features slide with yaw, more the further they stick out
        return head(np.asarray(pts, dtype=np.float64) + [yaw * a * depth_, 0.0])

    # Nose: narrow bridge widening to a rounded tip with two dark nostrils.
    nt, nwid, bt = b * U(0.28, 0.38), a * U(0.14, 0.2), a * U(0.04, 0.07)
    nose = [(-bt, -0.08 * b), (bt, -0.08 * b), (nwid * 0.8, nt - 0.12 * b), (nwid, nt),
            (nwid * 0.7, nt + 0.08 * b), (0, nt + 0.1 * b), (-nwid * 0.7, nt + 0.08 * b), (-nwid, nt),
            (-nwid * 0.8, nt - 0.12 * b)]
    cv.poly(feat(nose, 1.0), NOSE)
    # The half of the nose turned away from the light is shaded (the light is chosen here for that).
    phi = U(0, 2 * math.pi)
    half = np.array([p for p in nose if p[0] >= 0] + [(0, -0.08 * b)]) * [-1 if math.cos(phi) > 0 else 1, 1]
    cv.poly(feat(half, 1.0), None, NOSE_SHADE)
    for s in (1, -1):
        nostril = _ellipse(s * nwid * 0.45, nt + 0.045 * b, nwid * 0.24, nwid * 0.12, 10)
        cv.poly(feat(nostril, 1.0), None, NOSTRIL)

    # Eyes: almond shapes with a shared iris colour and gaze; iris/pupil are clipped to the eye later.
    sep, eyv, ew = a * U(0.36, 0.44), b * U(-0.12, 0.0), a * U(0.16, 0.21)
    up, lo, slant = ew * U(0.45, 0.65), ew * U(0.3, 0.45), ew * U(0.0, 0.12)
    gaze = np.array([U(-0.3, 0.3) * ew, U(-0.15, 0.1) * up])
    k = np.linspace(0, 1, 12)
    arch = np.sin(math.pi * k)
    ir = ew * U(0.38, 0.46)
    lash_w = max(1.0, ew * 0.15)
    brow_top = math.inf
    bw, bgap, barch, bth = ew * U(1.1, 1.35), b * U(0.1, 0.17), b * U(0.02, 0.07), b * U(0.05, 0.085)
    for s, eye, brow in ((1, L_EYE, L_BROW), (-1, R_EYE, R_BROW)):
        ex = s * sep
        xs = ex + s * (2 * k - 1) * ew  # inner corner first
        upper, lower = eyv - up * arch - slant * k, eyv + lo * arch - slant * k
        cv.poly(feat(_band(xs, upper, lower), 0.6), eye)
        c = np.array([ex, eyv - slant / 2]) + gaze
        cv.poly(feat(_ellipse(c[0], c[1], ir, ir, 16), 0.6), None, IRIS)
        cv.poly(feat(_ellipse(c[0], c[1], ir * 0.45, ir * 0.45, 12), 0.6), None, PUPIL)
        cv.poly(feat(_ellipse(c[0] + ir * 0.3, c[1] - ir * 0.35, ir * 0.18, ir * 0.18, 8), 0.6), None, GLINT)
        # Lash line as a band, not ImageDraw.line: wide PIL lines depend on stroke direction, which made
        # the mirrored eyes differ.
        cv.poly(feat(_band(xs, upper - 1, upper + lash_w), 0.6), None, LASH)
        # Brow: an arched stroke above the eye, thicker at the inner end.
        bxs = ex + s * (2 * k - 1) * bw + s * 0.1 * ew
        mid = eyv - up - bgap - barch * np.sin(math.pi * k ** 0.8)
        th = bth * (1 - 0.5 * k)
        cv.poly(feat(_band(bxs, mid - th / 2, mid + th / 2), 0.55), brow)
        brow_top = min(brow_top, float((mid - th / 2).min()))

    # Mouth: upper lip with a cupid's bow, lower lip, and the (often thin) opening between them.
    mv, mw, smile = b * U(0.58, 0.68), a * U(0.32, 0.42), b * U(-0.02, 0.06)
    gap = b * U(0.03, 0.13) if rng.random() < 0.35 else b * 0.012
    ut, lt = b * U(0.05, 0.09), b * U(0.07, 0.12)
    x = np.linspace(-1, 1, 15)
    env = np.sqrt(1 - x ** 2)
    line = mv - smile * x ** 2
    u_bottom, l_top = line - gap / 2 * env ** 2, line + gap / 2 * env ** 2
    u_top = u_bottom - ut * env * (1 - 0.35 * np.exp(-((x / 0.15) ** 2)))
    xs = x * mw
    cv.poly(feat(_band(xs, u_bottom, l_top), 0.7), MOUTH)
    if gap > 0.05 * b:
        cv.poly(feat(_band(xs, u_bottom - 1, u_bottom + gap * 0.35 * env), 0.7), None, TEETH)
    cv.poly(feat(_band(xs, u_top, u_bottom), 0.7), U_LIP)
    cv.poly(feat(_band(xs, l_top, l_top + lt * env ** 0.8), 0.7), L_LIP)

    # Front hair last: it covers the forehead and, with bangs, may hide the brows.
    crx, cry, ccy = a * U(1.05, 1.14), b * U(1.04, 1.1), -b * U(0.04, 0.1)
    side = b * (U(-0.25, -0.1) if style == 0 else U(-0.15, 0.3))
    ts = math.asin(float(np.clip((side - ccy) / cry, -1, 1)))
    outer = _ellipse(0, ccy, crx, cry, 28, math.pi - ts, 2 * math.pi + ts)
    temple = a * U(0.86, 0.95)
    us = np.linspace(temple, -temple, 13)
    r = np.abs(us) / temple
    fringe = int(rng.choice(3, p=[0.45, 0.3, 0.25]))  # 0 plain hairline, 1 bangs, 2 side-swept
    if fringe == 0:
        hl = np.full_like(us, -b * U(0.5, 0.68))
    elif fringe == 1:
        hl = brow_top - b * U(-0.02, 0.08) + b * 0.035 * (-1) ** np.arange(13)
    else:
        lowside = brow_top - b * U(0.0, 0.08)
        hl = np.interp(us * rng.choice([-1, 1]), [-temple, temple], [lowside, -0.62 * b])
    inner = np.stack([us, hl + (side - hl) * r ** 4], 1)
    cv.poly(head(np.concatenate([outer, inner])), HAIR)
    return cv, {"cx": cx, "cy": cy, "a": a, "b": b, "pose": head, "tilt": tilt, "phi": phi}


def _up(field: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bilinear upsampling of a smooth low-resolution float field (cheaper than computing it full size)."""
    small = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32))
    return np.asarray(small.resize((w, h), Image.BILINEAR))


def _random_colour(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))) * 255


def _paint(rng: np.random.Generator, label: np.ndarray, look: np.ndarray, geo: dict) -> np.ndarray:
    """Colour a supersampled appearance map: per-face colours, smooth lighting and light textures."""
    U = rng.uniform
    h, w = label.shape
    skin = np.array([238, 200, 176]) + (np.array([92, 58, 42]) - [238, 200, 176]) * rng.beta(1.6, 2.6)
    skin = skin + rng.normal(0, 6, 3)
    hair = np.array(_HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_P)]) * U(0.85, 1.15, 3)
    iris = np.array(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]) * U(0.85, 1.15, 3)
    lip = skin * 0.5 + np.array([178, 72, 82]) * 0.5 + rng.normal(0, 8, 3)
    if rng.random() < 0.25:
        lip = np.array(_LIPSTICKS[rng.integers(len(_LIPSTICKS))]) * U(0.9, 1.1, 3)
    cloth = _random_colour(rng, (0.1, 0.9), (0.2, 0.95))

    lut = np.zeros((_NUM_LOOKS, 3))
    lut[SKIN], lut[NOSE], lut[[L_EAR, R_EAR]], lut[NECK] = skin, skin * 0.95, skin * 0.93, skin * 0.85
    lut[[L_EYE, R_EYE]] = np.array([236, 232, 226]) * U(0.85, 1.0)
    lut[[L_BROW, R_BROW]] = hair * 0.75
    lut[MOUTH], lut[U_LIP], lut[L_LIP] = (92, 28, 34), lip * 0.88, lip
    lut[HAIR], lut[CLOTH] = hair, cloth
    lut[IRIS], lut[PUPIL], lut[LASH], lut[GLINT] = iris, (14, 11, 11), hair * 0.3 + 8, (250, 250, 250)
    lut[NOSTRIL], lut[TEETH], lut[NOSE_SHADE] = skin * 0.45, (226, 220, 206), skin * 0.84
    img = lut.astype(np.float32)[look]

    # Smooth fields on a quarter-size grid: one light direction for the whole person, an ellipsoidal
    # falloff across the face and a shadow under the chin for skin.
    hl, wl = max(8, h // 4), max(8, w // 4)
    ys, xs = (np.arange(hl) + 0.5) * (h / hl), (np.arange(wl) + 0.5) * (w / wl)
    dx, dy = xs[None, :] - geo["cx"], ys[:, None] - geo["cy"]
    a, b, pose = geo["a"], geo["b"], geo["pose"]
    phi = geo["phi"]
    light = np.clip(1 + U(0.08, 0.2) * (dx * math.cos(phi) + dy * math.sin(phi)) / (1.5 * a), 0.6, 1.35)
    u, v = dx * pose.cos + dy * pose.sin, -dx * pose.sin + dy * pose.cos
    r2 = np.clip((u / a) ** 2 + (v / b) ** 2, 0, 1)
    skin_field = light * (1 - 0.18 * r2 ** 2) * (1 - 0.3 * np.exp(-(((v - 1.05 * b) / (0.3 * b)) ** 2)))
    shade = np.where(_SKINLIKE[label], _up(skin_field, w, h), _up(light, w, h))

    # Textures: strands along the head's vertical axis for hair, stripes or blotches for cloth, fine grain
    # elsewhere; amplitudes are per class so the texture tells the classes apart, too.
    fine = rng.standard_normal((h, w), dtype=np.float32)
    strands = _up(rng.standard_normal((max(4, h // 40), max(4, w // 2))), w, h) * 1.5
    strands = np.asarray(Image.fromarray(strands).rotate(-math.degrees(geo["tilt"]), Image.BILINEAR))
    if rng.random() < 0.5:
        period, ph = U(0.03, 0.08) * min(h, w), U(0, 2 * math.pi)
        horizontal = rng.random() < 0.7
        wave = np.tanh(3 * np.sin(2 * math.pi * np.arange(h if horizontal else w) / period + ph))
        wave = wave.astype(np.float32)
        cloth_tex = (wave[:, None] if horizontal else wave[None, :]) * 0.8 + fine * 0.15
    else:
        cloth_tex = _up(rng.standard_normal((max(4, h // 16), max(4, w // 16))), w, h) * 1.5 + fine * 0.2
    tex = np.where(label == HAIR, strands, np.where(label == CLOTH, cloth_tex, fine))
    amp = np.full(len(CLASS_NAMES), 0.03, np.float32)
    amp[[HAIR, CLOTH, L_BROW, R_BROW]] = 0.14, U(0.08, 0.2), 0.1, 0.1
    img *= (shade * (1 + amp[label] * tex))[..., None]

    # Background: a two-colour gradient plus a few low-frequency colour waves.
    c1, c2 = _random_colour(rng, (0.05, 0.6), (0.25, 0.95)), _random_colour(rng, (0.05, 0.6), (0.25, 0.95))
    psi = U(0, 2 * math.pi)
    g = (xs[None, :] / w - 0.5) * math.cos(psi) + (ys[:, None] / h - 0.5) * math.sin(psi) + 0.5
    bg = c1 + (c2 - c1) * np.clip(g, 0, 1)[..., None]
    for _ in range(3):
        f, ph = U(-2, 2, 2), U(0, 2 * math.pi)
        wave = np.cos(2 * math.pi * (f[0] * xs[None, :] / w + f[1] * ys[:, None] / h) + ph)
        bg = bg + wave[..., None] * rng.normal(0, 10, 3)
    bg = np.stack([_up(bg[..., i], w, h) for i in range(3)], -1) * (1 + 0.03 * fine[..., None])
    return np.where((label == BG)[..., None], bg, img)


def render_face(rng: np.random.Generator, size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Returns (image uint8 [H, W, 3], label uint8 [H, W]) for one random face."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    cv, geo = _layout(rng, 2 * w, 2 * h)  # 2x supersampling: anti-aliased image, hard label
    label, look = np.asarray(cv.label, dtype=np.int16), np.array(cv.look, dtype=np.int16)
    host = _HOST[look]
    stray = (host >= 0) & (host != _GROUP[label])
    look[stray] = label[stray]
    big = _paint(rng, label, look, geo)
    img = (big[0::2, 0::2] + big[1::2, 0::2] + big[0::2, 1::2] + big[1::2, 1::2]) * 0.25
    # Label: the majority of each 2x2 block (ties go to the top-left pixel), so it stays a hard map.
    p, q, r, s = label[0::2, 0::2], label[0::2, 1::2], label[1::2, 0::2], label[1::2, 1::2]
    lab = np.where((p == q) | (p == r) | (p == s), p,
                   np.where((q == r) | (q == s), q, np.where(r == s, r, p)))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), lab.astype(np.uint8)



@DATASETS.register("synthetic-faces", "procedural CelebAMask-HQ-like faces (15 face-parsing classes), "
                                      "generated on the fly; no download")
class SyntheticFaces(ProceduralWorld):
    """Random portraits with their face-parsing label maps; sample ``i`` depends only on (seed, split, i)."""

    NAME, CLASS_NAMES, PALETTE = "synthetic-faces", CLASS_NAMES, PALETTE
    MIN_RESOLUTION, RESOLUTION_STEP = 32, 32

    def __init__(self, split: str = "train", *, resolution: int = 64, num_samples: int = 2000,
                 seed: int = 0) -> None:
        self._setup(split, resolution, num_samples, seed)

    def sample_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 image ``[H, W, 3]`` and label ``[H, W]`` of sample ``i``."""
        return render_face(self._rng(i), self.resolution)



def write_synthetic_faces(out_dir: str | Path, num: int, size: int = 64, seed: int = 0,
                          split: str = "train", progress: bool = True) -> Path:
    """Write images/<name>.png (RGB) and labels/<name>.png (8-bit single-channel class ids) plus
    dataset.yaml (name, num_classes, class_names, palette as lists, dontcare: null) into out_dir.

    The files hold exactly ``SyntheticFaces(split, resolution=size, num_samples=num, seed=seed)``; returns
    out_dir. ``progress``: show progress on stderr (``utils.progress``)."""
    from .worlds import write_world

    return write_world(SyntheticFaces(split, resolution=size, num_samples=num, seed=seed), out_dir, progress)
