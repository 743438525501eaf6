"""Rendering toyworld scenes: images, videos and audio, pure numpy + PIL, deterministic by seed.

A `Scene` is the data a sample is drawn from: the concept, its jittered palette, tint and horizon, and one
seed per layer. A painter re-creates its generator from its layer seed in every frame, so it draws the same
random parameters each time and only the time ``t`` (seconds) moves things. Shapes:

    render_image(scene)                     -> (S, S, 3) uint8, the video's first frame
    render_video(scene, frames=16, fps=8)   -> (F, S, S, 3) uint8, frame i at t = i / fps
    render_audio(scene, seconds=2.0, ...)   -> (seconds * rate,) float32, peak 0.5 (nextmm.toyworld.sound)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from nextmm.toyworld.concepts import RGB, get_concept
from nextmm.toyworld.sound import synthesize

COLOUR_JITTER = 14  # +- per channel on every palette colour
HORIZON_JITTER = 0.04  # +- fraction of the height


@dataclass(frozen=True)
class Settings:
    """What every rendered sample has in common."""

    size: int = 64  # even, so H.264 yuv420p can hold it
    frames: int = 16
    fps: int = 8
    audio_seconds: float = 2.0
    sample_rate: int = 16000

    def __post_init__(self):
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be even and >= 16, got {self.size}")
        if self.frames < 1 or self.fps < 1 or self.audio_seconds <= 0 or self.sample_rate < 8000:
            raise ValueError(f"bad render settings: {self}")


@dataclass(frozen=True)
class Scene:
    concept: str
    seed: int
    size: int
    horizon: float  # pixels from the top
    palette: Mapping[str, RGB]  # jittered
    tint: tuple[float, float, float]  # per-channel gain: time-of-day warmth and brightness
    layer_seeds: tuple[int, ...]  # one per concept layer
    layout_seed: int  # levels several layers share (e.g. the beach's shoreline)
    sound_seed: int


@dataclass
class Sample:
    scene: Scene
    image: np.ndarray  # (S, S, 3) uint8
    video: np.ndarray  # (F, S, S, 3) uint8
    audio: np.ndarray  # (n,) float32


def sample_scene(concept: str, seed: int, size: int = 64) -> Scene:
    """Everything random about one sample, drawn from ``seed``."""
    spec = get_concept(concept)
    rng = np.random.default_rng([seed, zlib.crc32(concept.encode())])
    palette = {
        name: tuple(int(v) for v in np.clip(np.array(rgb) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255))
        for name, rgb in spec.palette.items()
    }
    brightness, warmth = rng.uniform(0.9, 1.1), rng.uniform(-0.05, 0.05)
    horizon = spec.horizon if spec.horizon >= 1 else spec.horizon + rng.uniform(-HORIZON_JITTER, HORIZON_JITTER)
    seeds = rng.integers(0, 2**62, len(spec.layers) + 2)
    return Scene(
        concept=concept,
        seed=seed,
        size=size,
        horizon=float(horizon * size),
        palette=palette,
        tint=(brightness * (1 + warmth), brightness, brightness * (1 - warmth)),
        layer_seeds=tuple(int(s) for s in seeds[:-2]),
        layout_seed=int(seeds[-2]),
        sound_seed=int(seeds[-1]),
    )


def render_sample(concept: str, seed: int, settings: Settings = Settings()) -> Sample:
    scene = sample_scene(concept, seed, settings.size)
    video = render_video(scene, settings.frames, settings.fps)
    return Sample(scene, video[0].copy(), video, render_audio(scene, settings.audio_seconds, settings.sample_rate))


def render_image(scene: Scene) -> np.ndarray:
    return render_video(scene, frames=1, fps=1)[0]


def render_video(scene: Scene, frames: int = 16, fps: int = 8) -> np.ndarray:
    """(F, S, S, 3) uint8. Static layers in front of the sky are painted once, the rest in every frame."""
    layers = [(LAYERS[name], seed) for name, seed in zip(get_concept(scene.concept).layers, scene.layer_seeds)]
    still = 0
    while still < len(layers) and not layers[still][0].moving:
        still += 1
    background = Image.fromarray(_sky(scene))
    _paint(background, scene, layers[:still], 0.0)
    video = np.empty((frames, scene.size, scene.size, 3), dtype=np.uint8)
    for i in range(frames):
        frame = background.copy()
        _paint(frame, scene, layers[still:], i / fps)
        video[i] = np.asarray(frame)
    return np.clip(video * np.asarray(scene.tint, dtype=np.float32), 0, 255).astype(np.uint8)


def render_audio(scene: Scene, seconds: float = 2.0, sample_rate: int = 16000) -> np.ndarray:
    """(seconds * sample_rate,) float32 mono, peak 0.5, the concept's sound with this scene's jitter."""
    sound = get_concept(scene.concept).sound.kind
    wave = synthesize(sound, np.random.default_rng(scene.sound_seed), int(round(seconds * sample_rate)), sample_rate)
    return (0.5 * wave / max(float(np.abs(wave).max()), 1e-8)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- canvas
@dataclass
class Canvas:
    """What a painter draws with: an RGBA-blending draw on an RGB frame, the scene's palette and the time."""

    draw: ImageDraw.ImageDraw
    s: int  # size in pixels
    h: float  # horizon in pixels
    pal: Mapping[str, RGB]
    t: float  # seconds
    layout_seed: int
    sky: tuple[np.ndarray, ...]  # gradient stops

    def level(self, key: str, lo: float, hi: float) -> float:
        """A height (fraction lo..hi of the size, in pixels) that every layer of the scene agrees on."""
        return float(np.random.default_rng([self.layout_seed, zlib.crc32(key.encode())]).uniform(lo, hi)) * self.s

    def sky_at(self, y: float) -> RGB:
        return tuple(int(v) for v in _gradient(self.sky, np.array([y / max(self.h, 1.0)]))[0])


@dataclass(frozen=True)
class Layer:
    paint: Callable[[Canvas, np.random.Generator], None]
    moving: bool


LAYERS: dict[str, Layer] = {}


def layer(name: str, moving: bool = False):
    def register(paint):
        LAYERS[name] = Layer(paint, moving)
        return paint

    return register


def _sky_stops(scene: Scene) -> tuple[np.ndarray, ...]:
    names = [n for n in ("sky_top", "sky_mid", "sky_bottom") if n in scene.palette]
    return tuple(np.array(scene.palette[n], dtype=np.float32) for n in names)


def _gradient(stops: tuple[np.ndarray, ...], position: np.ndarray) -> np.ndarray:
    """Colours (N, 3) at positions in [0, 1] along evenly spaced stops; past 1 the last stop."""
    scaled = np.clip(position, 0, 1) * (len(stops) - 1)
    index = np.minimum(scaled.astype(int), len(stops) - 2)
    frac = (scaled - index)[:, None]
    stack = np.stack(stops)
    return stack[index] * (1 - frac) + stack[index + 1] * frac


def _sky(scene: Scene) -> np.ndarray:
    rows = _gradient(_sky_stops(scene), (np.arange(scene.size) + 0.5) / max(scene.horizon, 1.0))
    return np.broadcast_to(rows[:, None, :], (scene.size, scene.size, 3)).astype(np.uint8)


def _paint(image: Image.Image, scene: Scene, layers, t: float) -> None:
    canvas = Canvas(ImageDraw.Draw(image, "RGBA"), scene.size, scene.horizon, scene.palette, t, scene.layout_seed,
                    _sky_stops(scene))
    for spec, seed in layers:
        spec.paint(canvas, np.random.default_rng(seed))


def _wrap(x: np.ndarray | float, span: float, margin: float = 0.0):
    """Positions that leave one side re-enter on the other: into [-margin, span + margin)."""
    return np.mod(np.asarray(x) + margin, span + 2 * margin) - margin


def _shade(rgb: RGB, factor: float) -> RGB:
    return tuple(int(min(255, v * factor)) for v in rgb)


# ------------------------------------------------------------------------------------ shared elements
@layer("ground")
def _ground(c: Canvas, rng):
    c.draw.rectangle([0, c.h, c.s, c.s], fill=c.pal["ground"])


def _glowing_disc(c: Canvas, x: float, y: float, r: float, *, halo: float, alpha: int) -> None:
    """A sun: a translucent halo ``halo`` times its radius, then the disc."""
    c.draw.ellipse([x - halo * r, y - halo * r, x + halo * r, y + halo * r], fill=c.pal["sun"] + (alpha,))
    c.draw.ellipse([x - r, y - r, x + r, y + r], fill=c.pal["sun"])


@layer("sun")
def _sun(c: Canvas, rng):
    r = rng.uniform(0.06, 0.09) * c.s
    x, y = rng.uniform(0.15, 0.85) * c.s, rng.uniform(0.3, 0.5) * c.h
    _glowing_disc(c, x, y, r, halo=1.6, alpha=70)


@layer("clouds", moving=True)
def _clouds(c: Canvas, rng):
    n = rng.integers(1, 4)
    x0, y = rng.uniform(0, c.s, n), rng.uniform(0.1, 0.55, n) * c.h
    speed, width = rng.uniform(5, 9, n) * c.s / 64, rng.uniform(0.18, 0.3, n) * c.s
    for xi, yi, w in zip(_wrap(x0 + speed * c.t, c.s, 0.3 * c.s), y, width):
        for dx, dy, k in ((-0.3, 0.1, 0.55), (0.0, -0.12, 0.7), (0.3, 0.08, 0.5)):
            cx, cy, r = xi + dx * w, yi + dy * w, k * w / 2
            c.draw.ellipse([cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r], fill=c.pal["cloud"])


@layer("hills")
def _hills(c: Canvas, rng):
    x = np.linspace(0, c.s, 17)
    a, f, p = rng.uniform(0.03, 0.07, 2) * c.s, rng.uniform(0.5, 2.0, 2), rng.uniform(0, 2 * np.pi, 2)
    y = c.h + a[0] * np.sin(2 * np.pi * f[0] * x / c.s + p[0]) + a[1] * np.sin(2 * np.pi * f[1] * x / c.s + p[1])
    c.draw.polygon([(0, c.s)] + list(zip(x, y)) + [(c.s, c.s)], fill=c.pal["hill"])


# ------------------------------------------------------------------------------------------- beach
def _shore(c: Canvas) -> float:
    return c.level("shore", 0.72, 0.8)


@layer("sea")
def _sea(c: Canvas, rng):
    shore = _shore(c)
    c.draw.rectangle([0, c.h, c.s, shore + 2], fill=c.pal["sea"])
    for y in rng.uniform(c.h + 1, shore, rng.integers(2, 4)):
        c.draw.line([(0, y), (c.s, y)], fill=c.pal["sea_light"], width=1)


@layer("sand")
def _sand(c: Canvas, rng):
    x = np.linspace(0, c.s, 17)
    y = _shore(c) + rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * rng.uniform(1, 3) * x / c.s + rng.uniform(0, 6))
    c.draw.polygon([(0, c.s)] + list(zip(x, y)) + [(c.s, c.s)], fill=c.pal["sand"])


@layer("waves", moving=True)
def _waves(c: Canvas, rng):
    shore, n = _shore(c), rng.integers(3, 6)
    depth = shore - c.h - 2
    speed, drift = rng.uniform(3, 6) * c.s / 64, rng.uniform(0.6, 1.2)
    start, phase = rng.uniform(0, 1, n), rng.uniform(0, 2 * np.pi, n)
    x = np.linspace(0, c.s, 17)
    for k in range(n):
        y = c.h + 1 + np.mod(start[k] * depth + speed * c.t, depth)
        crest = y + 1.2 * np.sin(2 * np.pi * 2 * x / c.s + phase[k] + 2 * np.pi * drift * c.t)
        c.draw.line(list(zip(x, crest)), fill=c.pal["foam"], width=1)
    wash = shore + 1 + 1.0 * np.sin(2 * np.pi * drift * c.t)  # foam line where the waves reach the sand
    c.draw.line([(0, wash), (c.s, wash)], fill=c.pal["foam"] + (200,), width=1)


@layer("surfer", moving=True)
def _surfer(c: Canvas, rng):
    u = c.s / 64
    shore = _shore(c)
    x0, y0 = rng.uniform(0, c.s), rng.uniform(c.h + 0.35 * (shore - c.h), shore - 3 * u)
    speed = rng.uniform(8, 14) * u
    x = float(_wrap(x0 + speed * c.t, c.s, 6 * u))
    y = y0 + 0.8 * u * math.sin(2 * math.pi * 1.3 * c.t)
    c.draw.ellipse([x - 5 * u, y, x + 5 * u, y + 2 * u], fill=c.pal["board"])
    c.draw.line([(x, y), (x + u, y - 6 * u)], fill=c.pal["surfer"], width=max(1, round(2 * u)))
    c.draw.line([(x - 3 * u, y - 4 * u), (x + 4 * u, y - 5 * u)], fill=c.pal["surfer"], width=1)
    c.draw.ellipse([x, y - 9.5 * u, x + 3 * u, y - 6.5 * u], fill=c.pal["surfer"])


# ------------------------------------------------------------------------------------------ forest
def _tree(c: Canvas, x: float, base: float, height: float, width: float, sway: float, colour: RGB, trunk: RGB | None):
    if trunk is not None:
        c.draw.rectangle([x - width * 0.08, base - height * 0.25, x + width * 0.08, base], fill=trunk)
    for tier in (0.0, 0.3):  # two stacked triangles read as a conifer
        top, bottom = base - height + tier * height * 0.9, base - height * 0.2 - (0.3 - tier) * height * 0.8
        half = width * (0.5 - tier * 0.4)
        c.draw.polygon([(x + sway * (1 - tier), top), (x - half, bottom), (x + half, bottom)], fill=colour)


@layer("trees_far")
def _trees_far(c: Canvas, rng):
    n = rng.integers(9, 15)
    for x, height in zip(rng.uniform(0, c.s, n), rng.uniform(0.14, 0.24, n) * c.s):
        _tree(c, x, c.h + 0.08 * c.s, height, height * 0.6, 0.0, c.pal["tree_far"], None)


@layer("trees", moving=True)
def _trees(c: Canvas, rng):
    n = rng.integers(4, 8)
    x = (np.arange(n) + rng.uniform(0.1, 0.9, n)) * c.s / n
    base = rng.uniform(c.h + 0.35 * (c.s - c.h), c.s - 1, n)
    height, width = rng.uniform(0.35, 0.6, n) * c.s, rng.uniform(0.18, 0.3, n) * c.s
    amp, freq, phase = rng.uniform(1.0, 2.0, n) * c.s / 64, rng.uniform(0.5, 1.0, n), rng.uniform(0, 2 * np.pi, n)
    for i in np.argsort(base):
        sway = amp[i] * math.sin(2 * math.pi * freq[i] * c.t + phase[i])
        _tree(c, x[i], base[i], height[i], width[i], sway, c.pal["tree"], c.pal["trunk"])


@layer("birds", moving=True)
def _birds(c: Canvas, rng):
    n = rng.integers(2, 5)
    x0, y0 = rng.uniform(0, c.s, n), rng.uniform(0.15, 0.9, n) * c.h
    vx = rng.uniform(6, 12, n) * rng.choice([-1, 1], n) * c.s / 64
    flap = rng.uniform(3, 5, n)
    for i in range(n):
        x = float(_wrap(x0[i] + vx[i] * c.t, c.s, 3))
        y = y0[i] + 2 * math.sin(2 * math.pi * 0.7 * c.t + i)
        wing = 1.5 * math.sin(2 * math.pi * flap[i] * c.t)
        c.draw.line([(x - 2, y - wing), (x, y + 1), (x + 2, y - wing)], fill=c.pal["bird"], width=1)


# -------------------------------------------------------------------------------------------- city
@layer("buildings")
def _buildings(c: Canvas, rng):
    x, u = 0.0, c.s / 64
    colours = [c.pal["building_a"], c.pal["building_b"], c.pal["building_c"]]
    while x < c.s:
        width, top = rng.uniform(0.12, 0.24) * c.s, rng.uniform(0.15, 0.5) * c.s
        colour = colours[rng.integers(0, 3)]
        c.draw.rectangle([x, top, x + width - 1, c.h], fill=colour)
        dark = _shade(colour, 0.6)
        lit = rng.uniform(0.35, 0.8)
        for wy in np.arange(top + 2 * u, c.h - 3 * u, 4 * u):
            for wx in np.arange(x + 2 * u, x + width - 3 * u, 4 * u):
                c.draw.rectangle([wx, wy, wx + u, wy + u], fill=c.pal["window"] if rng.random() < lit else dark)
        x += width


@layer("road")
def _road(c: Canvas, rng):
    c.draw.rectangle([0, c.h, c.s, c.s], fill=c.pal["road"])
    mid, offset = (c.h + c.s) / 2, rng.uniform(0, 8)
    for x in np.arange(-offset, c.s, 8 * c.s / 64):
        c.draw.line([(x, mid), (x + 4 * c.s / 64, mid)], fill=c.pal["lane"], width=1)


CAR_COLOURS = ((220, 40, 40), (40, 90, 220), (240, 200, 40), (235, 235, 235), (40, 170, 80))


@layer("cars", moving=True)
def _cars(c: Canvas, rng):
    n, u = rng.integers(2, 5), c.s / 64
    mid = (c.h + c.s) / 2
    lane = rng.integers(0, 2, n)
    x0, speed = rng.uniform(0, c.s, n), rng.uniform(16, 30, n) * u
    colour = rng.integers(0, len(CAR_COLOURS), n)
    for i in np.argsort(lane):
        x = float(_wrap(x0[i] + speed[i] * c.t, c.s, 8 * u))
        y = mid - 1 * u if lane[i] == 0 else c.s - 2 * u  # bottom of the car
        body = CAR_COLOURS[colour[i]]
        c.draw.rectangle([x - 5 * u, y - 3 * u, x + 5 * u, y - u], fill=body)
        c.draw.rectangle([x - 2.5 * u, y - 5 * u, x + 2.5 * u, y - 3 * u], fill=_shade(body, 0.8))
        for wx in (x - 3 * u, x + 3 * u):
            c.draw.ellipse([wx - u, y - 1.5 * u, wx + u, y + 0.5 * u], fill=(15, 15, 15))


# -------------------------------------------------------------------------------------------- snow
@layer("pines")
def _pines(c: Canvas, rng):
    n = rng.integers(2, 6)
    base, x = rng.uniform(c.h + 2, c.s - 4, n), rng.uniform(0.05, 0.95, n) * c.s
    height = rng.uniform(0.25, 0.45, n) * c.s
    for i in np.argsort(base):
        _tree(c, x[i], base[i], height[i], height[i] * 0.55, 0.0, c.pal["tree"], None)
        top = base[i] - height[i]  # a white cap on the tip
        c.draw.polygon([(x[i], top), (x[i] - height[i] * 0.08, top + height[i] * 0.2),
                        (x[i] + height[i] * 0.08, top + height[i] * 0.2)], fill=c.pal["snow"])


@layer("snowfall", moving=True)
def _snowfall(c: Canvas, rng):
    n = rng.integers(30, 56)
    x0, y0 = rng.uniform(0, c.s, n), rng.uniform(0, c.s, n)
    speed = rng.uniform(10, 18) * rng.uniform(0.8, 1.2, n) * c.s / 64
    amp, freq, phase = rng.uniform(0.5, 1.5, n), rng.uniform(0.4, 1.0, n), rng.uniform(0, 2 * np.pi, n)
    big = rng.random(n) < 0.3
    y = _wrap(y0 + speed * c.t, c.s, 1)
    x = _wrap(x0 + amp * np.sin(2 * np.pi * freq * c.t + phase), c.s)
    for xi, yi, b in zip(x, y, big):
        if b:
            c.draw.rectangle([xi, yi, xi + 1, yi + 1], fill=c.pal["snow"])
        else:
            c.draw.point((xi, yi), fill=c.pal["snow"])


# ------------------------------------------------------------------------------------------- night
@layer("stars", moving=True)
def _stars(c: Canvas, rng):
    n = rng.integers(30, 60)
    x, y = rng.uniform(0, c.s, n), rng.uniform(0, 0.95, n) * c.h
    freq, phase = rng.uniform(1.0, 3.0, n), rng.uniform(0, 2 * np.pi, n)
    glow = 0.3 + 0.7 * (0.5 + 0.5 * np.sin(2 * np.pi * freq * c.t + phase))
    bright = rng.random(n) < 0.15
    for xi, yi, g, b in zip(x, y, glow, bright):
        colour = _shade(c.pal["star"], g)
        c.draw.point((xi, yi), fill=colour)
        if b:
            c.draw.point([(xi - 1, yi), (xi + 1, yi), (xi, yi - 1), (xi, yi + 1)], fill=colour + (int(160 * g),))


@layer("moon")
def _moon(c: Canvas, rng):
    r = rng.uniform(0.06, 0.1) * c.s
    x, y = rng.uniform(0.15, 0.85) * c.s, rng.uniform(0.15, 0.4) * c.h
    c.draw.ellipse([x - r, y - r, x + r, y + r], fill=c.pal["moon"])
    if rng.random() < 0.7:  # a crescent: the sky covers part of the disc
        dx = r * rng.uniform(0.4, 0.8) * rng.choice([-1, 1])
        c.draw.ellipse([x + dx - r, y - r - 1, x + dx + r, y + r - 1], fill=c.sky_at(y))


# ------------------------------------------------------------------------------------------ desert
@layer("dunes")
def _dunes(c: Canvas, rng):
    x = np.linspace(0, c.s, 17)
    for level, colour in ((0.0, "dune_far"), (0.35, "dune_near")):
        base = c.h + level * (c.s - c.h)
        amplitude, waves, phase = rng.uniform(0.03, 0.07) * c.s, rng.uniform(0.6, 1.6), rng.uniform(0, 6)
        y = base + amplitude * np.sin(2 * np.pi * waves * x / c.s + phase)
        c.draw.polygon([(0, c.s)] + list(zip(x, y)) + [(c.s, c.s)], fill=c.pal[colour])


@layer("cacti")
def _cacti(c: Canvas, rng):
    u = c.s / 64
    for _ in range(rng.integers(1, 4)):
        x, base = rng.uniform(0.08, 0.92) * c.s, rng.uniform(c.h + 0.45 * (c.s - c.h), c.s - 1)
        height, w = rng.uniform(0.14, 0.26) * c.s, rng.uniform(1.5, 2.5) * u
        c.draw.rectangle([x - w, base - height, x + w, base], fill=c.pal["cactus"])
        for side in (-1, 1):
            arm = base - height * rng.uniform(0.4, 0.7)
            inner, outer, bend = x + side * w, x + side * 4 * w, x + side * 3 * w
            c.draw.rectangle([min(inner, outer), arm - w, max(inner, outer), arm], fill=c.pal["cactus"])
            c.draw.rectangle([min(bend, outer), arm - height * 0.3, max(bend, outer), arm], fill=c.pal["cactus"])


@layer("sand_blow", moving=True)
def _sand_blow(c: Canvas, rng):
    n = rng.integers(20, 36)
    x0, y0 = rng.uniform(0, c.s, n), rng.uniform(c.h - 0.1 * c.s, c.s, n)
    speed = rng.uniform(22, 36) * rng.uniform(0.8, 1.2, n) * c.s / 64
    x = _wrap(x0 + speed * c.t, c.s, 2)
    for xi, yi in zip(x, y0):
        c.draw.line([(xi - 2, yi), (xi, yi)], fill=c.pal["dust"], width=1)


@layer("tumbleweed", moving=True)
def _tumbleweed(c: Canvas, rng):
    u = c.s / 64
    r, speed = rng.uniform(3, 4.5) * u, rng.uniform(12, 20) * u
    x = float(_wrap(rng.uniform(0, c.s) + speed * c.t, c.s, 2 * r))
    y = rng.uniform(c.h + 0.5 * (c.s - c.h), c.s - r - 1) - 3 * u * abs(math.sin(2 * math.pi * 1.2 * c.t))
    c.draw.ellipse([x - r, y - r, x + r, y + r], outline=c.pal["tumbleweed"], width=1)
    angle = speed * c.t / r
    for a in (angle, angle + math.pi / 2):
        dx, dy = r * math.cos(a), r * math.sin(a)
        c.draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=c.pal["tumbleweed"], width=1)


# -------------------------------------------------------------------------------------------- rain
@layer("storm_clouds")
def _storm_clouds(c: Canvas, rng):
    for _ in range(rng.integers(3, 7)):
        x, y = rng.uniform(0, c.s), rng.uniform(0.0, 0.45) * c.h
        w, hgt = rng.uniform(0.25, 0.45) * c.s, rng.uniform(0.08, 0.15) * c.s
        colour = _shade(c.pal["cloud"], rng.uniform(0.8, 1.1))
        c.draw.ellipse([x - w / 2, y - hgt / 2, x + w / 2, y + hgt / 2], fill=colour)


@layer("puddles", moving=True)
def _puddles(c: Canvas, rng):
    n = rng.integers(2, 5)
    x, y = rng.uniform(0.1, 0.9, n) * c.s, rng.uniform(c.h + 0.25 * (c.s - c.h), c.s - 3, n)
    w = rng.uniform(0.12, 0.22, n) * c.s
    start, speed = rng.uniform(0, 1, n), rng.uniform(0.8, 1.4, n)
    for i in range(n):
        c.draw.ellipse([x[i] - w[i] / 2, y[i] - w[i] / 8, x[i] + w[i] / 2, y[i] + w[i] / 8], fill=c.pal["puddle"])
        grow = (start[i] + speed[i] * c.t) % 1.0  # a ripple spreading from the middle
        rx, ry = grow * w[i] / 2, grow * w[i] / 8
        c.draw.ellipse([x[i] - rx, y[i] - ry, x[i] + rx, y[i] + ry], outline=_shade(c.pal["puddle"], 1.4), width=1)


@layer("rainfall", moving=True)
def _rainfall(c: Canvas, rng):
    n, u = rng.integers(40, 70), c.s / 64
    slant, speed = rng.uniform(0.1, 0.35), rng.uniform(40, 56) * u
    x0, y0 = rng.uniform(0, c.s, n), rng.uniform(0, c.s, n)
    length = rng.uniform(4, 7, n) * u
    y = _wrap(y0 + speed * c.t, c.s, 4 * u)
    x = _wrap(x0 + slant * speed * c.t, c.s)
    for xi, yi, li in zip(x, y, length):
        c.draw.line([(xi - slant * li, yi - li), (xi, yi)], fill=c.pal["rain"] + (210,), width=1)


# ----------------------------------------------------------------------------------------- concert
@layer("stage")
def _stage(c: Canvas, rng):
    top, u = rng.uniform(0.6, 0.66) * c.s, c.s / 64
    c.draw.rectangle([0, top, c.s, top + 0.1 * c.s], fill=c.pal["stage"])
    x = rng.uniform(0.35, 0.65) * c.s  # the performer and a microphone stand
    c.draw.rectangle([x - 2 * u, top - 12 * u, x + 2 * u, top], fill=c.pal["performer"])
    c.draw.ellipse([x - 2 * u, top - 16 * u, x + 2 * u, top - 12 * u], fill=c.pal["performer"])
    c.draw.line([(x + 5 * u, top), (x + 5 * u, top - 11 * u), (x + 2 * u, top - 12 * u)], fill=(150, 150, 150), width=1)


@layer("spotlights", moving=True)
def _spotlights(c: Canvas, rng):
    n = rng.integers(3, 5)
    x0 = (np.arange(n) + rng.uniform(0.2, 0.8, n)) * c.s / n
    freq, phase = rng.uniform(0.3, 0.8, n), rng.uniform(0, 2 * np.pi, n)
    change = rng.uniform(1.5, 3.0)  # colour changes per second
    colours = [c.pal["light_a"], c.pal["light_b"], c.pal["light_c"]]
    for i in range(n):
        target = x0[i] + 0.3 * c.s * math.sin(2 * math.pi * freq[i] * c.t + phase[i])
        colour = colours[(i + int(change * c.t + phase[i])) % 3]
        half = 0.1 * c.s
        c.draw.polygon([(x0[i], 0), (target - half, 0.7 * c.s), (target + half, 0.7 * c.s)], fill=colour + (110,))
        c.draw.ellipse([x0[i] - 2, -2, x0[i] + 2, 2], fill=colour)


@layer("crowd", moving=True)
def _crowd(c: Canvas, rng):
    n, u = rng.integers(10, 17), c.s / 64
    x = (np.arange(n) + rng.uniform(0, 1, n)) * c.s / n
    r = rng.uniform(3, 4.5, n) * u
    beat, phase = rng.uniform(2.1, 2.5), rng.uniform(0, 2 * np.pi, n)
    arms = rng.random(n) < 0.3
    c.draw.rectangle([0, c.s - 4 * u, c.s, c.s], fill=c.pal["crowd"])
    for i in range(n):
        y = c.s - 6 * u - 2.5 * u * abs(math.sin(math.pi * beat * c.t + phase[i]))
        c.draw.ellipse([x[i] - r[i], y - r[i], x[i] + r[i], y + r[i]], fill=c.pal["crowd"])
        c.draw.ellipse([x[i] - 2 * r[i], y + 0.6 * r[i], x[i] + 2 * r[i], y + 4 * r[i]], fill=c.pal["crowd"])
        if arms[i]:
            arm = [(x[i] + r[i], y + r[i]), (x[i] + 2 * r[i], y - 2.5 * r[i])]
            c.draw.line(arm, fill=c.pal["crowd"], width=max(1, round(u)))


# ------------------------------------------------------------------------------------------ meadow
@layer("flowers")
def _flowers(c: Canvas, rng):
    n = rng.integers(40, 71)
    x, y = rng.uniform(0, c.s, n), rng.uniform(c.h + 2, c.s, n)
    kind = rng.integers(0, 4, n)
    names = ("flower_a", "flower_b", "flower_c", "flower_d")
    for xi, yi, k in zip(x, y, kind):
        size = 0.5 + 1.5 * (yi - c.h) / (c.s - c.h)  # nearer is bigger
        c.draw.ellipse([xi - size, yi - size, xi + size, yi + size], fill=c.pal[names[k]])


@layer("bees", moving=True)
def _bees(c: Canvas, rng):
    n = rng.integers(3, 7)
    cx, cy = rng.uniform(0.1, 0.9, n) * c.s, rng.uniform(c.h, c.s - 6, n)
    ax, ay = rng.uniform(3, 8, n), rng.uniform(2, 5, n)
    fx, fy, phase = rng.uniform(0.8, 2.0, n), rng.uniform(1.0, 2.5, n), rng.uniform(0, 2 * np.pi, (2, n))
    x = cx + ax * np.sin(2 * np.pi * fx * c.t + phase[0])
    y = cy + ay * np.sin(2 * np.pi * fy * c.t + phase[1])
    for xi, yi in zip(x, y):
        c.draw.rectangle([xi - 1, yi - 1, xi + 1, yi], fill=c.pal["bee"])
        c.draw.point((xi, yi - 1), fill=(20, 20, 20))


# ---------------------------------------------------------------------------------------- mountain
@layer("peaks")
def _peaks(c: Canvas, rng):
    n = rng.integers(2, 5)
    x = (np.arange(n) + rng.uniform(0.2, 0.8, n)) * c.s / n
    top = rng.uniform(0.12, 0.4, n) * c.s
    half = rng.uniform(0.25, 0.45, n) * c.s
    base = c.h + 2
    for i in np.argsort(-top):  # lower peaks behind
        colour = c.pal["rock"] if i % 2 == 0 else c.pal["rock_dark"]
        c.draw.polygon([(x[i], top[i]), (x[i] - half[i], base), (x[i] + half[i], base)], fill=colour)
        cap = rng.uniform(0.25, 0.35) * (base - top[i])
        w = half[i] * cap / (base - top[i])
        c.draw.polygon([(x[i], top[i]), (x[i] - w, top[i] + cap), (x[i] - w / 3, top[i] + cap * 0.8),
                        (x[i] + w / 3, top[i] + cap), (x[i] + w, top[i] + cap)], fill=c.pal["snowcap"])


# ------------------------------------------------------------------------------------------ sunset
@layer("sinking_sun", moving=True)
def _sinking_sun(c: Canvas, rng):
    r = rng.uniform(0.14, 0.2) * c.s
    x = rng.uniform(0.3, 0.7) * c.s
    y = c.h - r * rng.uniform(0.3, 0.8) + rng.uniform(4.0, 6.0) * c.s / 64 * c.t
    _glowing_disc(c, x, y, r, halo=1.5, alpha=60)


@layer("streak_clouds", moving=True)
def _streak_clouds(c: Canvas, rng):
    n = rng.integers(2, 5)
    x0, y = rng.uniform(0, c.s, n), rng.uniform(0.1, 0.6, n) * c.h
    w, speed = rng.uniform(0.2, 0.4, n) * c.s, rng.uniform(5, 9, n) * c.s / 64
    for xi, yi, wi in zip(_wrap(x0 + speed * c.t, c.s, 0.2 * c.s), y, w):
        c.draw.ellipse([xi - wi / 2, yi - 1.2, xi + wi / 2, yi + 1.2], fill=c.pal["cloud"] + (210,))
