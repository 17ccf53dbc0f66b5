"""Tests of the synthetic GTSRB-like traffic-sign data set (tfagg.data.synth_signs)."""
import numpy as np
import pytest

from tfagg.data import synth_signs as ss
from tfagg.data.synth_signs import (
    CLASS_NAMES,
    NUM_CLASSES,
    generate_signs,
    load_synth_signs,
    render_class_sheet,
    synth_signs_tf_dataset,
)

RED_BORDERED = [c for c in range(NUM_CLASSES) if ss._CLASS_SPECS[c].border == ss._RED]
BLUE = list(range(33, 41))
BLACK_INK_DIGITS = [0, 1, 2, 3, 4, 5, 7, 8]


@pytest.fixture(scope="module")
def signs64():
    return generate_signs(4 * NUM_CLASSES, resolution=64, seed=3, split="train")


def test_class_names_follow_gtsrb():
    assert NUM_CLASSES == len(CLASS_NAMES) == 43 == len(set(CLASS_NAMES))
    assert CLASS_NAMES[0] == "Speed limit (20km/h)"
    assert CLASS_NAMES[8] == "Speed limit (120km/h)"
    assert CLASS_NAMES[14] == "Stop"
    assert CLASS_NAMES[17] == "No entry"
    assert CLASS_NAMES[40] == "Roundabout mandatory"
    assert CLASS_NAMES[42] == "End of no passing by vehicles over 3.5 metric tons"


@pytest.mark.parametrize("resolution", [16, 33, 64])
def test_shapes_dtypes_ranges(resolution):
    s = generate_signs(50, resolution=resolution, seed=1, split="val", start=7)
    assert s.images.shape == (50, resolution, resolution, 3) and s.images.dtype == np.float32
    assert s.images.min() >= 0.0 and s.images.max() <= 1.0 and np.isfinite(s.images).all()
    assert s.images.std() > 0.05  # not a blank canvas
    assert s.labels.shape == (50,) and s.labels.dtype == np.int32
    assert s.labels.min() >= 0 and s.labels.max() < NUM_CLASSES
    assert s.masks.shape == s.glyph_masks.shape == (50, resolution, resolution)
    assert s.masks.dtype == s.glyph_masks.dtype == bool
    assert s.ids[0] == "synth-signs-val-000007" and s.ids[-1] == "synth-signs-val-000056"
    assert s.class_names == CLASS_NAMES and s.name == "synth-signs"
    assert s.meta["pose"].shape == (50, 2, 3)


def test_deterministic_and_slice_consistent():
    full = generate_signs(100, resolution=32, seed=5, split="train")
    again = generate_signs(100, resolution=32, seed=5, split="train")
    # [30, 75) crosses the renderer's internal chunk boundaries at different places.
    part = generate_signs(45, resolution=32, seed=5, split="train", start=30)
    np.testing.assert_array_equal(full.images, again.images)
    np.testing.assert_array_equal(full.images[30:75], part.images)
    np.testing.assert_array_equal(full.labels[30:75], part.labels)
    np.testing.assert_array_equal(full.masks[30:75], part.masks)
    np.testing.assert_array_equal(full.glyph_masks[30:75], part.glyph_masks)
    assert full.ids[30:75] == part.ids
    # Global numpy RNG state is neither used nor disturbed.
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    generate_signs(3, resolution=32, seed=5)
    assert np.random.random() == before


def test_splits_and_seeds_are_different_streams():
    a = generate_signs(43, resolution=32, seed=0, split="train")
    b = generate_signs(43, resolution=32, seed=0, split="test")
    c = generate_signs(43, resolution=32, seed=1, split="train")
    for other in (b, c):
        diff = np.abs(a.images - other.images).mean(axis=(1, 2, 3))
        assert (diff > 0.01).all()  # every index differs
        assert not np.array_equal(a.labels, other.labels)
    assert set(a.ids).isdisjoint(b.ids)


def test_class_balance():
    s = generate_signs(5 * NUM_CLASSES, resolution=16, seed=2, split="test")
    np.testing.assert_array_equal(np.bincount(s.labels, minlength=NUM_CLASSES), 5)
    # Any 43 consecutive-block images hold every class exactly once; ragged n is off by <= 1.
    counts = np.bincount(generate_signs(100, resolution=16, seed=2).labels, minlength=NUM_CLASSES)
    assert counts.max() - counts.min() <= 1
    # Labels are shuffled, not 0, 1, 2, ...
    assert not np.array_equal(s.labels[:NUM_CLASSES], np.arange(NUM_CLASSES))


@pytest.mark.parametrize("resolution", [32, 64])
def test_masks_are_nonempty_and_nested(resolution):
    s = generate_signs(2 * NUM_CLASSES, resolution=resolution, seed=4, split="val")
    sign_area = s.masks.sum(axis=(1, 2))
    glyph_area = s.glyph_masks.sum(axis=(1, 2))
    assert (sign_area > 0).all() and (glyph_area > 0).all()
    assert not (s.glyph_masks & ~s.masks).any()  # glyph inside the sign
    assert (glyph_area < sign_area).all()
    # Diameter 40-80 % of the side: area between ~pi*0.2^2 and the whole image.
    assert (sign_area >= 0.5 * np.pi * (0.2 * resolution) ** 2).all()


def test_sign_mask_matches_pose(signs64):
    """The pose maps the local unit frame onto the sign: centre inside, circle area = pi |det A|."""
    s = signs64
    pose = s.meta["pose"]
    col = np.floor(pose[:, 0, 2]).astype(int)
    row = np.floor(pose[:, 1, 2]).astype(int)
    assert s.masks[np.arange(len(s)), row, col].all()
    circles = np.array([ss._CLASS_SPECS[c].shape == ss.CIRCLE for c in s.labels])
    expected = np.pi * np.abs(np.linalg.det(pose[:, :, :2]))
    area = s.masks.sum(axis=(1, 2))
    np.testing.assert_allclose(area[circles], expected[circles], rtol=0.08)


def _redness(img, mask):
    px = img[mask]
    return float((px[:, 0] - px[:, 2]).mean())


def test_sign_colours_decide_with_shape(signs64):
    s = signs64
    red = [_redness(s.images[i], s.masks[i]) for i in range(len(s)) if s.labels[i] in RED_BORDERED]
    blue = [_redness(s.images[i], s.masks[i]) for i in range(len(s)) if s.labels[i] in BLUE]
    assert np.mean(red) > np.mean(blue) + 0.2
    assert np.median(red) > 0 > np.median(blue)
    # The sign differs from what surrounds it (mean colour distance, every image).
    for i in range(len(s)):
        inside = s.images[i][s.masks[i]].mean(axis=0)
        outside = s.images[i][~s.masks[i]].mean(axis=0)
        assert np.abs(inside - outside).sum() > 0.03, i


def test_glyph_mask_marks_the_ink(signs64):
    """Black digits are darker than the white field around them; white arrows brighter than blue."""
    s = signs64
    lum = s.images.mean(axis=-1)
    checked = 0
    for i in range(len(s)):
        c = int(s.labels[i])
        glyph = lum[i][s.glyph_masks[i]]
        field = lum[i][s.masks[i] & ~s.glyph_masks[i]]  # mostly white (digits) or blue (arrows)
        if c in BLACK_INK_DIGITS:
            assert glyph.mean() < np.median(field) - 0.1, (i, c)
            checked += 1
        elif c in BLUE:
            assert glyph.mean() > field.mean() + 0.15, (i, c)
            checked += 1
    assert checked == 4 * (len(BLACK_INK_DIGITS) + len(BLUE))


def _canonical_crops(s, size=24):
    """Resample every image into its sign's local frame (nearest pixel), contrast-normalised."""
    u = np.linspace(-1.05, 1.05, size, dtype=np.float32)
    local = np.stack(np.meshgrid(u, u, indexing="xy"), axis=-1)
    pose = s.meta["pose"]
    xy = np.einsum("nij,abj->nabi", pose[:, :, :2], local) + pose[:, None, None, :, 2]
    res = s.images.shape[1]
    col = np.clip(np.floor(xy[..., 0]).astype(int), 0, res - 1)
    row = np.clip(np.floor(xy[..., 1]).astype(int), 0, res - 1)
    crops = s.images[np.arange(len(s))[:, None, None], row, col].reshape(len(s), -1)
    return (crops - crops.mean(1, keepdims=True)) / crops.std(1, keepdims=True)


def test_every_class_has_a_distinct_template():
    """Class means of pose-normalised crops from one split identify the classes of another.

    The mean over held-out draws of class c must be nearer to the template of c than to any
    other class's template -- i.e. the 43 classes render 43 distinguishable signs, and the
    random pose/lighting/background does not wash the glyphs out.
    """
    draws = 16
    a = generate_signs(draws * NUM_CLASSES, resolution=64, seed=0, split="val")
    b = generate_signs(draws * NUM_CLASSES, resolution=64, seed=0, split="test")
    crops_a, crops_b = _canonical_crops(a), _canonical_crops(b)
    templates = np.stack([crops_a[a.labels == c].mean(0) for c in range(NUM_CLASSES)])
    held_out = np.stack([crops_b[b.labels == c].mean(0) for c in range(NUM_CLASSES)])
    dist = ((held_out[:, None] - templates[None]) ** 2).mean(-1)
    np.testing.assert_array_equal(dist.argmin(axis=1), np.arange(NUM_CLASSES))
    # Single images, too, are mostly recognisable by their nearest template.
    single = ((crops_b[:, None] - templates[None]) ** 2).mean(-1).argmin(axis=1)
    assert (single == b.labels).mean() > 0.75


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="`n`"):
        generate_signs(0)
    with pytest.raises(ValueError, match="`n`"):
        generate_signs(-3)
    with pytest.raises(ValueError, match="`resolution`"):
        generate_signs(2, resolution=15)
    with pytest.raises(ValueError, match="`split`"):
        generate_signs(2, split="training")
    with pytest.raises(ValueError, match="`start`"):
        generate_signs(2, start=-1)
    with pytest.raises(TypeError, match="`seed`"):
        generate_signs(2, seed=1.5)
    with pytest.raises(ValueError, match="`split`"):
        load_synth_signs(split="dev")
    with pytest.raises(ValueError, match="`batch_size`"):
        synth_signs_tf_dataset("train", n=10, resolution=32, seed=0, batch_size=0)


def test_load_synth_signs_is_generate_from_zero():
    a = load_synth_signs(split="test", n=20, resolution=32, seed=9)
    b = generate_signs(20, resolution=32, seed=9, split="test", start=0)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_tf_dataset_streams_the_same_images():
    n, batch = 70, 16
    ds = synth_signs_tf_dataset("train", n=n, resolution=32, seed=2, batch_size=batch, chunk_size=40)
    assert int(ds.cardinality()) == 5
    batches = list(ds.as_numpy_iterator())
    assert [len(y) for _, y in batches] == [16, 16, 16, 16, 6]
    ref = generate_signs(n, resolution=32, seed=2, split="train")
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), ref.images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), ref.labels)
    again = np.concatenate([y for _, y in ds.as_numpy_iterator()])  # a second epoch is identical
    np.testing.assert_array_equal(again, ref.labels)


def test_class_sheet_has_one_example_per_class():
    res, gap, columns = 32, 2, 7
    sheet = render_class_sheet(resolution=res, seed=0, columns=columns, gap=gap)
    rows = -(-NUM_CLASSES // columns)
    assert sheet.shape == (rows * (res + gap) - gap, columns * (res + gap) - gap, 3)
    first = generate_signs(NUM_CLASSES, resolution=res, seed=0, split="train")
    assert sorted(first.labels.tolist()) == list(range(NUM_CLASSES))
    for c in (0, 14, 42):
        r, k = divmod(c, columns)
        tile = sheet[r * (res + gap):r * (res + gap) + res, k * (res + gap):k * (res + gap) + res]
        np.testing.assert_array_equal(tile, first.images[first.labels == c][0])
