"""synthetic-landscapes: procedural outdoor scenes (layout -> painted landscape), generated on the fly.

Like ``synthetic-faces``, each sample comes from its own seed ``(seed, split, index)``: no files, identical on
every machine, run and worker, and cheap enough (vectorised numpy, about 9 ms of CPU at 128x128, each class
painted on its band of rows only) to train a GAN on CPU.

A scene is built in two passes. The *layout* pass decides the label map: a horizon, layered mountain ridges
with snow caps above a snow line, rolling hills, a tree line, the ground plane (grass, or snow in winter)
seen in perspective, water (sea, lake or river), beaches, a road narrowing towards its vanishing point,
flower fields, and objects standing on the ground (trees, bushes, houses, boulders) whose size falls with
their distance. The *paint* pass colours it under one per-scene light: a time of day (day, golden hour,
sunset, overcast, dusk) and a season (spring, summer, autumn, winter) set the sky gradient, the sun's
colour and side, the shadow tint (the sky's colour, also seen on snow and water) and the haze that pulls
distant things towards the horizon colour. Water mirrors what stands above it, darker and rippled. Textures
are sampled in ground-plane coordinates where they lie on the ground, so they shrink towards the horizon.

The label map is exactly what was drawn: no interpolation between classes; isolated single pixels are
merged into their surroundings. Sizes are in units of the picture height and no random draw depends on the
pixel count (objects have generators of their own, the ground is a function of ground-plane coordinates), so
one seed gives the same scene at every resolution, up to the pixels along class boundaries.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import DATASETS
from .worlds import ProceduralWorld

CLASS_NAMES = ["sky", "cloud", "mountain", "snow", "rock", "hill", "grass", "tree", "bush", "water", "sand",
               "road", "house", "flowers"]
(SKY, CLOUD, MOUNTAIN, SNOW, ROCK, HILL, GRASS, TREE, BUSH, WATER, SAND, ROAD, HOUSE,
 FLOWERS) = range(len(CLASS_NAMES))
# Label colours a painter recognises: sky blue, white snow, green grass, dark-green trees, dark-blue water...
PALETTE = [(110, 180, 240), (215, 220, 235), (130, 105, 150), (255, 255, 255), (128, 128, 128),
           (175, 205, 90), (70, 170, 60), (20, 90, 35), (0, 140, 110), (25, 60, 165), (235, 215, 160),
           (150, 110, 80), (200, 50, 40), (240, 110, 200)]

TIMES_OF_DAY = ["day", "golden", "sunset", "overcast", "dusk"]
SEASONS = ["spring", "summer", "autumn", "winter"]
WATER_KINDS = ["none", "sea", "lake", "river"]

_FIRST_LOOK = 32  # look ids below this are the plain classes; objects allocate their own colours from here
_GROUND = np.isin(np.arange(256), [GRASS, SNOW, SAND, ROAD, FLOWERS])

# (zenith, horizon, light colour, shadow tint): the tint is what the sky adds to surfaces the sun misses.
_LIGHTS = {
    "day": ((55, 115, 215), (180, 212, 240), (1.0, 0.97, 0.9), (0.5, 0.58, 0.75)),
    "golden": ((70, 110, 185), (250, 200, 140), (1.12, 0.88, 0.62), (0.45, 0.47, 0.66)),
    "sunset": ((45, 50, 115), (250, 125, 70), (1.0, 0.62, 0.42), (0.36, 0.32, 0.52)),
    "overcast": ((140, 148, 160), (198, 202, 208), (0.82, 0.84, 0.87), (0.66, 0.68, 0.72)),
    "dusk": ((22, 32, 78), (125, 110, 150), (0.5, 0.48, 0.62), (0.27, 0.28, 0.42)),
}
_TOD_P = [0.5, 0.15, 0.12, 0.15, 0.08]
_SEASON_P = [0.22, 0.4, 0.23, 0.15]
# Albedos (0-255) by season: grass, hill, deciduous foliage.
_GRASS = {"spring": (105, 165, 55), "summer": (80, 135, 45), "autumn": (150, 140, 70),
          "winter": (110, 115, 80)}
_FOLIAGE = {"spring": [(80, 140, 45), (110, 160, 60)], "summer": [(40, 90, 35), (55, 100, 40), (65, 110, 35)],
            "autumn": [(190, 95, 30), (205, 160, 45), (165, 55, 30), (120, 110, 40)],
            "winter": [(45, 65, 45)]}
_FLOWER_COLOURS = [(215, 35, 45), (235, 205, 45), (150, 95, 200), (245, 240, 235), (235, 120, 170)]
_WALLS = [(235, 228, 210), (215, 195, 160), (170, 95, 70), (150, 110, 80), (225, 225, 225)]
_ROOFS = [(160, 55, 40), (75, 75, 85), (115, 70, 45), (60, 90, 110)]


# -- textures ------------------------------------------------------------------------------------------------

_T = 256  # tile side; tiles wrap around, so any coordinate can be looked up


@functools.cache
def _tiles() -> dict[str, np.ndarray]:
    """Fixed, tileable noise (zero mean, unit variance): the same on every machine and in every worker."""
    rng = np.random.default_rng(0x5EED)
    f = np.fft.fftfreq(_T)
    r = np.hypot(f[:, None], f[None, :])
    r[0, 0] = 1.0
    out = {}
    for name, beta, low in (("blob", 3.2, 3.0 / _T), ("mid", 2.0, 1.0 / _T), ("fine", 0.6, 1.0 / _T)):
        spec = (rng.standard_normal((_T, _T)) + 1j * rng.standard_normal((_T, _T))) * r ** (-beta / 2)
        spec[r < low] = 0
        n = np.fft.ifft2(spec).real
        out[name] = ((n - n.mean()) / n.std()).astype(np.float32).ravel()
    return out


def _tex(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Nearest lookup of a tile at float coordinates (tile pixels)."""
    m = _T - 1
    return _tiles()[name][((v.astype(np.int32) & m) << 8) | (u.astype(np.int32) & m)]


def _tex2(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup: for smooth tiles magnified near the camera."""
    m, t = _T - 1, _tiles()[name]
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = (u - u0).astype(np.float32), (v - v0).astype(np.float32)
    iu, iv = u0.astype(np.int32) & m, v0.astype(np.int32) & m
    iu1, iv1 = (iu + 1) & m, ((iv + 1) & m) << 8
    iv = iv << 8
    a, b, c, d = t[iv | iu], t[iv | iu1], t[iv1 | iu], t[iv1 | iu1]
    return a + (b - a) * fu + (c - a + (a - b - c + d) * fu) * fv


def _fbm1d_fn(rng: np.random.Generator, octaves: int = 5,
              knots: int = 6) -> Callable[[np.ndarray], np.ndarray]:
    """1-D fractal noise over x in [0, 1] (about unit amplitude), as a function: the draws happen here, once,
    whatever the points it is later evaluated at."""
    grids, vals, amps = [], [], []
    amp = 1.0
    for _ in range(octaves):
        vals.append(rng.standard_normal(knots + 1))
        grids.append(np.linspace(0, 1, knots + 1))
        amps.append(amp)
        amp, knots = amp * 0.5, knots * 2

    def f(x: np.ndarray) -> np.ndarray:
        out = np.zeros(np.shape(x), np.float64)
        for g, v, a in zip(grids, vals, amps):
            out += a * np.interp(x, g, v)
        return out

    return f


def _fbm1d(rng: np.random.Generator, x: np.ndarray, octaves: int = 5, knots: int = 6) -> np.ndarray:
    """1-D fractal noise evaluated at x (see :func:`_fbm1d_fn`)."""
    return _fbm1d_fn(rng, octaves, knots)(x).astype(np.asarray(x).dtype, copy=False)


# -- layout --------------------------------------------------------------------------------------------------


class _Scene:
    """Everything the paint pass needs: the label map, per-pixel fields and the per-scene palette."""


def _choose(rng: np.random.Generator, items: list, p: list[float] | None = None):
    return items[int(rng.choice(len(items), p=p))]


def _scene_params(rng: np.random.Generator) -> dict:
    """The draws that decide what is in the scene (all before any size-dependent work)."""
    U = rng.uniform
    tod, season = _choose(rng, TIMES_OF_DAY, _TOD_P), _choose(rng, SEASONS, _SEASON_P)
    water = _choose(rng, WATER_KINDS, [0.38, 0.2, 0.22, 0.2])
    p = {"tod": tod, "season": season, "water": water, "horizon": U(0.3, 0.62)}
    p["mountains"] = int(rng.choice(4, p=[0.35, 0.25, 0.25, 0.15] if water != "sea"
                                    else [0.6, 0.25, 0.15, 0]))
    p["hills"] = int(rng.choice(3, p=[0.45, 0.35, 0.2] if water != "sea" else [0.75, 0.25, 0.0]))
    p["treeline"] = water != "sea" and rng.random() < 0.35
    p["road"] = rng.random() < (0.4 if water in ("none", "lake") else 0.15)
    p["houses"] = int(rng.choice(5, p=[0.6, 0.15, 0.1, 0.1, 0.05]))
    p["trees"] = int(rng.choice([0, 3, 8, 16, 30], p=[0.12, 0.25, 0.28, 0.2, 0.15]))
    p["bushes"] = int(rng.choice([0, 3, 8, 14], p=[0.3, 0.3, 0.25, 0.15]))
    p["rocks"] = int(rng.choice([0, 1, 3, 6], p=[0.45, 0.2, 0.2, 0.15]))
    p["flowers"] = season != "winter" and rng.random() < (0.45 if season == "spring" else 0.2)
    p["sand"] = rng.random() < {"sea": 0.85, "lake": 0.35, "river": 0.3, "none": 0.0}[water]
    p["clouds"] = 0.0 if rng.random() < 0.2 and tod != "overcast" else U(0.3, 0.9)
    p["sun_side"] = float(rng.choice([-1.0, 1.0]))
    return p


def _layout(rng: np.random.Generator, h: int, w: int) -> _Scene:
    U = rng.uniform
    s = _Scene()
    s.h, s.w, s.p = h, w, _scene_params(rng)
    p = s.p
    H = float(h)
    yh = p["horizon"] * H  # horizon row (may be fractional)
    s.yh = yh
    aspect = w / H
    xs = (np.arange(w, dtype=np.float32) + 0.5)
    ys = (np.arange(h, dtype=np.float32) + 0.5)
    xn = (xs - w / 2) / H  # screen x in picture heights, 0 at the centre
    x01 = xs / w
    s.xs, s.ys, s.xn = xs, ys, xn
    lab = np.full((h, w), SKY, np.uint8)
    Y = ys[:, None]

    # Sky and clouds: puffs on a plane above the camera, so they flatten and shrink towards the horizon.
    up = np.maximum(yh - ys, 0.5) / H  # height above the horizon
    zc = 1.0 / up
    scale = U(14, 24)
    ox, oy = U(0, _T, 2)
    # Across, the plane's coordinate grows as 1/height; along it as 1/height^2: round puffs high up, flat
    # streaks near the horizon.
    cu = ox + (xn[None, :] * zc[:, None]) * scale
    cv = np.broadcast_to((oy + zc * scale * 0.45)[:, None], (h, w))
    dens = _tex2("blob", cu, cv) - 0.9 * np.exp(-up / 0.07)[:, None]  # thinner towards the horizon
    cover = p["clouds"]
    thr = np.float32(1.5 - 1.8 * cover) if cover > 0 else np.float32(99)
    s.cloud_density = dens - thr
    s.cloud_uv = (cu, cv)
    lab[(s.cloud_density > 0) & (Y < yh)] = CLOUD

    # Mountains: back-to-front ridges of peaks; each far layer is hazier; snow above a jagged snow line.
    s.ridges = []
    n_m = p["mountains"]
    max_up = min(0.42, p["horizon"] * 0.85)
    s.mountain_layer = np.full((h, w), -1, np.int8)
    for k in range(n_m):
        tall = max_up * U(0.55, 1.0) * (1 - 0.28 * k)
        npk = int(rng.integers(1, 4))
        px, ph, sl, sr = U(-0.15, 1.15, 3), tall * U(0.55, 1.0, 3), U(0.9, 2.6, 3), U(0.9, 2.6, 3)
        prof = np.full(w, -1.0, np.float32)
        xa = x01 * aspect
        for i in range(npk):
            d = xa - px[i] * aspect
            prof = np.maximum(prof, ph[i] - np.where(d < 0, -d * sl[i], d * sr[i]) * 0.5)
        prof = np.maximum(prof, tall * U(0.1, 0.3))
        prof += tall * 0.09 * _fbm1d(rng, x01, 6, 5).astype(np.float32)
        top = yh - prof * H
        snow_frac = U(0.35, 0.6) if p["season"] == "winter" else U(0.55, 0.85)
        snowy = rng.random() < (0.9 if p["season"] == "winter" else 0.65) and tall > 0.12
        snow_line = yh - (prof.max() * snow_frac) * H + tall * 0.06 * H * _fbm1d(rng, x01, 4, 8)
        body = (Y >= top[None, :]) & (Y < yh)
        lab[body] = MOUNTAIN
        s.mountain_layer[body] = k
        go = U(0, _T, 2)
        gully = _tex2("mid", go[0] + xs[None, :] * (40 / H), go[1] + Y * (6 / H))
        if snowy:
            lab[body & (Y < snow_line[None, :] + gully * (tall * 0.12 * H))] = SNOW
        s.ridges.append({"top": top, "prof": prof, "tall": tall, "gully_off": go, "k": k})
    s.n_mountains = n_m

    # Hills: smooth, low, nearer than the mountains.
    s.hill_tops = []
    s.hill_layer = np.full((h, w), -1, np.int8)
    for k in range(p["hills"]):
        tall = U(0.03, 0.11) * (1 - 0.3 * k)
        prof = tall * (0.55 + 0.45 * _fbm1d(rng, x01, 3, 3).astype(np.float32))
        top = yh - np.maximum(prof, 0.004) * H
        body = (Y >= top[None, :]) & (Y < yh)
        lab[body] = HILL
        s.hill_layer[body] = k
        s.hill_tops.append(top)

    # A tree line along the horizon: a band of bumpy crowns.
    if p["treeline"]:
        tall = U(0.012, 0.04)
        bumps = np.abs(np.sin(xs / H * U(60, 110) + U(0, 6.3))) ** 0.5
        prof = tall * (0.6 + 0.25 * bumps + 0.25 * _fbm1d(rng, x01, 3, 8))
        lab[(Y >= (yh - prof * H)[None, :]) & (Y < yh)] = TREE

    # Ground plane: row y at depth Z = 1 / (y/H - horizon), in camera heights; X across.
    below = ys > yh
    d = np.maximum(ys - yh, 0.5) / H
    Z = (1.0 / d).astype(np.float32)
    X = xn[None, :] * Z[:, None]
    s.Z, s.X, s.zc = Z, X, zc
    ground = np.broadcast_to(below[:, None], (h, w))
    s.zmin = 1.0 / (1.0 - p["horizon"])  # depth at the bottom edge of the picture
    s.ground = _GroundPlan(rng, p, s.zmin)
    Zf = np.broadcast_to(Z[:, None], (h, w))
    lab[ground] = s.ground(X[ground], Zf[ground])
    s.road = None
    if p["road"]:
        s.road = {"rx": X - s.ground.road_centre(Z)[:, None], "width": s.ground.road_width,
                  "paved": s.ground.paved}
    s.flower_colour, s.flower_off = s.ground.flower_colour, s.ground.flower_off
    s.water_kind = p["water"]

    s.label = lab
    _objects(rng, s)
    return s


class _GroundPlan:
    """What covers the ground at ground-plane coordinates (X across, Z in depth, in camera heights).

    A function of the coordinates rather than of pixels: the layout evaluates it on every ground pixel and
    the object pass at each object's foot, so an object stands on the same class at every resolution."""

    def __init__(self, rng: np.random.Generator, p: dict, zmin: float) -> None:
        U = rng.uniform
        self.p, self.zmin = p, zmin
        self.base = SNOW if p["season"] == "winter" else GRASS
        self.shore = self.far = self.river = None
        if p["water"] in ("sea", "lake"):
            # The shoreline wiggles on a scale of a few camera heights, so it is no straight line nearby.
            self.zs, self.shore = zmin * U(1.3, 4.5), _fbm1d_fn(rng, 5, 6)
            if p["water"] == "lake":
                self.zf, self.far = U(3, 9), _fbm1d_fn(rng, 3, 4)
            self.beach = U(0.12, 0.5)
        elif p["water"] == "river":
            slope, amp, lam, ph, x0 = U(-0.25, 0.25), U(0.5, 3), U(6, 20), U(0, 6.3), U(-1.5, 1.5)
            self.river = (x0, slope, amp, lam, ph)
            self.river_width, self.bank = U(0.6, 1.6), U(1.25, 1.6)
        self.flower_off, self.flower_thr = U(0, _T, 2), U(0.2, 0.9)
        self.flower_colour = np.array(_choose(rng, _FLOWER_COLOURS), np.float32)
        self.road = None
        if p["road"]:
            self.road = (U(-1.2, 1.2), U(-0.3, 0.3), U(0, 2.5), U(8, 30), U(0, 6.3))
            self.road_width, self.paved = U(0.45, 0.9), rng.random() < 0.4
        self.ford = rng.random() < 0.5

    @staticmethod
    def _centre(params, Z: np.ndarray, settle: float) -> np.ndarray:
        x0, slope, amp, lam, ph = params
        return x0 + Z * slope + amp * np.sin(2 * np.pi * Z / lam + ph) * np.minimum(1, Z / settle)

    def road_centre(self, Z: np.ndarray) -> np.ndarray:
        return self._centre(self.road, Z, 6.0)

    def __call__(self, X: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """Class ids (uint8) at matching arrays of ground coordinates."""
        p = self.p
        lab = np.full(X.shape, self.base, np.uint8)
        water = np.zeros(X.shape, bool)
        if self.shore is not None:
            shore = self.zs * (1 + 0.35 * self.shore(np.clip(0.5 + X / 25, 0, 1)))
            water = Z > shore
            if self.far is not None:
                far = np.maximum(self.zs * self.zf * (1 + 0.25 * self.far(np.clip(0.5 + X / 200, 0, 1))),
                                 shore * 1.5)
                water &= Z <= far
            if p["sand"]:
                lab[~water & (Z > shore / (1 + self.beach)) & (Z <= shore * 1.5)] = SAND
        elif self.river is not None:
            off = np.abs(X - self._centre(self.river, Z, 8.0))
            water = off < self.river_width / 2
            if p["sand"]:
                lab[off < self.river_width / 2 * self.bank] = SAND
        if p["flowers"]:  # flower fields: blobs in ground coordinates, on grass near the camera
            field = _tex2("blob", self.flower_off[0] + X * 9, self.flower_off[1] + Z * 9)
            lab[(lab == GRASS) & (field > self.flower_thr) & (Z < self.zmin * 12)] = FLOWERS
        road = None
        if self.road is not None:  # constant width on the ground: it narrows towards its vanishing point
            road = np.abs(X - self.road_centre(Z)) < self.road_width / 2
            lab[road] = ROAD
        lab[water] = WATER
        if self.river is not None and road is not None and self.ford:
            lab[water & road] = ROAD
        return lab


# -- objects on the ground -----------------------------------------------------------------------------------


class _Looks:
    """Per-object colours: each object allocates look ids whose albedo (already hazed) lives in a table."""

    def __init__(self) -> None:
        self.table = np.zeros((256, 3), np.float32)
        self.cls = np.zeros(256, np.uint8)
        self.next = _FIRST_LOOK

    def add(self, colour, cls: int) -> int:
        if self.next > 255:
            return self.next - 1  # out of ids: reuse the last one (never reached with today's counts)
        i = self.next
        self.table[i], self.cls[i] = colour, cls
        self.next += 1
        return i


def _objects(rng: np.random.Generator, s: _Scene) -> None:
    """Trees, bushes, houses and boulders on the ground, drawn far to near into label, look and shadow
    maps."""
    U = rng.uniform
    p, h, w, H = s.p, s.h, s.w, float(s.h)
    light, tint = np.array(_LIGHTS[p["tod"]][2], np.float32), np.array(_LIGHTS[p["tod"]][3], np.float32)
    horizon_col = np.array(_LIGHTS[p["tod"]][1], np.float32) * U(0.94, 1.05, 3).astype(np.float32)
    horizon_col = np.clip(horizon_col, 0, 255)
    s.light, s.tint, s.horizon_col = light, tint, horizon_col
    s.haze_dist = U(25, 70) if p["tod"] != "overcast" else U(12, 30)
    looks = _Looks()
    sun = p["sun_side"]
    objs = []  # (Z, kind, X, size, seed of the object's own generator)
    yh_n = p["horizon"]
    zmin = s.zmin
    aspect = w / H

    def place(zlo: float, zhi: float, near_x: float | None = None, spread: float = 0.0):
        if near_x is None:
            z = float(np.exp(U(math.log(zlo), math.log(zhi))))
            xn = U(-0.55, 0.55) * aspect
            return z, xn * z
        z = float(np.clip(near_x[1] * np.exp(U(-0.25, 0.25)), zlo, zhi))
        return z, near_x[0] + U(-spread, spread)

    conifer_p = 0.95 if p["season"] == "winter" else (0.6 if s.n_mountains else 0.3)
    groves = [None] + [place(max(zmin, 4), 60) for _ in range(int(rng.integers(1, 4)))]
    for _ in range(p["trees"]):
        g = groves[int(rng.integers(len(groves)))]
        z, x = place(max(zmin * 1.3, 5), 90, g, 4.0)
        kind = "conifer" if rng.random() < conifer_p else "tree"
        objs.append((z, kind, x, U(2.0, 5.0), rng.integers(2**62)))
    for _ in range(p["bushes"]):
        z, x = place(max(zmin * 1.2, 3), 35)
        objs.append((z, "bush", x, U(0.2, 0.55), rng.integers(2**62)))
    for _ in range(p["rocks"]):
        z, x = place(zmin, 14)
        objs.append((z, "rock", x, U(0.25, 1.1), rng.integers(2**62)))
    road = s.road
    for _ in range(p["houses"]):
        z, x = place(9, 45)
        objs.append((z, "house", x, U(2.5, 4.0), rng.integers(2**62)))
    objs.sort(key=lambda o: -o[0])

    label = Image.fromarray(s.label)
    look = Image.fromarray(s.label.copy())
    shadow = Image.new("L", (w, h), 0)
    dl, da, ds = ImageDraw.Draw(label), ImageDraw.Draw(look), ImageDraw.Draw(shadow)

    def poly(pts, cls: int | None, lk: int) -> None:
        xy = [float(v) for pt in pts for v in pt]
        if cls is not None:
            dl.polygon(xy, fill=cls)
        da.polygon(xy, fill=lk)

    def ellipse(cx, cy, rx, ry, cls: int | None, lk: int) -> None:
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        if rx < 0.5 or ry < 0.5:
            return
        if cls is not None:
            dl.ellipse(box, fill=cls)
        da.ellipse(box, fill=lk)

    def hazed(col, z: float) -> np.ndarray:
        a = min(0.9, 1 - math.exp(-z / s.haze_dist))
        return (np.asarray(col, np.float32) * light * 0.9) * (1 - a) + horizon_col * a

    def shade_of(col, z: float) -> np.ndarray:
        a = min(0.9, 1 - math.exp(-z / s.haze_dist))
        return (np.asarray(col, np.float32) * tint * 0.75) * (1 - a) + horizon_col * a

    foliage = _FOLIAGE[p["season"]]
    px = H / 128  # size thresholds are in pixels of a 128-pixel-high picture: the same objects at every size
    for z, kind, xw, size, seed in objs:
        # Each object draws from its own generator (rng and U are rebound: the scene's are not used below), so
        # skipping one (off screen, too small, on water) leaves the others as they are.
        rng = np.random.default_rng(seed)
        U = rng.uniform
        bx, by = w / 2 + xw / z * H, (yh_n + 1 / z) * H
        if not (0 <= by < h) or not (-w * 0.2 <= bx < w * 1.2):
            continue
        base = s.ground(np.array([xw]), np.array([z]))[0]  # what the foot stands on, in ground coordinates
        if base not in (GRASS, SNOW, FLOWERS) and not (kind == "rock" and base == SAND):
            continue
        sc = H / z  # pixels per unit at this depth
        if kind in ("tree", "conifer"):
            th = size * sc
            if th < 2.5 * px:
                continue
            ds.ellipse([bx - th * 0.25 + sun * -th * 0.25, by - th * 0.04, bx + th * 0.25 + sun * -th * 0.25,
                        by + th * 0.04], fill=1)
            trunk = looks.add(shade_of((70, 50, 35), z), TREE)
            tw = max(0.6 * px, th * 0.035)
            if kind == "conifer":
                col = np.array((35, 75, 48), np.float32) * U(0.75, 1.1) + (0, U(-8, 8), U(-6, 6))
                dark, lit = looks.add(shade_of(col, z), TREE), looks.add(hazed(col, z), TREE)
                snowy = looks.add(hazed(col * 0.4 + 150, z), TREE) if p["season"] == "winter" else lit
                poly([(bx - tw, by), (bx + tw, by), (bx + tw, by - th * 0.2), (bx - tw, by - th * 0.2)], TREE,
                     trunk)
                tiers = int(rng.integers(3, 5))
                half = th * U(0.16, 0.24)
                for t in range(tiers):
                    f = t / tiers
                    yb = by - th * (0.12 + 0.8 * f)
                    yt = yb - th * (0.88 - 0.7 * f) * 0.55
                    hw_ = half * (1 - 0.7 * f)
                    yt = min(yt, by - th * (0.95 if t == tiers - 1 else 0.3 + 0.25 * t))
                    poly([(bx - hw_, yb), (bx + hw_, yb), (bx, yt)], TREE, dark)
                    poly([(bx, yb), (bx + sun * hw_, yb), (bx, yt)], None, snowy if t % 2 else lit)
            else:
                col = np.array(foliage[int(rng.integers(len(foliage)))], np.float32) * U(0.8, 1.1)
                dark, lit = looks.add(shade_of(col, z), TREE), looks.add(hazed(col, z), TREE)
                poly([(bx - tw, by), (bx + tw, by), (bx + tw * 0.6, by - th * 0.55),
                      (bx - tw * 0.6, by - th * 0.55)], TREE, trunk)
                cx, cy, rx, ry = bx, by - th * U(0.58, 0.66), th * U(0.24, 0.34), th * U(0.28, 0.36)
                n = int(np.clip(th / (5 * px), 1, 7))
                ang = U(0, 2 * np.pi, n)
                rad = U(0.2, 0.55, n)
                r = min(rx, ry) * U(0.45, 0.62, n)
                for i in range(n):
                    qx, qy = cx + np.cos(ang[i]) * rad[i] * rx, cy + np.sin(ang[i]) * rad[i] * ry
                    ellipse(qx, qy, r[i], r[i], TREE, dark)
                for i in range(n):
                    qx, qy = cx + np.cos(ang[i]) * rad[i] * rx, cy + np.sin(ang[i]) * rad[i] * ry
                    ellipse(qx + sun * 0.22 * r[i], qy - 0.22 * r[i], r[i] * 0.68, r[i] * 0.68, None, lit)
                ellipse(cx, cy + ry * 0.1, rx * 0.75, ry * 0.7, TREE, dark)
                ellipse(cx + sun * 0.2 * rx, cy - ry * 0.15, rx * 0.5, ry * 0.45, None, lit)
        elif kind == "bush":
            bw, bh = size * sc, size * sc * U(0.5, 0.75)
            if bh < 1.5 * px:
                continue
            col = np.array(_GRASS[p["season"]], np.float32) * U(0.6, 0.85) + (U(-10, 10), U(0, 20), 0)
            dark, lit = looks.add(shade_of(col, z), BUSH), looks.add(hazed(col, z), BUSH)
            n = int(rng.integers(2, 6))
            qx, r = bx + (U(0, 1, n) - 0.5) * bw * 0.8, bh * U(0.35, 0.6, n)
            qy = by - r * U(0.7, 1.3, n)
            for i in range(n):
                ellipse(qx[i], qy[i], r[i] * 1.2, r[i], BUSH, dark)
            for i in range(n):
                ellipse(qx[i] + sun * 0.25 * r[i], qy[i] - r[i] * 0.3, r[i] * 0.8, r[i] * 0.6, None, lit)
        elif kind == "rock":
            rw = size * sc
            if rw < 2 * px:
                continue
            rh = rw * U(0.45, 0.8)
            t = np.linspace(np.pi, 2 * np.pi, 11)
            rr = U(0.8, 1.1, 11)
            cy = by + rh * 0.05
            pts = np.stack([bx + np.cos(t) * rw * 0.5 * rr, cy + np.sin(t) * rh * rr], 1)
            col = np.array((125, 118, 110), np.float32) * U(0.75, 1.15)
            dark, lit = looks.add(shade_of(col, z), ROCK), looks.add(hazed(col, z), ROCK)
            poly(pts, ROCK, dark)
            # the lit face: the upper, sunward part of the outline down to an inner crease
            half = pts[4:] if sun > 0 else pts[:7]
            crease = [(bx + sun * rw * 0.18, cy - rh * 0.25), (bx - sun * rw * 0.12, cy - rh * 0.55)]
            poly(np.concatenate([half, crease if sun > 0 else crease[::-1]]), None, lit)
        elif kind == "house":
            a = size * sc
            if a < 4 * px:
                continue
            if road is not None and abs(xw - float(s.ground.road_centre(np.float64(z)))) < (
                    road["width"] / 2 + size * 0.6):
                continue  # houses keep off the road
            b, rise, dep = a * U(0.55, 0.8), a * U(0.3, 0.55), a * U(0.35, 0.6)
            side = 1.0 if bx < w / 2 else -1.0  # the side facing the picture's centre is visible
            k = dep * 0.22
            wall_c = np.array(_WALLS[int(rng.integers(len(_WALLS)))], np.float32)
            roof_c = np.array(_ROOFS[int(rng.integers(len(_ROOFS)))], np.float32)
            lit_front, lit_side = (1.0, 0.55) if side != sun else (0.62, 1.0)
            front = looks.add(hazed(wall_c, z) * lit_front + shade_of(wall_c, z) * (1 - lit_front), HOUSE)
            sidel = looks.add(hazed(wall_c, z) * lit_side + shade_of(wall_c, z) * (1 - lit_side), HOUSE)
            roof = looks.add(hazed(roof_c, z) * 0.9, HOUSE)
            roof_d = looks.add(shade_of(roof_c, z), HOUSE)
            lamps = p["tod"] in ("dusk", "sunset")  # lit windows
            window = looks.add(np.array((255, 200, 110) if lamps else (40, 50, 63), np.float32), HOUSE)
            l, r = bx - a / 2, bx + a / 2
            e = r if side > 0 else l  # front edge next to the visible side
            ds.polygon([(e, by), (e + side * dep * 1.4, by - k * 0.5),
                        (e + side * dep * 1.4 - side * a, by - k * 0.5), (l if side > 0 else r, by)], fill=1)
            gable = rng.random() < 0.5
            if gable:  # gable end facing us, roof slope on the side
                poly([(l, by), (r, by), (r, by - b), (bx, by - b - rise), (l, by - b)], HOUSE, front)
                poly([(e, by), (e + side * dep, by - k), (e + side * dep, by - b - k), (e, by - b)], HOUSE,
                     sidel)
                poly([(bx, by - b - rise), (e, by - b), (e + side * dep, by - b - k),
                      (bx + side * dep, by - b - rise - k)], HOUSE, roof)
            else:  # ridge parallel to the front: roof seen from the front, gable on the side
                poly([(l, by), (r, by), (r, by - b), (l, by - b)], HOUSE, front)
                poly([(e, by), (e + side * dep, by - k), (e + side * dep, by - b - k),
                      (e + side * dep / 2, by - b - rise - k / 2), (e, by - b)], HOUSE, sidel)
                top = by - b - rise
                if side > 0:  # the ridge runs back towards the visible side
                    ridge = [(r + dep / 2, top - k / 2), (l, top)]
                else:
                    ridge = [(r, top), (l - dep / 2, top - k / 2)]
                poly([(l, by - b), (r, by - b), *ridge], HOUSE, roof)
                poly([(l, by - b), (r, by - b), (r, by - b - rise * 0.18), (l, by - b - rise * 0.18)], None,
                     roof_d)
            # windows and a door on the front
            if a >= 8 * px:
                ww, wh = a * 0.14, b * 0.22
                for fx in (-0.28, 0.28):
                    x0, x1, y0 = bx + fx * a - ww / 2, bx + fx * a + ww / 2, by - b * 0.7
                    poly([(x0, y0), (x1, y0), (x1, y0 + wh), (x0, y0 + wh)], None, window)
                dw = a * 0.13
                poly([(bx - dw / 2, by), (bx + dw / 2, by), (bx + dw / 2, by - b * 0.45),
                      (bx - dw / 2, by - b * 0.45)], None, roof_d)  # the door
                sx0 = e + side * dep * 0.35
                poly([(sx0, by - b * 0.7 - k * 0.35), (sx0 + side * dep * 0.3, by - b * 0.7 - k * 0.65),
                      (sx0 + side * dep * 0.3, by - b * 0.45 - k * 0.65), (sx0, by - b * 0.45 - k * 0.35)],
                     None, window)
    s.label = np.asarray(label, dtype=np.uint8).copy()
    s.look = np.asarray(look, dtype=np.uint8).copy()
    s.shadow = np.asarray(shadow, dtype=np.uint8)
    s.looks = looks


def _clean(label: np.ndarray, *carried: np.ndarray) -> None:
    """Give every pixel that shares its class with none of its four neighbours the class most of them have,
    and its ``carried`` values (look, layer maps) from the neighbour it joins; in place, borders see their
    inner neighbours mirrored.

    A merge never strands a neighbour (none shared the pixel's old class), but two adjacent stray pixels
    merged at once could swap classes and stay stray; so the pixels of one checkerboard colour go first,
    then the others: afterwards no pixel is alone."""
    yy, xx = np.indices(label.shape)
    for parity in (0, 1):
        pad = np.pad(label, 1, mode="reflect")
        nb = [pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]]
        stray = (nb[0] != label) & (nb[1] != label) & (nb[2] != label) & (nb[3] != label)
        stray &= (yy + xx) % 2 == parity
        if not stray.any():
            continue
        ys, xs = np.nonzero(stray)
        cand = np.stack([n[ys, xs] for n in nb])  # [4, K]
        votes = (cand[:, None, :] == cand[None, :, :]).sum(1)  # how many neighbours share each candidate
        j, k = votes.argmax(0), np.arange(len(ys))
        dy, dx = np.array([-1, 1, 0, 0])[j], np.array([0, 0, -1, 1])[j]
        label[ys, xs] = cand[j, k]
        for m in carried:
            m[ys, xs] = np.pad(m, 1, mode="reflect")[ys + 1 + dy, xs + 1 + dx]


# -- paint ---------------------------------------------------------------------------------------------------


def _rows(m: np.ndarray) -> slice | None:
    """The band of rows holding the True pixels of ``m`` (None when none): each class is painted on its band
    only, which is most of what keeps a sample cheap."""
    r = np.flatnonzero(m.any(1))
    return slice(int(r[0]), int(r[-1]) + 1) if r.size else None


def _paint(rng: np.random.Generator, s: _Scene) -> np.ndarray:
    """Colour the layout; float32 ``[H, W, 3]`` in 0-255 (unclipped). Every pixel is painted: a pixel left NaN
    would be a bug (tests look for it), which ``render_landscape`` would nevertheless turn mid-grey."""
    U = rng.uniform
    p, h, w, H = s.p, s.h, s.w, float(s.h)
    lab, look = s.label, s.look
    zen, _, light, tint = (np.array(v, np.float32) for v in _LIGHTS[p["tod"]])
    hor = s.horizon_col  # jittered in _objects, which hazes the objects towards it
    zen = zen * U(0.9, 1.08, 3).astype(np.float32)
    # Every draw happens here, whatever the scene holds, so that the colours of one seed do not depend on
    # which classes a given resolution happens to keep.
    rock = np.array(_choose(rng, [(105, 98, 95), (95, 100, 110), (120, 105, 90)]), np.float32)
    hill_alb = np.array(_GRASS[p["season"]], np.float32) * U(0.85, 1.1, 3).astype(np.float32)
    ho, go, ro = U(0, _T, 2), U(0, _T, 2), U(0, _T, 2)
    grass_alb = np.array(_GRASS[p["season"]], np.float32) * U(0.85, 1.1, 3).astype(np.float32)
    sand_alb = np.array([222, 203, 160], np.float32) * U(0.9, 1.05)
    dirt_alb = np.array([150, 125, 95], np.float32) * U(0.85, 1.1)
    deep = np.array(_choose(rng, [(20, 45, 70), (18, 55, 60), (25, 50, 85)]), np.float32)
    yh = s.yh
    ys, xs, Z, X = s.ys, s.xs, s.Z, s.X
    Y = ys[:, None]
    img = np.full((h, w, 3), np.nan, np.float32)
    sun = p["sun_side"]
    low_sun = p["tod"] in ("golden", "sunset")
    sun_x = w / 2 + sun * U(0.15, 0.45) * w
    sun_y = yh - (U(0.02, 0.12) if low_sun else U(0.3, 0.7)) * H
    s.sun_xy = (sun_x, sun_y)
    sunny = p["tod"] != "overcast"
    fine = _tex("fine", xs[None, :] + U(0, _T), Y + U(0, _T))  # screen-space grain

    # Sky: zenith-to-horizon gradient, a glow around the sun (and its disc when it is up). Computed on the
    # rows down to the last sky or cloud pixel (clouds let the sky through at their edges).
    air = (lab == SKY) | (lab == CLOUD)
    top = _rows(air)
    if top is not None:
        top = slice(0, top.stop)
        Yt = Y[top]
        t = np.clip((yh - ys[top]) / max(yh, 1.0), 0, 1)[:, None] ** 0.55
        sky = hor + (zen - hor) * t[..., None] + np.zeros((1, w, 1), np.float32)
        r2 = ((xs[None, :] - sun_x) ** 2 + (Yt - sun_y) ** 2) / (H * H)
        glow = np.exp(-r2 / (0.05 if low_sun else 0.02))[..., None] if sunny else None
        if sunny:
            sky = sky + glow * (light * 255 - sky) * (0.7 if low_sun else 0.45)
            if p["tod"] in ("day", "golden", "sunset"):
                sky = np.where((r2 < (0.028 ** 2))[..., None], np.minimum(light * 300, 255), sky)
        lt, it = lab[top], img[top]
        m = lt == SKY
        it[m] = sky[m]

        # Clouds: lit from above (and from the sun's side), shadowed underneath, tinted by the sky.
        m = lt == CLOUD
        if m.any():
            cu, cv = s.cloud_uv
            dens = s.cloud_density[top] + 0.3 * _tex2("mid", cu[top] * 2.5, cv[top] * 2.5)  # billows
            k = max(1, round(3 * H / 128))
            above = np.concatenate([dens[:1].repeat(k, 0), dens[:-k]], 0)
            shade = np.clip(0.8 + 0.9 * (dens - above) - 0.2 * np.clip(dens, 0, 2), 0.3, 1.15)
            lit = np.minimum(light * 255 * (0.95 if sunny else 0.85), 255) * 0.8 + hor * 0.2
            dark = tint * 230 * 0.7 + hor * 0.3
            col = dark + (lit - dark) * shade[..., None]
            col = col + glow * (light * 255 - col) * 0.35 if sunny else col
            edge = np.clip(dens * 2.5, 0, 1)[..., None]  # thin cloud edges let the sky through
            it[m] = (sky + (col - sky) * (0.55 + 0.45 * edge))[m]

    # Mountains and snow: lit by slope (the ridge's slope near the top, gullies further down), hazed by layer.
    for rd in s.ridges:
        k = rd["k"]
        mm = (s.mountain_layer == k) & ((lab == MOUNTAIN) | (lab == SNOW))
        sl = _rows(mm)
        if sl is None:
            continue
        mm, Yb = mm[sl], Y[sl]
        slope = np.gradient(rd["top"]) / max(H / 128, 1e-3)
        gof = rd["gully_off"]
        gully = _tex2("mid", gof[0] + xs[None, :] * (40 / H), gof[1] + Yb * (6 / H))
        depth = (Yb - rd["top"][None, :]) / (rd["tall"] * H)  # 0 at the ridge, ~1 at its foot
        face = np.tanh(-sun * slope * 1.5)[None, :] * np.exp(-depth * 2.5) + 0.45 * np.tanh(gully * 1.3)
        face = face * (1.0 if sunny else 0.35)
        lamb = np.clip(0.62 + 0.38 * face, 0.15, 1.0)[..., None]
        strata = 0.06 * _tex("fine", xs[None, :] * 0.3 + gof[0], Yb * 2.0 + gof[1])
        haze = (0.62 - 0.45 * (k + 1) / (s.n_mountains + 0.5)) * (40 / s.haze_dist) ** 0.5
        haze = np.clip(haze + 0.25 * np.clip(depth, 0, 1), 0, 0.92)[..., None]
        lit_rock = rock * (1 + strata[..., None]) * light
        col = lit_rock * lamb + rock * tint * 0.7 * (1 - lamb)
        snow_lit = np.array([248, 250, 255], np.float32) * light
        snow_col = snow_lit * lamb + np.array([235, 240, 250], np.float32) * tint * (1 - lamb) * 0.95
        col = np.where((lab[sl] == SNOW)[..., None], snow_col, col)
        col = col * (1 - haze) + hor * haze
        img[sl][mm] = col[mm]

    # Hills: rolling, with patchy fields, hazed.
    m = lab == HILL
    sl = _rows(m)
    if sl is not None:
        m, Yb = m[sl], Y[sl]
        grass = hill_alb if p["season"] != "winter" else np.array([225, 230, 240], np.float32)
        patch = _tex2("blob", ho[0] + xs[None, :] * (14 / H), ho[1] + Yb * (50 / H))
        ridge = s.hill_tops[0] if s.hill_tops else np.full(w, yh)
        slope = np.gradient(ridge) / max(H / 128, 1e-3)
        lamb = np.clip(0.8 + 0.4 * np.tanh(-sun * slope * 3)[None, :] * (1 if sunny else 0.3)
                       + 0.08 * patch, 0.3, 1.1)[..., None]
        col = grass * light * lamb + grass * tint * 0.6 * (1 - lamb)
        col = col * (1 + 0.05 * fine[sl][..., None])
        haze = np.where(s.hill_layer[sl] == 0, 0.32, 0.18)[..., None] * (40 / s.haze_dist) ** 0.5
        col = col * (1 - haze) + hor * haze
        img[sl][m] = col[m]

    # Ground classes share the perspective fields: depth haze, world-space patches, screen-space blades. The
    # ground is every ground-class pixel outside the mountains (whose snow is painted above).
    gmask = _GROUND[lab] & (s.mountain_layer < 0)
    gs = _rows(gmask)
    if gs is not None:
        gm, lb, ig = gmask[gs], lab[gs], img[gs]
        Zf = np.broadcast_to(Z[gs, None], gm.shape)
        Xb, Yb, fb = X[gs], Y[gs], fine[gs]
        near = np.clip(3.0 / Zf, 0, 1)  # 1 near the camera, -> 0 towards the horizon
        hz = np.minimum(0.92, 1 - np.exp(-Zf / s.haze_dist))[..., None]
        patches = _tex2("blob", go[0] + Xb * 3.0, go[1] + Zf * 3.0)
        blades = _tex("fine", xs[None, :] * 1.0 + go[0], (Yb * 0.25 + go[1]))
        shadow = np.where(s.shadow[gs][..., None] > 0, np.float32(0.62 if sunny else 0.85), np.float32(1.0))
        lit = light * (0.95 if sunny else 1.0)

        def ground_paint(mm: np.ndarray, alb, tex: np.ndarray) -> None:
            col = alb * tex[..., None] * lit * shadow + alb * tint * 0.45 * (1 - shadow)
            col = col * (1 - hz) + hor * hz
            ig[mm] = col[mm]

        def plain(cls: int, albedo, patch_amp: float, blade_amp: float, extra=0.0) -> None:
            mm = (lb == cls) & gm
            if mm.any():
                tex = 1 + patch_amp * patches + blade_amp * near * blades + 0.04 * fb + extra
                ground_paint(mm, np.asarray(albedo, np.float32), tex)

        plain(SNOW, np.array([238, 242, 250], np.float32) * (0.92 + 0.08 * tint / tint.max()), 0.05, 0.03)
        plain(GRASS, grass_alb, 0.1, 0.12)
        mm = (lb == FLOWERS) & gm
        if mm.any():  # coloured dots near the camera that blend into one tint far away
            fo = s.flower_off
            dots = _tex("fine", fo[0] * 3 + Xb * 60, fo[1] * 3 + Zf * 60) > 0.9
            mix = np.clip(near * 2.5, 0, 1)
            fc = s.flower_colour
            alb = grass_alb + (fc - grass_alb) * (mix * dots + (1 - mix) * 0.3)[..., None]
            col = alb * (1 + 0.08 * patches + 0.12 * near * blades)[..., None]
            col = col * lit * shadow + alb * tint * 0.45 * (1 - shadow)
            col = col * (1 - hz) + hor * hz
            ig[mm] = col[mm]
        plain(SAND, sand_alb, 0.06, 0.05)
        if s.road is not None:
            rx, width = s.road["rx"][gs], s.road["width"]
            if s.road["paved"]:
                extra = ((np.abs(rx) < 0.03) & (np.sin(Zf * 2.2) > 0.2)) * 1.6  # centre-line dashes
                plain(ROAD, np.array([88, 88, 92], np.float32), 0.05, 0.06, extra)
            else:
                tracks = np.exp(-((np.abs(rx) - width * 0.25) / (width * 0.08)) ** 2)  # wheel ruts
                plain(ROAD, dirt_alb, 0.05, 0.06, -0.18 * tracks)

    # Objects: per-object colours from the look table, with a grain that shows their material.
    obj = look >= _FIRST_LOOK
    sl = _rows(obj)
    if sl is not None:
        lb, ob, Yb, fb = lab[sl], obj[sl], Y[sl], fine[sl]
        o_tex = np.where(np.isin(lb, (TREE, BUSH)), 0.14 * _tex("mid", xs[None, :] * 2.5 + go[1], Yb * 2.5)
                         + 0.06 * fb, 0.05 * fb)
        grain = _tex("fine", xs[None, :] * 0.5 + go[0], Yb * 2.5 + go[1])
        o_tex = np.where(lb == ROCK, 0.1 * grain + 0.05 * fb, o_tex)
        col = s.looks.table[look[sl]] * (1 + o_tex[..., None])
        img[sl][ob] = col[ob]

    # Tree line (no look of its own): dark foliage clumps, hazed like the hills.
    m = (lab == TREE) & ~obj
    sl = _rows(m)
    if sl is not None:
        m = m[sl]
        col = np.array(_FOLIAGE[p["season"]][0], np.float32)
        clumps = _tex("mid", xs[None, :] * 3 + go[0], Y[sl] * 3 + go[1])
        c = col * light * (0.75 + 0.2 * clumps[..., None])
        c = c * 0.7 + hor * 0.3
        img[sl][m] = c[m]

    # Water: mirror of what stands above the shore line, rippled and darkened, over a deep-water colour.
    m = lab == WATER
    if m.any():
        wy, wx = np.nonzero(m)
        if s.water_kind == "river":
            axis = np.full(w, yh, np.float32)
        else:
            col_has = m.any(0)
            axis = np.where(col_has, m.argmax(0), int(yh)).astype(np.float32)
        zz = Z[wy]
        rip = _tex("mid", ro[0] + X[wy, wx] * 14, ro[1] + zz * 70)
        rip2 = _tex("fine", ro[1] + X[wy, wx] * 30, ro[0] + zz * 160)
        body = deep * (light * 0.6 + tint * 0.6) * (1 + 0.15 * rip[:, None])
        img[wy, wx] = body  # a ripple may look up into water of the next column: it sees the deep colour
        amp = np.clip(6.0 / zz, 0.2, 2.0) * (H / 128)
        ry = 2 * axis[wx] - wy - 1 + (rip2 * 0.4 * amp).astype(np.float32)
        rx = wx + rip * amp * 1.5
        ry = np.clip(np.rint(ry), 0, h - 1).astype(np.int32)
        ry = np.minimum(ry, np.maximum(axis[wx].astype(np.int32) - 1, 0))
        rx = np.clip(np.rint(rx), 0, w - 1).astype(np.int32)
        refl = img[ry, rx]
        below_axis = (wy - axis[wx]) / H
        fres = np.clip(0.35 + 0.6 * np.exp(-below_axis / 0.12), 0, 0.95)[:, None]
        tintw = np.array([0.8, 0.88, 0.95], np.float32)
        col = fres * refl * tintw * 0.82 + (1 - fres) * body
        streak = np.clip(rip2 * 0.6 + rip * 0.4 - 0.9, 0, 1)[:, None]
        col = col + streak * (hor * 0.9 - col) * 0.5
        if sunny:  # the sun's glitter path
            gx = np.exp(-((wx - sun_x) / (0.07 * w + 0.25 * (wy - axis[wx]))) ** 2)[:, None]
            glint = np.clip(rip2 - 0.3, 0, 2)[:, None] * (0.8 if low_sun else 0.4)
            col = col + gx * glint * (light * 255 - col)
        img[wy, wx] = col

    # Soft edges where classes meet (the label stays hard) and a little grain.
    diff_x = lab[:, 1:] != lab[:, :-1]
    diff_y = lab[1:, :] != lab[:-1, :]
    edge = np.zeros((h, w), bool)
    edge[:, 1:] |= diff_x
    edge[:, :-1] |= diff_x
    edge[1:, :] |= diff_y
    edge[:-1, :] |= diff_y
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    blur = (pad[1:-1, 1:-1] * 2 + pad[:-2, 1:-1] + pad[2:, 1:-1] + pad[1:-1, :-2] + pad[1:-1, 2:]) / 6
    img = np.where(edge[..., None], blur, img)
    img += (fine * 1.2)[..., None]
    return img


def render_landscape(rng: np.random.Generator, size: int | tuple[int, int],
                     return_meta: bool = False) -> tuple[np.ndarray, ...]:
    """Returns (image uint8 [H, W, 3], label uint8 [H, W]) for one random scene; with ``return_meta`` also a
    dict of the scene's choices (``tod``, ``season``, ``water``, ``horizon`` as a fraction of the height,
    ``horizon_row`` in pixels, object counts, ...)."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    s = _layout(rng, int(h), int(w))
    _clean(s.label, s.look, s.mountain_layer, s.hill_layer)
    img = _paint(rng, s)
    img[np.isnan(img)] = 128.0  # never happens (tests check); a NaN must not reach a uint8 cast
    out = (np.clip(img + 0.5, 0, 255).astype(np.uint8), s.label)
    if return_meta:
        return (*out, {**s.p, "horizon_row": s.yh})
    return out



@DATASETS.register("synthetic-landscapes", "procedural outdoor scenes (14 classes: sky, mountains, water, "
                                           "trees, houses, ...), generated on the fly; no download")
class SyntheticLandscapes(ProceduralWorld):
    """Random landscapes with their label maps; sample ``i`` depends only on (seed, split, i)."""

    # Below 64 pixels the far objects, the snow caps and the road are specks that the label cleaning erases.
    NAME, CLASS_NAMES, PALETTE = "synthetic-landscapes", CLASS_NAMES, PALETTE
    MIN_RESOLUTION, RESOLUTION_STEP = 64, 32

    def __init__(self, split: str = "train", *, resolution: int = 128, num_samples: int = 4000,
                 seed: int = 0) -> None:
        self._setup(split, resolution, num_samples, seed)

    def sample_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 image ``[H, W, 3]`` and label ``[H, W]`` of sample ``i``."""
        return render_landscape(self._rng(i), self.resolution)

    def sample_meta(self, i: int) -> dict:
        """The scene choices of sample ``i`` (time of day, season, water, horizon row, ...)."""
        s = _layout(self._rng(i), self.resolution, self.resolution)  # the choices are made before painting
        return {**s.p, "horizon_row": s.yh}



def write_synthetic_landscapes(out_dir: str | Path, num: int, size: int = 128, seed: int = 0,
                               split: str = "train", progress: bool = True) -> Path:
    """Write images/<name>.png, labels/<name>.png (8-bit class ids) and dataset.yaml into out_dir: exactly
    ``SyntheticLandscapes(split, resolution=size, num_samples=num, seed=seed)`` (see ``worlds.write_world``);
    returns out_dir. ``progress``: show progress on stderr."""
    from .worlds import write_world

    ds = SyntheticLandscapes(split, resolution=size, num_samples=num, seed=seed)
    return write_world(ds, out_dir, progress)
