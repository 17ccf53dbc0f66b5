"""A procedurally generated, GTSRB-like traffic-sign data set that needs no download.

The paper (Mahlau & Nolde 2022, Sec. 5) evaluates aggregations on the German Traffic Sign
Recognition Benchmark (GTSRB, 43 classes) with a ResNet18. GTSRB is not always available offline,
so tfagg ships this synthetic stand-in with the *same 43 classes* (index = GTSRB ``ClassId``,
names as in the GTSRB meta data) and, unlike GTSRB, exact ground truth for where the evidence is:
a sign mask and a glyph mask per image. The paper does not use it; it is tfagg's built-in
offline benchmark.

How a sign is made
------------------
Every class is described by a :class:`_SignSpec`: an outline shape (circle, upright or inverted
triangle, octagon, diamond), an edge / border / fill colour with widths, and a glyph -- a small
hand-drawn bitmap (ASCII art below) with per-texel colours -- plus, for the "end of ..." signs,
analytic diagonal stripes. As on real signs, shape + colours + glyph decide the class:

* red-bordered white discs with digits (speed limits 0-5, 7, 8) or pictograms (9, 10, 16),
  the plain one is "No vehicles" (15);
* red-bordered white triangles with black pictograms (warnings 11, 18-31); inverted = Yield (13);
* red octagon with white "STOP" (14); yellow diamond with white border (Priority road, 12);
* red disc with a white bar (No entry, 17); blue discs with white arrows (33-40);
* white discs with a grey glyph and black diagonal stripes (end-of signs 6, 32, 41, 42).

Rendering is vectorised in numpy over a chunk of images: each pixel centre is mapped by the
inverse of the sign's affine pose into the sign's local frame (unit radius), where the outline is
a signed distance function (SDF); coverage ``clip(0.5 - d * px_per_unit / softness, 0, 1)`` gives
anti-aliased, randomly soft edges. Glyph texels are looked up with bilinear interpolation in the
local frame; the interpolated coverage is re-sharpened to a ~1 px ramp (so the bitmap's 0.5
iso-line, not its texel grid, is the glyph outline) when a texel is larger than a pixel.

Masks
-----
``masks`` (sign mask): pixel centres inside the sign outline, border included.
``glyph_masks``: pixel centres where the class-deciding glyph covers more than half of the pixel
(interpolated bitmap coverage > 0.5 or stripe coverage > 0.5), clipped to the sign's inner field.
For classes decided by shape and colour alone -- 12 Priority road, 13 Yield, 15 No vehicles --
there is no glyph, and the glyph mask is the decisive *inner field* (the yellow diamond, the white
inner triangle, the white inner disc). The glyph mask always lies inside the sign mask; it was
non-empty for all of 4,300 images at 32 px, but at 16-24 px thin glyphs of the smallest signs can
fall between pixel centres (19 of 4,300 images empty at 16 px, 1 at 24 px).

Scene variation
---------------
Background: a smooth field (a 5x5 grid of colours -- two scene tints, e.g. sky over foliage,
road, building, brick, with a random horizon -- upsampled by a cubic B-spline), up to three
clutter ellipses and two lines in other colours (red and blue among them, so colour alone does not
give the class away), and an optional sign post. Pose: sign diameter 40-80 % of the image side,
rotation +-15 deg, mild anisotropic scale and shear, random position with the sign inside the
image. Photometry: faded sign colours, brightness, contrast, colour cast, a linear shading ramp,
blur through a random edge softness (0.6-2 px ramps on outlines and glyphs, 0.6-2.5 px on
clutter) and Gaussian pixel noise.

Determinism
-----------
Image ``i`` of split ``s`` depends only on ``(seed, s, i)``: its random parameters are uniforms
from a counter-based generator keyed by ``tfagg.random.derive_seed(seed, "synth-signs", s)`` and
indexed by ``(i, draw)`` (:func:`image_uniforms`), and its label comes from a permutation of the 43
classes drawn by ``tfagg.random.numpy_rng(seed, "synth-signs", s, "labels", i // 43)`` (labels
cycle through a fresh permutation every 43 images, so every aligned block of 43 is class
balanced). The pixel noise is read at a per-image random offset from one fixed Gaussian texture
per resolution. Hence generating ``[a, b)`` equals slicing a larger generation, the splits and
seeds use different streams, and nothing depends on global RNG state, chunking or call order.

Difficulty: tfagg's ResNet18 (width 16, ImageNet stem, 64 px), trained from scratch with Adam
(warm-up to 3e-3, cosine decay) on 20,000 "train" images for 2 epochs (batch 64; 232 s on one
thread), reached 97.7 % accuracy on 2,000 "test" images; the hardest classes were 30 km/h
(85 %), 80 km/h and 100 km/h (confused with other speed limits) and 42 (with 41).

Speed (one core, numpy, best of 5 runs on a shared 2-core AMD EPYC VM): about 11,000 / 2,900 /
930 images per second wall-clock at 32 / 64 / 128 px (11,400 / 4,100 / 1,400 in CPU time).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from tfagg.data.gtsrb_classes import GTSRB_CLASS_NAMES
from tfagg.data.base import ImageSet
from tfagg.random import derive_seed, numpy_rng
from tfagg.validation import check_positive_int

NAME = "synth-signs"
NUM_CLASSES = 43
SPLITS = ("train", "val", "test")
MIN_RESOLUTION = 16

# Same class semantics and names as GTSRB (index = GTSRB ClassId).
CLASS_NAMES: list[str] = list(GTSRB_CLASS_NAMES)

# ---------------------------------------------------------------------------------------------
# Colours (linear-ish RGB in [0, 1]).
# ---------------------------------------------------------------------------------------------
_RED = (0.80, 0.07, 0.10)
_WHITE = (0.95, 0.95, 0.93)
_BLACK = (0.07, 0.07, 0.08)
_BLUE = (0.05, 0.28, 0.70)
_YELLOW = (0.98, 0.78, 0.08)
_GREY = (0.45, 0.45, 0.45)
_DARK_RIM = (0.20, 0.20, 0.20)
_GREEN = (0.10, 0.62, 0.30)

# Texel colours of the glyph bitmaps. "X" is the class's ink (black, white or grey).
_TEXEL_COLOURS = {"#": _BLACK, "w": _WHITE, "r": _RED, "g": _GREY, "y": _YELLOW, "G": _GREEN}

# Scene tints for the smooth background (top / bottom of a random "horizon").
_SCENE_TINTS = np.array(
    [
        (0.55, 0.72, 0.92),  # blue sky
        (0.76, 0.83, 0.91),  # pale sky
        (0.78, 0.79, 0.80),  # overcast
        (0.25, 0.42, 0.18),  # foliage
        (0.12, 0.24, 0.10),  # dark foliage
        (0.38, 0.38, 0.40),  # asphalt
        (0.60, 0.60, 0.58),  # concrete
        (0.74, 0.64, 0.50),  # beige facade
        (0.55, 0.27, 0.20),  # brick (reddish distractor)
        (0.20, 0.20, 0.30),  # dusk
        (0.30, 0.42, 0.58),  # glass facade (bluish distractor)
        (0.80, 0.72, 0.55),  # sand
    ],
    np.float32,
)
# Colours of clutter blobs and lines; saturated red / blue / yellow / white so that colour alone
# does not reveal a sign class.
_CLUTTER_COLOURS = np.array(
    [
        (0.75, 0.10, 0.10),
        (0.10, 0.25, 0.68),
        (0.92, 0.76, 0.15),
        (0.92, 0.92, 0.90),
        (0.08, 0.08, 0.08),
        (0.20, 0.45, 0.20),
        (0.45, 0.30, 0.18),
        (0.92, 0.45, 0.10),
        (0.55, 0.55, 0.55),
        (0.55, 0.70, 0.90),
    ],
    np.float32,
)

# ---------------------------------------------------------------------------------------------
# Glyph bitmaps. One character per texel; "." is transparent.
# ---------------------------------------------------------------------------------------------


def _art(text: str) -> tuple:
    rows = tuple(line.strip() for line in text.strip().splitlines())
    if len({len(r) for r in rows}) != 1:
        raise AssertionError(f"ragged glyph art: {rows}")
    return rows


def _mirror(art: tuple) -> tuple:
    return tuple(r[::-1] for r in art)


def _recolour(art: tuple, mapping: dict) -> tuple:
    return tuple("".join(mapping.get(c, c) for c in r) for r in art)


def _hcat(*arts: tuple, gap: int = 1) -> tuple:
    """Place bitmaps side by side, bottom-aligned, ``gap`` transparent columns apart."""
    height = max(len(a) for a in arts)
    padded = [("." * len(a[0]),) * (height - len(a)) + a for a in arts]
    return tuple(("." * gap).join(rows) for rows in zip(*padded))


# 5x7 digits (only those the speed-limit signs need).
_DIGITS = {
    "0": _art(".XXX. X...X X...X X...X X...X X...X .XXX.".replace(" ", "\n")),
    "1": _art("..X.. .XX.. X.X.. ..X.. ..X.. ..X.. XXXXX".replace(" ", "\n")),
    "2": _art(".XXX. X...X ....X ...X. ..X.. .X... XXXXX".replace(" ", "\n")),
    "3": _art("XXXX. ....X ....X .XXX. ....X ....X XXXX.".replace(" ", "\n")),
    "5": _art("XXXXX X.... XXXX. ....X ....X X...X .XXX.".replace(" ", "\n")),
    "6": _art(".XXX. X.... X.... XXXX. X...X X...X .XXX.".replace(" ", "\n")),
    "7": _art("XXXXX ....X ...X. ..X.. .X... .X... .X...".replace(" ", "\n")),
    "8": _art(".XXX. X...X X...X .XXX. X...X X...X .XXX.".replace(" ", "\n")),
}
# 3x5 letters for "STOP".
_LETTERS = {
    "S": _art("XXX X.. XXX ..X XXX".replace(" ", "\n")),
    "T": _art("XXX .X. .X. .X. .X.".replace(" ", "\n")),
    "O": _art("XXX X.X X.X X.X XXX".replace(" ", "\n")),
    "P": _art("XXX X.X XXX X.. X..".replace(" ", "\n")),
}


def _text(string: str, font: dict) -> tuple:
    return _hcat(*(font[c] for c in string))


_CAR = _art(
    """
    .XXX.
    X...X
    XXXXX
    XXXXX
    X...X
    """
)
_CAR_HOLLOW = _art(
    """
    .XXX.
    X...X
    X...X
    X...X
    XXXXX
    """
)
_TRUCK_FRONT = _art(
    """
    XXXXX
    X...X
    XXXXX
    XXXXX
    XXXXX
    XXXXX
    X...X
    """
)
_TRUCK_SIDE = _art(
    """
    #######....
    #######.##.
    #######.#.#
    ###########
    ###########
    .##.....##.
    """
)
_RIGHT_OF_WAY = _art(
    """
    ...XXX...
    ...XXX...
    ...XXX...
    XXXXXXXXX
    ...XXX...
    ...XXX...
    ...XXX...
    ...XXX...
    """
)
_EXCLAMATION = _art(
    """
    XX
    XX
    XX
    XX
    XX
    ..
    XX
    """
)
_CURVE_LEFT = _art(
    """
    .X.......
    XXXXXXX..
    .XXXXXXX.
    .....XXX.
    ......XX.
    ......XX.
    ......XX.
    ......XX.
    """
)
_DOUBLE_CURVE = _art(
    """
    ...XXXX.
    ..XX....
    ..XX....
    ...XXX..
    .....XX.
    .....XX.
    ...XXX..
    ..XX....
    ..XX....
    """
)
_BUMPY = _art(
    """
    ..XX...XX..
    .XXXX.XXXX.
    XXXXXXXXXXX
    XXXXXXXXXXX
    """
)
_SLIPPERY = _art(
    """
    ..XXXXX..
    .XX...XX.
    .XXXXXXX.
    .X.....X.
    .........
    XX.XX.XX.
    .XX.XX.XX
    """
)
_NARROWS_RIGHT = _art(
    """
    XX...XX..
    XX...XX..
    XX...XX..
    XX....XX.
    XX.....XX
    XX.....XX
    XX.....XX
    """
)
_ROAD_WORK = _art(
    """
    ....XX.....
    ....XX.....
    ..XXXX.....
    .X.XXXXX...
    ...XX...X..
    ...XX....X.
    ..X..X..XXX
    .XX..XX.XXX
    """
)
_TRAFFIC_LIGHT = _art(
    """
    .###.
    #rrr#
    #rrr#
    #yyy#
    #yyy#
    #GGG#
    #GGG#
    .###.
    """
)
_PEDESTRIAN = _art(
    """
    ...XX..
    ...XX..
    ..XXX..
    .X.XXX.
    ...XX.X
    ...XX..
    ..X..X.
    ..X...X
    .X....X
    """
)
_CHILDREN = _art(
    """
    ..XX.......
    ..XX.......
    .XXXX...XX.
    X.XX.X..XX.
    ..XX...XXXX
    .X..X...XX.
    .X..X..X..X
    X....X.X..X
    """
)
_BICYCLE = _art(
    """
    ......XX...
    ...X..X....
    ...XXXXX...
    .XXX.X.XXX.
    X..XX.X...X
    X...X.....X
    .XXX...XXX.
    """
)
_SNOWFLAKE = _art(
    """
    X...X...X
    .X..X..X.
    ..X.X.X..
    ...XXX...
    XXXXXXXXX
    ...XXX...
    ..X.X.X..
    .X..X..X.
    X...X...X
    """
)
_DEER = _art(
    """
    X.X........
    .XX........
    .XXX.......
    ..XXXXXXX..
    ...XXXXXXX.
    ...X....XX.
    ..X......X.
    .X........X
    """
)
_TURN_RIGHT = _art(
    """
    .....X...
    .....XX..
    .XXXXXXX.
    .XXXXXXXX
    .XXXXXXX.
    .XX..XX..
    .XX..X...
    .XX......
    .XX......
    """
)
_AHEAD = _art(
    """
    ...X...
    ..XXX..
    .XXXXX.
    XXXXXXX
    ..XXX..
    ..XXX..
    ..XXX..
    ..XXX..
    ..XXX..
    """
)
_STRAIGHT_OR_RIGHT = _art(
    """
    ..X......
    .XXX.....
    XXXXX..X.
    .XXX...XX
    .XXXXXXXX
    .XXX...XX
    .XXX...X.
    .XXX.....
    .XXX.....
    """
)
_KEEP_RIGHT = _art(
    """
    XX.......
    XXX......
    .XXX.....
    ..XXX..XX
    ...XXX.XX
    ....XXXXX
    .....XXXX
    ..XXXXXXX
    ..XXXXXXX
    """
)
_ROUNDABOUT = _art(
    """
    ....XXXX...
    ..XX...XX..
    .X......XXX
    .X.......X.
    X..........
    X.........X
    ..........X
    .X.......X.
    XXX......X.
    ..XX...XX..
    ...XXXX....
    """
)
_NO_ENTRY_BAR = _art(
    """
    XXXXXXX
    XXXXXXX
    """
)

# ---------------------------------------------------------------------------------------------
# Class specifications.
# ---------------------------------------------------------------------------------------------
CIRCLE, TRIANGLE_UP, TRIANGLE_DOWN, OCTAGON, DIAMOND = range(5)

# Geometry of the outlines in the sign's local frame (unit = circle radius; y points down).
_TRI_SIDE = 2.1
_TRI_INRADIUS = _TRI_SIDE / (2.0 * math.sqrt(3.0))
_TRI_CENTROID_Y = _TRI_SIDE * math.sqrt(3.0) / 2.0 / 6.0  # centroid below the bounding-box centre
_TRI_CORNER_CLIP = 0.9 * 2.0 * _TRI_INRADIUS  # circle that rounds the triangle's corners
_OCTAGON_INRADIUS = 0.97
_DIAMOND_INRADIUS = 0.74
_LOCAL_HALF_EXTENT = 1.05  # every outline fits in [-1.05, 1.05]^2


@dataclass(frozen=True)
class _SignSpec:
    """What a class looks like.

    Widths are in local units (circle radius = 1), measured inward from the outline: the
    ``edge`` band is ``[0, edge_width]``, the ``border`` band ``[edge_width, border_width]``,
    the fill is deeper than ``border_width``. ``glyph_box`` = (cx, cy, half_width, half_height)
    is the local-frame box the glyph bitmap is fitted into (aspect kept).
    """

    shape: int
    border: tuple
    fill: tuple
    border_width: float
    edge: Optional[tuple] = None  # defaults to the border colour
    edge_width: float = 0.0
    glyph: Optional[tuple] = None
    ink: str = "#"
    glyph_box: tuple = (0.0, 0.0, 0.56, 0.56)
    stripes: bool = False

    @property
    def glyph_is_fill(self) -> bool:
        """Shape/colour-only classes: the inner field is the decisive element."""
        return self.glyph is None and not self.stripes


_SPEED_BOX_2 = (0.0, 0.0, 0.60, 0.40)
_SPEED_BOX_3 = (0.0, 0.0, 0.68, 0.30)
_TRI_BOX = (0.0, 0.31, 0.41, 0.41)
_BLUE_BOX = (0.0, 0.0, 0.60, 0.60)


def _speed(number: str) -> _SignSpec:
    box = _SPEED_BOX_2 if len(number) == 2 else _SPEED_BOX_3
    return _SignSpec(CIRCLE, _RED, _WHITE, 0.18, glyph=_text(number, _DIGITS), glyph_box=box)


def _prohibition(glyph, box=(0.0, 0.0, 0.56, 0.56)) -> _SignSpec:
    return _SignSpec(CIRCLE, _RED, _WHITE, 0.18, glyph=glyph, glyph_box=box)


def _warning(glyph) -> _SignSpec:
    return _SignSpec(TRIANGLE_UP, _RED, _WHITE, 0.16, glyph=glyph, glyph_box=_TRI_BOX)


def _mandatory(glyph) -> _SignSpec:
    return _SignSpec(CIRCLE, _BLUE, _BLUE, 0.05, edge=_WHITE, edge_width=0.05, glyph=glyph,
                     ink="w", glyph_box=_BLUE_BOX)


def _end_of(glyph, box=(0.0, 0.0, 0.56, 0.56)) -> _SignSpec:
    return _SignSpec(CIRCLE, _WHITE, _WHITE, 0.04, edge=_DARK_RIM, edge_width=0.04, glyph=glyph,
                     ink="g", glyph_box=box, stripes=True)


_NO_PASSING = _hcat(_recolour(_CAR, {"X": "r"}), _recolour(_CAR, {"X": "#"}))
_NO_PASSING_TRUCKS = _hcat(_recolour(_TRUCK_FRONT, {"X": "r"}), _recolour(_CAR, {"X": "#"}))

_CLASS_SPECS: tuple = (
    _speed("20"),  # 0
    _speed("30"),  # 1
    _speed("50"),  # 2
    _speed("60"),  # 3
    _speed("70"),  # 4
    _speed("80"),  # 5
    _end_of(_text("80", _DIGITS), box=_SPEED_BOX_2),  # 6
    _speed("100"),  # 7
    _speed("120"),  # 8
    _prohibition(_NO_PASSING, box=(0.0, 0.0, 0.62, 0.62)),  # 9
    _prohibition(_NO_PASSING_TRUCKS, box=(0.0, 0.0, 0.60, 0.60)),  # 10
    _warning(_RIGHT_OF_WAY),  # 11
    _SignSpec(DIAMOND, _WHITE, _YELLOW, 0.20, edge=_DARK_RIM, edge_width=0.04),  # 12
    _SignSpec(TRIANGLE_DOWN, _RED, _WHITE, 0.20),  # 13
    _SignSpec(OCTAGON, _RED, _RED, 0.06, edge=_WHITE, edge_width=0.06,
              glyph=_text("STOP", _LETTERS), ink="w", glyph_box=(0.0, 0.0, 0.72, 0.30)),  # 14
    _SignSpec(CIRCLE, _RED, _WHITE, 0.20),  # 15
    _prohibition(_TRUCK_SIDE, box=(0.0, 0.0, 0.60, 0.60)),  # 16
    _SignSpec(CIRCLE, _RED, _RED, 0.05, edge=_WHITE, edge_width=0.05, glyph=_NO_ENTRY_BAR,
              ink="w", glyph_box=(0.0, 0.0, 0.62, 0.62)),  # 17
    _warning(_EXCLAMATION),  # 18
    _warning(_CURVE_LEFT),  # 19
    _warning(_mirror(_CURVE_LEFT)),  # 20
    _warning(_DOUBLE_CURVE),  # 21
    _warning(_BUMPY),  # 22
    _warning(_SLIPPERY),  # 23
    _warning(_NARROWS_RIGHT),  # 24
    _warning(_ROAD_WORK),  # 25
    _warning(_TRAFFIC_LIGHT),  # 26
    _warning(_PEDESTRIAN),  # 27
    _warning(_CHILDREN),  # 28
    _warning(_BICYCLE),  # 29
    _warning(_SNOWFLAKE),  # 30
    _warning(_DEER),  # 31
    _end_of(None),  # 32
    _mandatory(_TURN_RIGHT),  # 33
    _mandatory(_mirror(_TURN_RIGHT)),  # 34
    _mandatory(_AHEAD),  # 35
    _mandatory(_STRAIGHT_OR_RIGHT),  # 36
    _mandatory(_mirror(_STRAIGHT_OR_RIGHT)),  # 37
    _mandatory(_KEEP_RIGHT),  # 38
    _mandatory(_mirror(_KEEP_RIGHT)),  # 39
    _mandatory(_ROUNDABOUT),  # 40
    _end_of(_hcat(_CAR_HOLLOW, _CAR), box=(0.0, 0.0, 0.62, 0.62)),  # 41
    _end_of(_hcat(_TRUCK_FRONT, _CAR), box=(0.0, 0.0, 0.60, 0.60)),  # 42
)
assert len(_CLASS_SPECS) == NUM_CLASSES == len(CLASS_NAMES)
assert all(s.edge_width <= s.border_width for s in _CLASS_SPECS)  # bands are nested

# Diagonal stripes of the end-of signs: lines running from lower left to upper right.
_STRIPE_COUNT = 5
_STRIPE_SPACING = 0.12
_STRIPE_HALF_WIDTH = 0.028
_STRIPE_COLOUR = (0.10, 0.10, 0.10)


@dataclass(frozen=True)
class _ClassTables:
    """Per-class lookup arrays (index = label) used by the vectorised renderer."""

    shape: np.ndarray  # (C,) int
    edge: np.ndarray  # (C, 3)
    border: np.ndarray  # (C, 3)
    fill: np.ndarray  # (C, 3)
    edge_width: np.ndarray  # (C,)
    border_width: np.ndarray  # (C,)
    glyph_is_fill: np.ndarray  # (C,) bool
    stripes: np.ndarray  # (C,) bool
    has_glyph: np.ndarray  # (C,) bool
    atlas: np.ndarray  # (4, C * H * W) premultiplied R, G, B and coverage, flattened planes
    atlas_hw: tuple  # (H, W)
    glyph_origin: np.ndarray  # (C, 2) local (x, y) of the atlas texel-space origin
    glyph_texels_per_unit: np.ndarray  # (C,) texels per local unit


@functools.lru_cache(maxsize=1)
def _class_tables() -> _ClassTables:
    """Build the per-class arrays and the glyph atlas (one RGBA bitmap per class)."""
    arts = [s.glyph for s in _CLASS_SPECS if s.glyph is not None]
    height = max(len(a) for a in arts) + 2  # >= 1 transparent texel around every glyph, so
    width = max(len(a[0]) for a in arts) + 2  # bilinear lookups fade to 0 at the box edge
    atlas = np.zeros((NUM_CLASSES, height, width, 4), np.float32)
    origin = np.zeros((NUM_CLASSES, 2), np.float32)
    texels_per_unit = np.ones((NUM_CLASSES,), np.float32)
    for c, spec in enumerate(_CLASS_SPECS):
        if spec.glyph is None:
            origin[c] = (1e3, 1e3)  # maps every pixel far outside the atlas
            continue
        art = _recolour(spec.glyph, {"X": spec.ink})
        rows, cols = len(art), len(art[0])
        top, left = (height - rows) // 2, (width - cols) // 2
        for y, row in enumerate(art):
            for x, ch in enumerate(row):
                if ch != ".":
                    atlas[c, top + y, left + x, :3] = _TEXEL_COLOURS[ch]
                    atlas[c, top + y, left + x, 3] = 1.0
        cx, cy, half_w, half_h = spec.glyph_box
        unit_per_texel = min(2 * half_w / cols, 2 * half_h / rows)
        texels_per_unit[c] = 1.0 / unit_per_texel
        # Local point that maps to texel-space (0, 0): the art's centre sits at the box centre.
        origin[c] = (cx - (left + cols / 2) * unit_per_texel, cy - (top + rows / 2) * unit_per_texel)
    f32 = lambda key: np.array([getattr(s, key) for s in _CLASS_SPECS], np.float32)  # noqa: E731
    return _ClassTables(
        shape=np.array([s.shape for s in _CLASS_SPECS], np.int64),
        edge=np.array([s.edge if s.edge is not None else s.border for s in _CLASS_SPECS], np.float32),
        border=np.array([s.border for s in _CLASS_SPECS], np.float32),
        fill=np.array([s.fill for s in _CLASS_SPECS], np.float32),
        edge_width=f32("edge_width"),
        border_width=f32("border_width"),
        glyph_is_fill=np.array([s.glyph_is_fill for s in _CLASS_SPECS]),
        stripes=np.array([s.stripes for s in _CLASS_SPECS]),
        has_glyph=np.array([s.glyph is not None for s in _CLASS_SPECS]),
        atlas=np.ascontiguousarray(atlas.reshape(-1, 4).T),
        atlas_hw=(height, width),
        glyph_origin=origin,
        glyph_texels_per_unit=texels_per_unit,
    )


# ---------------------------------------------------------------------------------------------
# Random parameters.
# ---------------------------------------------------------------------------------------------
_BG_GRID = 5  # control points per side of the smooth background field
_N_BLOBS = 3
_N_LINES = 2
_N_UNIFORMS = 160  # uniforms drawn per image (fixed, so adding a draw never shifts others)


def _check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}; got {split!r}")
    return split


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an integer; got {seed!r}")
    return int(seed)


def class_labels(indices, seed: int = 0, split: str = "train") -> np.ndarray:
    """Labels of images ``indices`` of a split: block ``k = i // 43`` is a seeded permutation.

    Every aligned block of 43 consecutive images holds each class exactly once, so any ``n``
    images are balanced to within one image per class (up to two for unaligned windows).
    """
    _check_split(split)
    indices = np.asarray(indices, np.int64)
    labels = np.empty(indices.shape, np.int32)
    blocks = indices // NUM_CLASSES
    for block in np.unique(blocks):
        perm = numpy_rng(seed, NAME, split, "labels", int(block)).permutation(NUM_CLASSES)
        sel = blocks == block
        labels[sel] = perm[indices[sel] % NUM_CLASSES]
    return labels


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 output function (Steele et al. 2014), vectorised over uint64 arrays."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def image_uniforms(indices, k: int, seed: int = 0, split: str = "train") -> np.ndarray:
    """(len(indices), k) float64 uniforms in [0, 1); row j depends only on (seed, split, indices[j]).

    A counter-based generator: the stream key is ``tfagg.random.derive_seed(seed, "synth-signs",
    split)`` and draw ``m`` of image ``i`` is SplitMix64(SplitMix64(key ^ SplitMix64(i)) + m * phi).
    It is vectorised over images, ~10x cheaper than building one ``numpy.random.Generator`` per
    image (18 us), which would otherwise be a sizeable part of rendering a 64 px image.
    """
    key = np.uint64(derive_seed(seed, NAME, split))
    index = np.asarray(indices, np.int64).astype(np.uint64)
    state = _splitmix64(key ^ _splitmix64(index))
    bits = _splitmix64(state[:, None] + np.arange(k, dtype=np.uint64)[None, :] * _GOLDEN)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class _Uniforms:
    """Hands out consecutive columns of the per-image uniform matrix by name of use."""

    def __init__(self, u: np.ndarray):
        self.u, self.at = u, 0

    def take(self, k: int = 1, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        cols = self.u[:, self.at:self.at + k]
        self.at += k
        if self.at > self.u.shape[1]:
            raise AssertionError("increase _N_UNIFORMS")
        out = (lo + (hi - lo) * cols).astype(np.float32)
        return out[:, 0] if k == 1 else out


def _draw_parameters(indices: np.ndarray, resolution: int, seed: int, split: str) -> dict:
    """All random choices for images ``indices``; row ``j`` depends only on (seed, split, i_j)."""
    n, res = len(indices), float(resolution)
    draw = _Uniforms(image_uniforms(indices, _N_UNIFORMS, seed, split))
    p = {"label": class_labels(indices, seed, split)}

    # Pose: p_pixel = centre + A @ u_local, A = radius * R(theta) @ [[sx, shear], [0, sy]].
    radius = res * draw.take(1, 0.20, 0.40)  # diameter 40-80 % of the side
    theta = np.deg2rad(draw.take(1, -15.0, 15.0))
    log_aspect = draw.take(1, -0.10, 0.10)
    shear = draw.take(1, -0.08, 0.08)
    sx, sy = np.exp(log_aspect), np.exp(-log_aspect)
    cos, sin = np.cos(theta), np.sin(theta)
    a = np.empty((n, 2, 2), np.float32)
    a[:, 0, 0] = cos * sx
    a[:, 0, 1] = cos * shear - sin * sy
    a[:, 1, 0] = sin * sx
    a[:, 1, 1] = sin * shear + cos * sy
    a *= radius[:, None, None]
    half_extent = _LOCAL_HALF_EXTENT * np.abs(a).sum(axis=2)  # (n, 2) pixel half-size of the bbox
    lo = np.minimum(half_extent, res / 2)  # a sign larger than the image is centred
    centre = lo + draw.take(2) * (res - 2 * lo)
    p["pose"] = np.concatenate([a, centre[:, :, None]], axis=2).astype(np.float32)  # (n, 2, 3)
    p["px_per_unit"] = radius
    p["softness"] = draw.take(1, 0.6, 2.0)  # pixels over which an outline ramps (blur)

    # Faded / tinted sign colours.
    p["fade"] = draw.take(1, 0.0, 0.30)
    p["sign_tint"] = draw.take(3, -0.05, 0.05)

    # Background field: two scene tints blended across a random horizon, plus grid jitter.
    tint_pick = np.minimum((draw.take(2) * len(_SCENE_TINTS)).astype(np.int64), len(_SCENE_TINTS) - 1)
    p["bg_top"], p["bg_bottom"] = _SCENE_TINTS[tint_pick[:, 0]], _SCENE_TINTS[tint_pick[:, 1]]
    p["horizon"] = draw.take(1, -0.3, 1.3)
    p["horizon_softness"] = draw.take(1, 0.05, 0.4)
    p["bg_jitter"] = draw.take(1, 0.02, 0.14)[:, None, None, None] * (
        2 * draw.take(_BG_GRID * _BG_GRID * 3) - 1).reshape(n, _BG_GRID, _BG_GRID, 3)

    # Clutter blobs (axis-aligned ellipses) and lines.
    p["blob_on"] = draw.take(_N_BLOBS) < 0.75
    p["blob_centre"] = res * draw.take(2 * _N_BLOBS).reshape(n, _N_BLOBS, 2)
    p["blob_radii"] = res * draw.take(2 * _N_BLOBS, 0.06, 0.32).reshape(n, _N_BLOBS, 2)
    p["blob_colour"] = _CLUTTER_COLOURS[
        np.minimum((draw.take(_N_BLOBS) * len(_CLUTTER_COLOURS)).astype(np.int64), len(_CLUTTER_COLOURS) - 1)]
    p["blob_opacity"] = draw.take(_N_BLOBS, 0.5, 1.0)
    p["line_on"] = draw.take(_N_LINES) < 0.5
    upright = draw.take(_N_LINES) < 0.6  # poles and facade edges are mostly near vertical
    angle = np.where(upright, np.deg2rad(draw.take(_N_LINES, -12.0, 12.0)),
                     np.deg2rad(draw.take(_N_LINES, 0.0, 180.0)))
    p["line_normal"] = np.stack([np.cos(angle), np.sin(angle)], axis=-1).astype(np.float32)
    p["line_offset"] = res * draw.take(_N_LINES, -0.2, 1.2)
    p["line_half_width"] = draw.take(_N_LINES, 0.3, 1.6)
    p["line_colour"] = _CLUTTER_COLOURS[
        np.minimum((draw.take(_N_LINES) * len(_CLUTTER_COLOURS)).astype(np.int64), len(_CLUTTER_COLOURS) - 1)]
    p["post_on"] = draw.take(1) < 0.5
    p["post_grey"] = draw.take(1, 0.35, 0.7)
    p["post_half_width"] = draw.take(1, 0.05, 0.09)

    # Photometry.
    p["contrast"] = draw.take(1, 0.75, 1.10)
    p["gain"] = draw.take(1, 0.65, 1.20)[:, None] * draw.take(3, 0.90, 1.10)
    shade_angle = draw.take(1, 0.0, 2 * np.pi)
    p["shade"] = draw.take(1, 0.0, 0.30)[:, None] * np.stack(
        [np.cos(shade_angle), np.sin(shade_angle)], axis=-1) / res
    p["clutter_softness"] = draw.take(1, 0.6, 2.5)
    p["noise_sigma"] = draw.take(1, 0.003, 0.035) * np.where(draw.take(1) < 0.5, -1, 1).astype(np.float32)
    p["noise_offset"] = np.minimum((draw.take(2) * (resolution + 1)).astype(np.int64), resolution)
    return p


# ---------------------------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _upsample_matrix(resolution: int) -> np.ndarray:
    """(R, G) weights of a cubic B-spline through the G background control points."""
    pos = (np.arange(resolution) + 0.5) / resolution * (_BG_GRID - 1)
    dist = np.abs(pos[:, None] - np.arange(_BG_GRID)[None, :])
    w = np.where(dist < 1, 2 / 3 - dist**2 + dist**3 / 2, np.where(dist < 2, (2 - dist) ** 3 / 6, 0.0))
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _noise_texture(resolution: int) -> np.ndarray:
    """A fixed (3, 2R, 2R) N(0, 1) texture; images read R x R windows at seeded offsets."""
    rng = numpy_rng(NAME, "noise-texture", resolution)
    return rng.standard_normal((3, 2 * resolution, 2 * resolution)).astype(np.float32)


def _composite_(img: np.ndarray, colour: np.ndarray, weight: np.ndarray, scratch: np.ndarray) -> None:
    """In place ``img += weight * (colour - img)``, one channel at a time.

    ``img`` is channel-first (n, 3, H, W), ``colour`` (n, 3), ``weight`` and ``scratch``
    (n, H, W). Per-channel passes on contiguous planes with a reused scratch buffer are ~3x
    faster than one broadcast expression (no temporaries) and than gathering covered pixels.
    """
    for c in range(3):
        channel = img[:, c]
        np.subtract(colour[:, c, None, None], channel, out=scratch)
        scratch *= weight
        channel += scratch


def _outline_sdf(shape: int, ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
    """Signed distance (local units, < 0 inside) to the outline of ``shape``.

    Polygons are intersections of half-planes, d = max_k(n_k . u - r): exact inside and on the
    edges, which is all the anti-aliasing ramp (about one pixel) needs.
    """
    if shape == CIRCLE:
        return np.sqrt(ux * ux + uy * uy) - np.float32(1.0)
    ax, ay = np.abs(ux), np.abs(uy)
    if shape == OCTAGON:
        return np.maximum(np.maximum(ax, ay), (ax + ay) * np.float32(math.sqrt(0.5))) - np.float32(_OCTAGON_INRADIUS)
    if shape == DIAMOND:
        return (ax + ay) * np.float32(math.sqrt(0.5)) - np.float32(_DIAMOND_INRADIUS)
    qy = (uy if shape == TRIANGLE_UP else -uy) - np.float32(_TRI_CENTROID_Y)
    d = np.maximum(qy, np.float32(math.sqrt(3.0) / 2) * ax - np.float32(0.5) * qy) - np.float32(_TRI_INRADIUS)
    # Intersecting with a circle about the centroid rounds the corners like a real sign's.
    return np.maximum(d, np.sqrt(ax * ax + qy * qy) - np.float32(_TRI_CORNER_CLIP))


def _px(a: np.ndarray) -> np.ndarray:
    """(n,) per-image scalars -> (n, 1, 1) for (n, H, W) broadcasting."""
    return a[:, None, None]


def _ramp(x: np.ndarray) -> np.ndarray:
    """In place clip(0.5 - x, 0, 1): coverage of a pixel whose centre is x ramp-widths outside."""
    np.subtract(np.float32(0.5), x, out=x)
    return np.clip(x, 0.0, 1.0, out=x)


def _render(p: dict, resolution: int, out: np.ndarray) -> tuple:
    """Render one chunk of images into ``out`` (n, R, R, 3); return (sign masks, glyph masks).

    Works channel-first, (n, 3, R, R): with channels last numpy's innermost loop would be 3
    elements long, which makes broadcast compositing ~10x slower.

    Contrast and colour cast are affine colour maps x -> a x + b; every compositing step is a
    convex combination, which commutes with such a map, so they are applied to the source
    colours (a few numbers per image) instead of to every pixel. Only the spatial shading and
    the noise touch every pixel at the end.
    """
    t = _class_tables()
    res = resolution
    plane = res * res
    n = len(p["label"])
    label = p["label"]
    grid = np.arange(res, dtype=np.float32) + np.float32(0.5)  # pixel-centre coordinates
    gx, gy = grid[None, None, :], grid[None, :, None]
    gain = p["contrast"][:, None] * p["gain"]  # colour map: x -> gain * x + offset
    offset = (0.5 * (1.0 - p["contrast"]))[:, None] * p["gain"]

    def lit(colour):  # (n, ..., 3) source colours -> as seen under this image's colour map
        shape = (n,) + (1,) * (colour.ndim - 2) + (3,)
        return colour * gain.reshape(shape) + offset.reshape(shape)

    # --- background: smooth field = B-spline upsampling of a G x G grid of colours ----------
    rows = (np.arange(_BG_GRID, dtype=np.float32) / (_BG_GRID - 1))[None, :, None, None]
    mix = 1.0 / (1.0 + np.exp(-(rows - p["horizon"][:, None, None, None]) / p["horizon_softness"][:, None, None, None]))
    control = p["bg_top"][:, None, None, :] + mix * (p["bg_bottom"] - p["bg_top"])[:, None, None, :]
    control = lit(control + p["bg_jitter"]).astype(np.float32).transpose(0, 3, 1, 2)  # (n, 3, G, G)
    up = _upsample_matrix(res)
    img = np.matmul(np.matmul(up, control), up.T)  # (n, 3, R, R), C-contiguous
    scratch = np.empty((n, res, res), np.float32)

    # --- clutter ---------------------------------------------------------------------------
    blob_slope = p["blob_radii"].mean(axis=2) / (2.0 * p["clutter_softness"][:, None])  # d(1-q)/dpx
    blob_colour = lit(p["blob_colour"])
    for k in range(_N_BLOBS):
        ex = (gx - _px(p["blob_centre"][:, k, 0])) / _px(p["blob_radii"][:, k, 0])
        ey = (gy - _px(p["blob_centre"][:, k, 1])) / _px(p["blob_radii"][:, k, 1])
        cover = (np.float32(1.0) - ex * ex) - ey * ey  # 1 - q, q = 1 on the ellipse
        cover *= _px(blob_slope[:, k])
        np.clip(cover + np.float32(0.5), 0.0, 1.0, out=cover)
        cover *= _px(p["blob_opacity"][:, k] * p["blob_on"][:, k])
        _composite_(img, blob_colour[:, k], cover, scratch)
    line_colour = lit(p["line_colour"])
    for k in range(_N_LINES):
        dist = gx * _px(p["line_normal"][:, k, 0]) + gy * _px(p["line_normal"][:, k, 1])
        dist -= _px(p["line_offset"][:, k])
        # Coverage of a pixel: clip(half width + 1/2 - distance); -1 switches an absent line off.
        reach = np.where(p["line_on"][:, k], p["line_half_width"][:, k] + np.float32(0.5), np.float32(-1.0))
        cover = _px(reach) - np.abs(dist, out=dist)
        np.clip(cover, 0.0, 1.0, out=cover)
        _composite_(img, line_colour[:, k], cover, scratch)

    # --- sign-local coordinates: u = A^-1 (p - centre) --------------------------------------
    pose = p["pose"]
    inv = np.linalg.inv(pose[:, :, :2].astype(np.float64)).astype(np.float32)
    dx = gx - _px(pose[:, 0, 2])
    dy = gy - _px(pose[:, 1, 2])
    ux = _px(inv[:, 0, 0]) * dx + _px(inv[:, 0, 1]) * dy
    uy = _px(inv[:, 1, 0]) * dx + _px(inv[:, 1, 1]) * dy
    ramp = _px(p["px_per_unit"] / p["softness"])  # local units -> ramp widths
    # Sign post behind the sign (below its centre, in the sign frame).
    post = _ramp((np.abs(ux) - _px(p["post_half_width"])) * ramp)
    post *= (uy > 0) & _px(p["post_on"])
    _composite_(img, lit(np.repeat(p["post_grey"][:, None], 3, axis=1)), post, scratch)

    # --- sign body: edge band, border band, inner field -------------------------------------
    d = np.empty((n, res, res), np.float32)
    shapes = t.shape[label]
    for shape in np.unique(shapes):
        sel = np.flatnonzero(shapes == shape)
        d[sel] = _outline_sdf(int(shape), ux[sel], uy[sel])
    fade = p["fade"][:, None]

    def sign_colour(table):
        c = table[label]
        return lit(np.clip(c + fade * (np.float32(0.78) - c) + p["sign_tint"], 0.0, 1.0))[:, :, None, None]

    inner_d = d + _px(t.border_width[label])  # SDF of the inner field
    sign_mask = d < 0
    inner = inner_d < 0
    cover_outer = _ramp(d * ramp)
    cover_border = _ramp((d + _px(t.edge_width[label])) * ramp)
    cover_inner = _ramp(inner_d * ramp)
    border, fill, edge = sign_colour(t.border), sign_colour(t.fill), sign_colour(t.edge)
    # Weights of the four regions: background, edge band, border band, inner field.
    w_edge = cover_outer - cover_border
    w_border = cover_border - cover_inner
    w_background = np.float32(1.0) - cover_outer
    for c in range(3):
        channel = img[:, c]
        channel *= w_background
        for weight, colour in ((w_edge, edge), (w_border, border), (cover_inner, fill)):
            np.multiply(weight, colour[:, c], out=scratch)
            channel += scratch
    del w_edge, w_border, w_background

    glyph_mask = np.zeros((n, res, res), bool)
    fill_classes = t.glyph_is_fill[label]
    glyph_mask[fill_classes] = inner[fill_classes]

    # --- glyph bitmap: bilinear lookup in the class atlas -----------------------------------
    height, width = t.atlas_hw
    with_glyph = np.flatnonzero(t.has_glyph[label])
    if len(with_glyph):
        lab = label[with_glyph]
        scale = _px(t.glyph_texels_per_unit[lab])
        # Texel-space coordinates, shifted by -0.5 so that integer values hit texel centres.
        tx = (ux[with_glyph] - _px(t.glyph_origin[lab, 0])) * scale - np.float32(0.5)
        ty = (uy[with_glyph] - _px(t.glyph_origin[lab, 1])) * scale - np.float32(0.5)
        inside = (tx >= 0) & (tx < width - 1) & (ty >= 0) & (ty < height - 1)
        flat = np.flatnonzero(inside)  # only pixels over the glyph box do texture work
        which, pixel = np.divmod(flat, plane)  # which: row in with_glyph
        tx, ty = tx.reshape(-1)[flat], ty.reshape(-1)[flat]
        x0, y0 = np.floor(tx), np.floor(ty)
        fx, fy = tx - x0, ty - y0
        base = lab[which] * (height * width) + y0.astype(np.int64) * width + x0.astype(np.int64)
        corners = (base, base + 1, base + width, base + width + 1)
        weights = ((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy)

        def sample(channel):
            texels = t.atlas[channel]
            return sum(w * texels[c] for w, c in zip(weights, corners))

        coverage = sample(3)
        keep = coverage > 0  # pixels on transparent texels need no further work
        coverage, which, pixel = coverage[keep], which[keep], pixel[keep]
        corners = tuple(c[keep] for c in corners)
        weights = tuple(w[keep] for w in weights)
        image_row = with_glyph[which]
        at = image_row * plane + pixel
        # Re-sharpen: when a texel spans s > 1 pixels, the interpolated coverage rises over s
        # pixels; scaling its slope by s gives a ~1 px edge along the 0.5 iso-line.
        px_per_texel = (p["px_per_unit"][with_glyph] / t.glyph_texels_per_unit[lab]
                        / p["softness"][with_glyph])[which]
        alpha = np.clip(0.5 + (coverage - 0.5) * np.maximum(px_per_texel, 1.0), 0.0, 1.0)
        alpha *= cover_inner.reshape(-1)[at]
        inv_coverage = 1.0 / coverage  # un-premultiply the colour
        img_flat = img.reshape(-1)
        for channel in range(3):
            rgb = sample(channel) * inv_coverage * gain[image_row, channel] + offset[image_row, channel]
            at_c = (image_row * 3 + channel) * plane + pixel
            old = img_flat[at_c]
            img_flat[at_c] = old + alpha * (rgb - old)
        glyph_mask.reshape(-1)[at] = (coverage > 0.5) & inner.reshape(-1)[at]

    # --- diagonal stripes of the end-of signs ----------------------------------------------
    striped = np.flatnonzero(t.stripes[label])
    if len(striped):
        along = (ux[striped] + uy[striped]) * np.float32(math.sqrt(0.5))
        half = (_STRIPE_COUNT - 1) / 2
        k = np.clip(np.round(along / np.float32(_STRIPE_SPACING)), -half, half)
        dist = np.abs(along - k * np.float32(_STRIPE_SPACING)) - np.float32(_STRIPE_HALF_WIDTH)
        stripe = _ramp(dist * ramp[striped]) * cover_inner[striped]
        sub = img[striped]
        _composite_(sub, lit(np.broadcast_to(np.float32(_STRIPE_COLOUR), (n, 3)))[striped], stripe,
                    np.empty_like(stripe))
        img[striped] = sub
        glyph_mask[striped] |= (stripe > 0.5) & inner[striped]

    # --- shading, noise, clipping --------------------------------------------------------
    centre = np.float32(res / 2.0)
    shade = 1.0 + (gx - centre) * _px(p["shade"][:, 0]) + (gy - centre) * _px(p["shade"][:, 1])
    img *= shade[:, None]
    windows = np.lib.stride_tricks.sliding_window_view(_noise_texture(res), (res, res), axis=(1, 2))
    noise = windows[:, p["noise_offset"][:, 1], p["noise_offset"][:, 0]]  # (3, n, R, R)
    noise *= p["noise_sigma"][None, :, None, None]
    img += noise.transpose(1, 0, 2, 3)
    np.clip(img.transpose(0, 2, 3, 1), 0.0, 1.0, out=out)
    return sign_mask, glyph_mask


# ---------------------------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------------------------
_CHUNK = 32  # images rendered per vectorised step (keeps the float32 temporaries in cache)


def generate_signs(n: int, resolution: int = 64, seed: int = 0, split: str = "train", start: int = 0) -> ImageSet:
    """Images ``start, ..., start + n - 1`` of a split of the synthetic traffic-sign set.

    Parameters
    ----------
    n : number of images (>= 1).
    resolution : side length of the square images in pixels (>= 16).
    seed : data-set seed; with ``split`` and the image index it determines every image.
    split : "train", "val" or "test" (disjoint random streams).
    start : index of the first image (>= 0); ``generate_signs(k, start=a)`` equals images
        ``[a, a + k)`` of any larger generation with the same seed and split.

    Returns
    -------
    ImageSet with ``images`` float32 (n, R, R, 3) in [0, 1], ``labels`` int32 GTSRB class ids,
    ``ids`` ``"synth-signs-<split>-<index:06d>"``, ``masks`` (sign masks) and ``glyph_masks``
    (bool (n, R, R); see the module docstring), ``class_names`` and ``meta`` with ``pose``
    ((n, 2, 3) float32 ``[A | c]`` mapping local sign coordinates u, circle radius 1, to pixel
    coordinates ``A u + c`` -- pixel (row i, column j) has centre (x, y) = (j + .5, i + .5)).
    """
    n = check_positive_int(n, "n")
    resolution = check_positive_int(resolution, "resolution", minimum=MIN_RESOLUTION)
    seed = _check_seed(seed)
    split = _check_split(split)
    start = check_positive_int(start, "start", minimum=0)
    images = np.empty((n, resolution, resolution, 3), np.float32)
    masks = np.empty((n, resolution, resolution), bool)
    glyph_masks = np.empty((n, resolution, resolution), bool)
    labels = np.empty((n,), np.int32)
    pose = np.empty((n, 2, 3), np.float32)
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        params = _draw_parameters(np.arange(start + lo, start + hi), resolution, seed, split)
        masks[lo:hi], glyph_masks[lo:hi] = _render(params, resolution, out=images[lo:hi])
        labels[lo:hi] = params["label"]
        pose[lo:hi] = params["pose"]
    return ImageSet(
        images=images,
        labels=labels,
        ids=[f"{NAME}-{split}-{i:06d}" for i in range(start, start + n)],
        masks=masks,
        glyph_masks=glyph_masks,
        class_names=list(CLASS_NAMES),
        name=NAME,
        meta={"split": split, "seed": seed, "start": start, "resolution": resolution, "pose": pose},
    )


def load_synth_signs(split: str = "test", n: int = 1000, resolution: int = 64, seed: int = 0) -> ImageSet:
    """The first ``n`` images of ``split``: ``generate_signs(n, resolution, seed, split, start=0)``."""
    return generate_signs(n, resolution=resolution, seed=seed, split=split, start=0)


def synth_signs_tf_dataset(split: str = "train", n: int = 50_000, resolution: int = 64, seed: int = 0,
                           batch_size: int = 64, chunk_size: int = 1024):
    """A ``tf.data.Dataset`` of ``(images, labels)`` batches rendered on the fly for Keras ``fit``.

    Images are generated ``chunk_size`` at a time (rounded up to a multiple of ``batch_size``) in
    a background thread and dropped after use, so ``n`` can exceed what fits in memory. The
    batches are exactly ``generate_signs(n, resolution, seed, split)`` in order (deterministic;
    the labels already come in shuffled order), re-rendered on every epoch.
    """
    import tensorflow as tf

    n = check_positive_int(n, "n")
    resolution = check_positive_int(resolution, "resolution", minimum=MIN_RESOLUTION)
    seed = _check_seed(seed)
    split = _check_split(split)
    batch_size = check_positive_int(batch_size, "batch_size")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    chunk = batch_size * max(1, -(-chunk_size // batch_size))

    def batches():
        for lo in range(0, n, chunk):
            part = generate_signs(min(chunk, n - lo), resolution, seed, split, start=lo)
            for b in range(0, len(part), batch_size):
                yield part.images[b:b + batch_size], part.labels[b:b + batch_size]

    spec = (tf.TensorSpec((None, resolution, resolution, 3), tf.float32), tf.TensorSpec((None,), tf.int32))
    ds = tf.data.Dataset.from_generator(batches, output_signature=spec)
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
    return ds.prefetch(max(2, chunk // batch_size))


def render_class_sheet(resolution: int = 64, seed: int = 0, columns: int = 7, gap: int = 2) -> np.ndarray:
    """One example of every class (the first 43 "train" images, sorted by class) tiled in a grid.

    Returns float32 (rows * (R + gap) - gap, columns * (R + gap) - gap, 3) in [0, 1], white gaps.
    """
    columns = check_positive_int(columns, "columns")
    gap = check_positive_int(gap, "gap", minimum=0)
    signs = generate_signs(NUM_CLASSES, resolution, seed, "train")
    order = np.argsort(signs.labels)
    rows = -(-NUM_CLASSES // columns)
    step = resolution + gap
    sheet = np.ones((rows * step - gap, columns * step - gap, 3), np.float32)
    for slot, i in enumerate(order):
        r, c = divmod(slot, columns)
        sheet[r * step:r * step + resolution, c * step:c * step + resolution] = signs.images[i]
    return sheet
