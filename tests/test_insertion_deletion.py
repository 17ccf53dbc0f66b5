"""Insertion / deletion metrics: behaviour against hand-built models and a naive reference loop."""
import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfagg.baselines import normal_baseline
from tfagg.metrics import auc, deletion_auc, insertion_auc, insertion_deletion, step_schedule
from tfagg.metrics.ranking import change_steps, image_tie_break_keys
from tfagg.random import per_image_keys

# the package re-exports the function `insertion_deletion`, which shadows the submodule attribute
idmod = importlib.import_module("tfagg.metrics.causal_metrics")

H = W = 8
PATCH = (slice(2, 6), slice(3, 7))  # the 4x4 patch the patch model reads


def patch_model(steepness=40.0, threshold=0.5):
    """Logit of class 1 = steepness * (mean of the 4x4 patch - threshold); class 0 logit = 0."""
    inp = keras.Input((H, W, 3))
    x = keras.layers.Cropping2D(((2, 2), (3, 1)))(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2)
    out = dense(x)
    dense.set_weights([np.array([[0.0, steepness / 3]] * 3, np.float32), np.array([0.0, -steepness * threshold], np.float32)])
    return keras.Model(inp, out)


def constant_model(bias=(0.1, 0.5, -0.2)):
    inp = keras.Input((H, W, 3))
    dense = keras.layers.Dense(3, kernel_initializer="zeros")
    out = dense(keras.layers.GlobalAveragePooling2D()(inp))
    dense.set_weights([np.zeros((3, 3), np.float32), np.array(bias, np.float32)])
    return keras.Model(inp, out)


def small_cnn(num_classes=5):
    keras.utils.set_random_seed(3)
    inp = keras.Input((H, W, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(num_classes)(x))


@pytest.fixture(scope="module")
def patch_setup():
    rng = np.random.default_rng(0)
    images = (0.3 * rng.random((2, H, W, 3))).astype(np.float32)
    images[:, PATCH[0], PATCH[1]] = 1.0
    good = np.zeros((2, H, W))
    good[:, PATCH[0], PATCH[1]] = 1.0
    good += 0.01 * rng.random((2, H, W))  # strict order inside and outside the patch
    return patch_model(), images, good


@pytest.fixture(scope="module")
def cnn_setup():
    rng = np.random.default_rng(1)
    images = rng.random((3, H, W, 3)).astype(np.float32)
    maps = np.round(rng.standard_normal((3, 2, H, W)), 1)  # rounded: many ties
    maps[:, 1, :4] = 0.0  # a block of exact zeros, like iGOS++ / PI
    return small_cnn(), images, np.array([0, 3, 1]), maps


# -- schedule and ranking ----------------------------------------------------------------------
@pytest.mark.parametrize("num_pixels,steps", [(64, 1), (64, 7), (64, 64), (50176, 1000), (16384, 1000)])
def test_step_schedule_changes_every_pixel_once(num_pixels, steps):
    counts = step_schedule(num_pixels, steps)
    assert counts.shape == (steps + 1,) and counts[0] == 0 and counts[-1] == num_pixels
    inc = np.diff(counts)
    assert inc.min() >= num_pixels // steps and inc.max() <= -(-num_pixels // steps)
    # every pixel gets exactly one step in 1..steps, and step t changes exactly inc[t-1] pixels
    side = int(np.sqrt(num_pixels))
    sal = np.random.default_rng(0).standard_normal((1, 1, side, side))
    step_of = change_steps(sal, image_tie_break_keys(0, 1, num_pixels), steps)
    assert step_of.min() == 1 and step_of.max() == steps
    np.testing.assert_array_equal(np.bincount(step_of.ravel(), minlength=steps + 1)[1:], inc)


def test_ranking_follows_saliency():
    sal = np.arange(16.0).reshape(1, 1, 4, 4)  # pixel 15 most important
    step_of = change_steps(sal, image_tie_break_keys(0, 1, 16), 16)
    np.testing.assert_array_equal(step_of.ravel(), 16 - np.arange(16))


def test_tie_break_is_seeded_and_not_raster():
    zeros = np.zeros((1, 1, H, W))
    a = change_steps(zeros, image_tie_break_keys(0, 1, H * W), H * W).ravel()
    b = change_steps(zeros, image_tie_break_keys(0, 1, H * W), H * W).ravel()
    c = change_steps(zeros, image_tie_break_keys(1, 1, H * W), H * W).ravel()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.arange(1, H * W + 1))  # not index order
    assert sorted(a) == list(range(1, H * W + 1))


def test_tie_break_through_the_metric(patch_setup):
    model, images, _ = patch_setup
    zeros = np.zeros(images.shape[:3])
    run = lambda seed: insertion_deletion(model, images, 1, zeros, steps=16, baseline="zeros", seed=seed, return_curves=True)
    r0, r0b, r1 = run(0), run(0), run(1)
    np.testing.assert_array_equal(r0.insertion_curve, r0b.insertion_curve)
    assert not np.array_equal(r0.insertion_curve, r1.insertion_curve)
    raster = -np.arange(H * W, dtype=float).reshape(1, H, W).repeat(2, 0)  # explicit index order
    rr = insertion_deletion(model, images, 1, raster, steps=16, baseline="zeros", return_curves=True)
    assert not np.array_equal(r0.insertion_curve, rr.insertion_curve)


# -- behaviour -----------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", ["zeros", "normal"])
def test_patch_first_beats_reverse_and_random(patch_setup, baseline):
    model, images, good = patch_setup
    rand = np.random.default_rng(5).random(good.shape)
    maps = np.stack([good, -good, rand], axis=1)
    r = insertion_deletion(model, images, 1, maps, steps=32, baseline=baseline)
    ins, dele = r.insertion, r.deletion
    assert np.all(ins[:, 0] > ins[:, 2]) and np.all(ins[:, 2] > ins[:, 1])
    assert np.all(dele[:, 0] < dele[:, 2]) and np.all(dele[:, 2] < dele[:, 1])
    assert np.all(ins[:, 0] > 0.7) and np.all(dele[:, 0] < 0.3)


def test_scores_depend_only_on_order(patch_setup):
    model, images, good = patch_setup
    sal = np.round(good * 3, 1)  # ties inside and outside the patch
    transforms = [np.exp(sal), 3 * sal + 7, np.arctan(sal) - 5]
    for t in transforms:  # the transforms must keep the tie structure for the test to mean anything
        assert np.array_equal(np.argsort(t.ravel(), kind="stable"), np.argsort(sal.ravel(), kind="stable"))
        assert len(np.unique(t)) == len(np.unique(sal))
    ref = insertion_deletion(model, images, 1, sal, steps=20, return_curves=True)
    for t in transforms:
        r = insertion_deletion(model, images, 1, t, steps=20, return_curves=True)
        np.testing.assert_array_equal(r.insertion_curve, ref.insertion_curve)
        np.testing.assert_array_equal(r.deletion_curve, ref.deletion_curve)
        np.testing.assert_array_equal(r.insertion, ref.insertion)
        np.testing.assert_array_equal(r.deletion, ref.deletion)


def test_constant_model_gives_constant_auc(patch_setup):
    _, images, good = patch_setup
    bias = np.array([0.1, 0.5, -0.2])
    p = np.exp(bias) / np.exp(bias).sum()
    r = insertion_deletion(constant_model(tuple(bias)), images, [1, 2], good, steps=10, return_curves=True)
    np.testing.assert_allclose(r.insertion_curve, np.broadcast_to(p[[1, 2], None], (2, 11)), rtol=1e-6)
    np.testing.assert_allclose(r.deletion_curve, r.insertion_curve, rtol=0)
    np.testing.assert_allclose(r.insertion, p[[1, 2]], rtol=1e-6)
    np.testing.assert_allclose(r.deletion, p[[1, 2]], rtol=1e-6)


def test_curve_end_points_are_baseline_and_clean_scores(cnn_setup):
    model, images, labels, maps = cnn_setup
    base = np.full_like(images, 0.25)
    r = insertion_deletion(model, images, labels, maps, steps=8, baseline=base, return_curves=True)
    probs = lambda x: tf.nn.softmax(model(x)).numpy()[np.arange(3), labels]
    clean, at_base = probs(images), probs(base)
    for m in range(2):
        np.testing.assert_allclose(r.insertion_curve[:, m, 0], at_base, atol=1e-6)
        np.testing.assert_allclose(r.insertion_curve[:, m, -1], clean, atol=1e-6)
        np.testing.assert_allclose(r.deletion_curve[:, m, 0], clean, atol=1e-6)
        np.testing.assert_allclose(r.deletion_curve[:, m, -1], at_base, atol=1e-6)
    np.testing.assert_allclose(r.fractions, np.linspace(0, 1, 9))


def naive_insertion_deletion(model, images, labels, maps, steps, seed):
    """Straightforward reference: per image, map and step, build the image by copying pixels."""
    n, m = maps.shape[:2]
    p = H * W
    base = normal_baseline(images, per_image_keys(seed, n, idmod.BASELINE_STREAM)).numpy()
    ties = image_tie_break_keys(seed, n, p)
    ins = np.zeros((n, m, steps + 1))
    dele = np.zeros((n, m, steps + 1))
    for i in range(n):
        for j in range(m):
            flat = maps[i, j].ravel()
            order = sorted(range(p), key=lambda q: (-flat[q], ties[i, q]))
            for curve, start, fill in ((ins, base[i], images[i]), (dele, images[i], base[i])):
                xs = []
                for t in range(steps + 1):
                    x = start.reshape(p, 3).copy()
                    chosen = order[: (t * p) // steps]
                    x[chosen] = fill.reshape(p, 3)[chosen]
                    xs.append(x.reshape(H, W, 3))
                curve[i, j] = tf.nn.softmax(model(np.stack(xs))).numpy()[:, labels[i]]
    return ins, dele


@pytest.mark.parametrize("steps", [1, 7, H * W])
def test_matches_naive_reference(cnn_setup, steps):
    model, images, labels, maps = cnn_setup
    r = insertion_deletion(model, images, labels, maps, steps=steps, seed=4, batch_size=16, return_curves=True)
    ins, dele = naive_insertion_deletion(model, images, labels, maps, steps, seed=4)
    np.testing.assert_allclose(r.insertion_curve, ins, atol=1e-6, rtol=0)
    np.testing.assert_allclose(r.deletion_curve, dele, atol=1e-6, rtol=0)
    x = np.linspace(0, 1, steps + 1)
    np.testing.assert_allclose(r.insertion, np.trapezoid(ins, x, axis=-1), atol=1e-6)
    np.testing.assert_allclose(r.deletion, np.trapezoid(dele, x, axis=-1), atol=1e-6)


def test_independent_of_batch_size_and_grouping(cnn_setup, monkeypatch):
    model, images, labels, maps = cnn_setup
    run = lambda b: insertion_deletion(model, images, labels, maps, steps=10, batch_size=b, return_curves=True)
    ref = run(64)
    results = [run(1), run(7)]
    monkeypatch.setattr(idmod, "_GROUP_BYTES", 1)  # one image per group: batches straddle groups
    results += [run(7), run(64)]
    for r in results:
        np.testing.assert_allclose(r.insertion_curve, ref.insertion_curve, atol=1e-6, rtol=0)
        np.testing.assert_allclose(r.deletion_curve, ref.deletion_curve, atol=1e-6, rtol=0)


def test_many_maps_equal_separate_calls(cnn_setup):
    model, images, labels, maps = cnn_setup
    joint = insertion_deletion(model, images, labels, maps, steps=10, return_curves=True)
    assert joint.insertion.shape == (3, 2) and joint.insertion_curve.shape == (3, 2, 11)
    for j in range(2):
        single = insertion_deletion(model, images, labels, maps[:, j], steps=10, return_curves=True)
        assert single.insertion.shape == (3,) and single.deletion_curve.shape == (3, 11)
        np.testing.assert_allclose(single.insertion_curve, joint.insertion_curve[:, j], atol=1e-6, rtol=0)
        np.testing.assert_allclose(single.deletion_curve, joint.deletion_curve[:, j], atol=1e-6, rtol=0)


def test_image_results_do_not_depend_on_later_images(cnn_setup):
    model, images, labels, maps = cnn_setup
    full = insertion_deletion(model, images, labels, maps, steps=10)
    prefix = insertion_deletion(model, images[:2], labels[:2], maps[:2], steps=10)
    np.testing.assert_allclose(prefix.insertion, full.insertion[:2], atol=1e-6)
    np.testing.assert_allclose(prefix.deletion, full.deletion[:2], atol=1e-6)


def test_per_image_seeds_equal_single_image_calls(cnn_setup):
    model, images, labels, maps = cnn_setup
    seeds = [11, 5, 11]
    joint = insertion_deletion(model, images, labels, maps, steps=10, seed=seeds, return_curves=True)
    for i, s in enumerate(seeds):
        single = insertion_deletion(model, images[i : i + 1], labels[i : i + 1], maps[i : i + 1], steps=10, seed=s,
                                    return_curves=True)
        np.testing.assert_allclose(single.insertion_curve[0], joint.insertion_curve[i], atol=1e-6, rtol=0)
        np.testing.assert_allclose(single.deletion_curve[0], joint.deletion_curve[i], atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match="seed"):
        insertion_deletion(model, images, labels, maps, steps=10, seed=[1, 2])


def test_progress_bar(cnn_setup, capsys):
    model, images, labels, maps = cnn_setup
    quiet = insertion_deletion(model, images, labels, maps, steps=10)
    loud = insertion_deletion(model, images, labels, maps, steps=10, progress=True)
    assert "insertion/deletion" in capsys.readouterr().err
    np.testing.assert_array_equal(quiet.insertion, loud.insertion)


def test_wrappers_labels_none_and_baselines(cnn_setup):
    model, images, labels, maps = cnn_setup
    full = insertion_deletion(model, images, labels, maps, steps=10)
    np.testing.assert_allclose(insertion_auc(model, images, labels, maps, steps=10), full.insertion, atol=1e-6)
    np.testing.assert_allclose(deletion_auc(model, images, labels, maps, steps=10), full.deletion, atol=1e-6)
    predicted = np.argmax(model(images).numpy(), axis=-1)
    np.testing.assert_array_equal(
        insertion_deletion(model, images, None, maps, steps=10).insertion,
        insertion_deletion(model, images, predicted, maps, steps=10).insertion,
    )
    zeros = insertion_deletion(model, images, labels, maps, steps=10, baseline="zeros")
    given = insertion_deletion(model, images, labels, maps, steps=10, baseline=np.zeros_like(images))
    np.testing.assert_array_equal(zeros.insertion, given.insertion)
    blur = insertion_deletion(model, images, labels, maps, steps=10, baseline="blur")
    assert np.all(np.isfinite(blur.insertion)) and not np.allclose(blur.insertion, zeros.insertion)
    assert full["insertion"] is full.insertion


def test_auc_is_trapezoid():
    c = np.random.default_rng(0).random((4, 11))
    np.testing.assert_allclose(auc(c), np.trapezoid(c, np.linspace(0, 1, 11), axis=-1), rtol=1e-12)
    assert auc([0.2, 0.2]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="at least 2 points"):
        auc([0.3])


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(saliency=np.zeros((2, H, W + 1))), ValueError, "saliency"),
        (dict(saliency=np.zeros((2, H, W, 3))), ValueError, "saliency"),
        (dict(saliency=np.zeros((3, H, W))), ValueError, "saliency"),
        (dict(saliency=np.full((2, H, W), np.nan)), ValueError, "NaN"),
        (dict(steps=0), ValueError, "steps"),
        (dict(steps=H * W + 1), ValueError, "steps"),
        (dict(steps=2.5), TypeError, "steps"),
        (dict(labels=[0, 2]), ValueError, "labels"),
        (dict(labels=[0, -1]), ValueError, "labels"),
        (dict(baseline="gaussian"), ValueError, "baseline"),
        (dict(baseline=np.zeros((1, H, W, 3))), ValueError, "baseline"),
        (dict(baseline=np.full((2, H, W, 3), np.inf)), ValueError, "baseline"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(images=np.zeros((2, H, W, 3)) + 2.0), ValueError, "images"),
    ],
)
def test_bad_input_raises_clear_error(patch_setup, kwargs, error, match):
    model, images, good = patch_setup
    args = dict(model=model, images=images, labels=[0, 1], saliency=good, steps=8)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        insertion_deletion(**args)


# -- coinciding perturbed inputs are evaluated once ------------------------------------------------
def _distinct_sets(step_maps, steps):
    """Brute force: number of distinct changed-pixel sets over the maps, summed over t = 1..T-1."""
    return sum(len({tuple(np.flatnonzero(row <= t)) for row in step_maps}) for t in range(1, steps))


def test_changed_set_fingerprints_match_set_equality():
    rng = np.random.default_rng(5)
    base = rng.permutation(64)
    maps = np.stack([base, base, rng.permutation(64)])  # step maps with one step per pixel
    maps[1, [10, 20]] = maps[1, [20, 10]]  # a swap changes the sets in between only
    fp = idmod._changed_set_hashes(maps.astype(np.int64) + 1, 65)
    for t in range(64):
        sets = [frozenset(np.flatnonzero(row + 1 <= t + 1)) for row in maps]
        for a in range(3):
            for b in range(3):
                assert (sets[a] == sets[b]) == bool(np.all(fp[a, t] == fp[b, t]))


def test_coinciding_inputs_share_one_forward_pass_and_change_no_score(cnn_setup, monkeypatch):
    model, images, labels, maps = cnn_setup
    rng = np.random.default_rng(7)
    a = maps[:, 0]
    same_order = 3.0 * a + 1.0  # a strictly increasing transform: every step coincides with a's
    top_agrees = a.copy()  # a's order on its top pixels, another order below the median
    low = a < np.median(a, axis=(1, 2), keepdims=True)
    top_agrees[low] = a[low] - 100.0 * rng.random(int(low.sum()))
    stack = np.stack([a, same_order, maps[:, 1], top_agrees], axis=1)  # (N, 4, H, W)
    steps = 16
    together = insertion_deletion(model, images, labels, stack, steps=steps, seed=4, batch_size=13,
                                  return_curves=True)
    for j in range(stack.shape[1]):  # every map alone: nothing can be shared
        alone = insertion_deletion(model, images, labels, stack[:, j], steps=steps, seed=4, batch_size=13,
                                   return_curves=True)
        assert alone.model_inputs == alone.nominal_inputs == 3 * (2 + 2 * (steps - 1))
        np.testing.assert_allclose(together.insertion_curve[:, j], alone.insertion_curve, atol=1e-6)
        np.testing.assert_allclose(together.deletion_curve[:, j], alone.deletion_curve, atol=1e-6)
        np.testing.assert_allclose(together.insertion[:, j], alone.insertion, atol=1e-7)
    keys = idmod._image_keys(4, 3, idmod.TIE_BREAK_STREAM)
    step_maps = change_steps(stack, idmod.tie_break_keys(keys, H * W), steps).reshape(3, 4, -1)
    distinct = sum(_distinct_sets(step_maps[i], steps) for i in range(3))
    assert together.nominal_inputs == 3 * (2 + 2 * 4 * (steps - 1))
    assert together.model_inputs == 3 * 2 + 2 * distinct
    # same_order shares all of its inputs with a; top_agrees shares some of them
    assert together.model_inputs < together.nominal_inputs - 3 * 2 * (steps - 1)
    # one image per group, batches straddling groups: the same evaluated inputs and scores
    monkeypatch.setattr(idmod, "_GROUP_BYTES", 1)
    grouped = insertion_deletion(model, images, labels, stack, steps=steps, seed=4, batch_size=7, return_curves=True)
    assert grouped.model_inputs == together.model_inputs
    np.testing.assert_allclose(grouped.insertion_curve, together.insertion_curve, atol=1e-6)
    np.testing.assert_allclose(grouped.deletion_curve, together.deletion_curve, atol=1e-6)


def test_insertion_only_shares_inputs_too(cnn_setup):
    model, images, labels, maps = cnn_setup
    stack = np.stack([maps[:, 0], maps[:, 0] * 2.0], axis=1)
    steps = 10
    res = idmod._run(model, images, labels, stack, steps, "normal", 0, 16, False, False, curves=("insertion",))
    assert res.model_inputs == 3 * (2 + (steps - 1)) and res.nominal_inputs == 3 * (2 + 2 * (steps - 1))
    np.testing.assert_allclose(res.insertion[:, 0], res.insertion[:, 1], atol=0)
