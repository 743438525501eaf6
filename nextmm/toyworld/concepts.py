"""The toyworld's concepts: what each scene looks, sounds and moves like.

A concept is data: a palette of named colours, the layers painted back to front (painters in
nextmm.toyworld.render), the horizon, a sound (synthesiser in nextmm.toyworld.sound) and a motion. Every
sample jitters these (colours, positions, counts, tint, pitch, tempo), but each concept keeps its own
layout, palette, spectrum and motion, so that a tiny encoder can tell all of them apart. The docs table
(docs/toyworld.md) is `concept_table()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Sound:
    kind: str  # synthesiser name in nextmm.toyworld.sound.SOUNDS
    band: tuple[float, float]  # Hz: at least 70 % of the energy lies here (tests check it)
    tonal: bool  # clear spectral peaks (music, bells, crickets, engine) rather than noise
    description: str


@dataclass(frozen=True)
class Motion:
    description: str
    direction: tuple[int, int] | None = None  # (dy, dx) signs of the main movers' motion, when they share one


@dataclass(frozen=True, eq=False)
class Concept:
    name: str
    looks: str
    palette: Mapping[str, RGB]
    layers: tuple[str, ...]  # painter names, back to front, over the sky gradient (sky_top [sky_mid] sky_bottom)
    horizon: float  # fraction of the height where the sky ends
    sound: Sound
    motion: Motion


CONCEPTS: dict[str, Concept] = {
    c.name: c
    for c in (
        Concept(
            name="beach",
            looks="light-blue sky, yellow sun, blue sea band with white wave crests, sandy shore, a surfer on a board",
            palette={"sky_top": (70, 140, 225), "sky_bottom": (175, 215, 245), "sun": (255, 225, 80),
                     "sea": (25, 105, 185), "sea_light": (60, 150, 210), "foam": (245, 250, 255),
                     "sand": (232, 208, 150), "board": (235, 80, 40), "surfer": (40, 30, 30)},
            layers=("sun", "sea", "sand", "waves", "surfer"),
            horizon=0.4,
            sound=Sound("waves", (120.0, 2500.0), False,
                        "waves: noise band 150-2000 Hz swelling 0.4-0.8 times a second, a hiss of spray at each crest"),
            motion=Motion("wave crests roll towards the shore; the surfer glides left to right"),
        ),
        Concept(
            name="forest",
            looks="pale sky strip, dark-green floor, many green triangle trees with brown trunks, small dark birds",
            palette={"sky_top": (120, 170, 200), "sky_bottom": (200, 225, 205), "ground": (45, 85, 35),
                     "tree_far": (35, 90, 55), "tree": (25, 120, 50), "trunk": (95, 60, 30), "bird": (40, 35, 30)},
            layers=("ground", "trees_far", "trees", "birds"),
            horizon=0.32,
            sound=Sound("birdsong", (1300.0, 4200.0), True,
                        "birdsong: groups of rising sine chirps sweeping from about 1.7 to 3.5 kHz"),
            motion=Motion("trees sway in the breeze; birds flit between them"),
        ),
        Concept(
            name="city",
            looks="grey-blue sky, grey and brown block buildings with lit yellow windows, dark road, coloured cars",
            palette={"sky_top": (150, 170, 195), "sky_bottom": (205, 210, 218), "building_a": (110, 110, 120),
                     "building_b": (140, 105, 85), "building_c": (85, 95, 115), "window": (250, 220, 110),
                     "road": (60, 60, 65), "lane": (235, 235, 235)},
            layers=("buildings", "road", "cars"),
            horizon=0.78,
            sound=Sound("engine", (30.0, 700.0), True,
                        "traffic: low harmonic engine hum (fundamental 35-70 Hz) over a rumble, a car passing"),
            motion=Motion("cars drive along the road, left to right", (0, 1)),
        ),
        Concept(
            name="snow",
            looks="pale grey sky, white ground, dark pine trees with white caps, white snowflakes everywhere",
            palette={"sky_top": (170, 180, 198), "sky_bottom": (222, 228, 236), "ground": (240, 243, 250),
                     "tree": (35, 75, 55), "snow": (252, 252, 255)},
            layers=("ground", "pines", "snowfall"),
            horizon=0.55,
            sound=Sound("footsteps", (400.0, 4000.0), False,
                        "footsteps crunching: granular noise bursts (500-3500 Hz) about twice a second"),
            motion=Motion("snowflakes drift down slowly, swaying sideways", (1, 0)),
        ),
        Concept(
            name="night",
            looks="navy-black sky with twinkling stars, pale crescent moon, black hills",
            palette={"sky_top": (8, 10, 35), "sky_bottom": (30, 40, 85), "moon": (240, 238, 200),
                     "star": (255, 255, 225), "hill": (12, 22, 20)},
            layers=("stars", "moon", "hills"),
            horizon=0.72,
            sound=Sound("crickets", (4000.0, 6200.0), True,
                        "crickets: pulsed tones at 4.5-5.5 kHz, three or four pulses per chirp, near silence between"),
            motion=Motion("stars twinkle"),
        ),
        Concept(
            name="desert",
            looks="pale sky, white-hot sun, orange-yellow dunes, green cacti, a rolling tumbleweed, blowing sand",
            palette={"sky_top": (115, 170, 230), "sky_bottom": (238, 228, 200), "sun": (255, 250, 215),
                     "dune_far": (225, 180, 105), "dune_near": (205, 150, 75), "cactus": (60, 130, 60),
                     "tumbleweed": (120, 85, 45), "dust": (240, 215, 160)},
            layers=("sun", "dunes", "cacti", "sand_blow", "tumbleweed"),
            horizon=0.5,
            sound=Sound("wind", (20.0, 1300.0), False,
                        "dry wind: low-passed noise (under 400 Hz) in gusts with a whistle at 650-1000 Hz"),
            motion=Motion("wind blows sand and a tumbleweed left to right", (0, 1)),
        ),
        Concept(
            name="rain",
            looks="dark grey sky and clouds, wet dark ground with puddles, light slanted rain streaks",
            palette={"sky_top": (65, 70, 80), "sky_bottom": (120, 125, 135), "cloud": (85, 88, 98),
                     "ground": (55, 65, 72), "puddle": (95, 115, 135), "rain": (190, 200, 220)},
            layers=("storm_clouds", "ground", "puddles", "rainfall"),
            horizon=0.6,
            sound=Sound("rain", (1800.0, 8000.0), False,
                        "rain: steady high-passed hiss (above 2 kHz) with dense crackles of drops"),
            motion=Motion("rain streaks fall fast; ripples spread on the puddles", (1, 0)),
        ),
        Concept(
            name="concert",
            looks="dark purple hall, a lit stage with a performer, sweeping coloured spotlights, a black crowd",
            palette={"sky_top": (20, 5, 35), "sky_bottom": (50, 12, 65), "stage": (90, 55, 35),
                     "performer": (15, 10, 20), "light_a": (255, 60, 200), "light_b": (60, 220, 255),
                     "light_c": (255, 230, 70), "crowd": (5, 5, 10)},
            layers=("stage", "spotlights", "crowd"),
            horizon=1.0,
            sound=Sound("lively_music", (40.0, 2500.0), True,
                        "lively music: fast major-key square-wave melody (126-150 bpm) over bass, kick and hi-hat"),
            motion=Motion("spotlights sweep and change colour; the crowd bounces to the beat"),
        ),
        Concept(
            name="meadow",
            looks="bright blue sky, white clouds, wide light-green field dotted with red, yellow, white and purple "
                  "flowers, bees",
            palette={"sky_top": (80, 160, 235), "sky_bottom": (185, 222, 250), "cloud": (250, 250, 252),
                     "ground": (115, 195, 70), "flower_a": (230, 50, 60), "flower_b": (250, 220, 50),
                     "flower_c": (250, 250, 250), "flower_d": (160, 80, 200), "bee": (250, 200, 20)},
            layers=("clouds", "ground", "flowers", "bees"),
            horizon=0.45,
            sound=Sound("bees", (150.0, 2600.0), True,
                        "bees buzzing: sawtooth buzz at 190-250 Hz with vibrato, swelling as bees pass"),
            motion=Motion("clouds drift; bees zigzag over the flowers"),
        ),
        Concept(
            name="mountain",
            looks="deep-blue sky, large grey peaks with white snowcaps, green valley, drifting clouds",
            palette={"sky_top": (55, 115, 200), "sky_bottom": (160, 200, 235), "rock": (115, 115, 128),
                     "rock_dark": (85, 85, 100), "snowcap": (248, 250, 255), "ground": (70, 130, 70),
                     "cloud": (245, 245, 250)},
            layers=("peaks", "ground", "clouds"),
            horizon=0.72,
            sound=Sound("bells", (500.0, 6000.0), True,
                        "cowbells: struck inharmonic partials (1, 2, 2.76, 4.07, 5.4 x 600-950 Hz) ringing out"),
            motion=Motion("clouds drift across the peaks, left to right", (0, 1)),
        ),
        Concept(
            name="sunset",
            looks="purple-to-orange sky, a large orange-red sun low on the horizon, dark purple hills, "
                  "thin pink clouds",
            palette={"sky_top": (70, 35, 100), "sky_mid": (225, 105, 75), "sky_bottom": (250, 185, 95),
                     "sun": (250, 95, 40), "hill": (55, 25, 60), "cloud": (240, 140, 160)},
            layers=("sinking_sun", "streak_clouds", "hills"),
            horizon=0.7,
            sound=Sound("calm_music", (60.0, 1500.0), True,
                        "calm music: slow soft sine-pad chords (roots 130-200 Hz) with a few high bell notes"),
            motion=Motion("the sun sinks slowly; thin clouds drift"),
        ),
    )
}

CONCEPT_NAMES: tuple[str, ...] = tuple(CONCEPTS)


def get_concept(name: str) -> Concept:
    if name not in CONCEPTS:
        raise ValueError(f"unknown toyworld concept {name!r}: use one of {', '.join(CONCEPT_NAMES)}")
    return CONCEPTS[name]


def concept_table() -> str:
    """The docs table: one Markdown row per concept."""
    rows = ["| concept | looks (colours, layout) | sound | spectrum | moves |", "|---|---|---|---|---|"]
    for c in CONCEPTS.values():
        lo, hi = c.sound.band
        kind = "tonal peaks" if c.sound.tonal else "noise, no tonal peaks"
        spectrum = f">= 70 % of the energy in {lo:.0f}-{hi:.0f} Hz; {kind}"
        rows.append(f"| {c.name} | {c.looks} | {c.sound.description} | {spectrum} | {c.motion.description} |")
    return "\n".join(rows)
