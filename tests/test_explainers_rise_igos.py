"""Tests of RISE and iGOS++ against independent facts: mask geometry vs scipy, closed forms for
constant models, a hand-built model that only looks at one patch, invariances."""
import numpy as np
import pytest
import scipy.ndimage as ndi

import keras
import tensorflow as tf

from tfagg.explainers._masks import align_corners_matrix, half_pixel_mirror_matrix, rise_grids, rise_masks
from tfagg.explainers.igos_pp import IGOSPP
from tfagg.explainers.rise import RISE
from tfagg.random import per_image_keys

SIZE = 24
PATCH = (4, 14, 6)  # row, column, side of the only patch the patch model looks at


def _dense_model(kernel, bias, size=SIZE):
    inp = keras.Input((size, size, 3))
    dense = keras.layers.Dense(len(bias))
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    dense.set_weights([kernel.reshape(-1, len(bias)).astype(np.float32), np.asarray(bias, np.float32)])
    return model


@pytest.fixture(scope="module")
def patch_model():
    """Class-1 logit = 20 * (mean of the patch - 0.5); class-0 logit = 0."""
    r, c, p = PATCH
    kernel = np.zeros((SIZE, SIZE, 3, 2))
    kernel[r : r + p, c : c + p, :, 1] = 20.0 / (p * p * 3)
    return _dense_model(kernel, [0.0, -10.0])


@pytest.fixture(scope="module")
def constant_model():
    """Ignores the image: logits (0, 1, -1) -> fixed softmax probabilities."""
    return _dense_model(np.zeros((SIZE, SIZE, 3, 3)), [0.0, 1.0, -1.0])


@pytest.fixture(scope="module")
def patch_images():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 0.3, (2, SIZE, SIZE, 3)).astype(np.float32)
    r, c, p = PATCH
    x[:, r : r + p, c : c + p] = 0.9
    return x


def _inside():
    r, c, p = PATCH
    m = np.zeros((SIZE, SIZE), bool)
    m[r : r + p, c : c + p] = True
    return m


def _assert_finds_patch(maps, margin):
    inside = _inside()
    near = ndi.binary_dilation(inside, iterations=1)
    for s in maps:
        assert s[inside].mean() > s[~inside].mean() + margin
        assert near[np.unravel_index(np.argmax(s), s.shape)]


# -- mask geometry -------------------------------------------------------------------------------


@pytest.mark.parametrize("s,up", [(10, 264), (10, 33), (7, 24), (3, 8)])
def test_rise_resize_matches_scipy_mirror_zoom(s, up):
    # skimage.transform.resize(order=1, mode="reflect") == ndimage.zoom(order=1, mode="mirror", grid_mode=True)
    grid = (np.random.default_rng(s).random((s, s)) < 0.5).astype(np.float64)
    a = half_pixel_mirror_matrix(s, up).astype(np.float64)
    ref = ndi.zoom(grid, up / s, order=1, mode="mirror", grid_mode=True)
    np.testing.assert_allclose(a @ grid @ a.T, ref, atol=1e-6)


def test_rise_masks_are_shifted_crops_of_upsampled_grids():
    key = tf.constant([3, 4], tf.int32)
    h, w, s = 20, 17, 6
    masks = rise_masks(key, 5, (h, w), grid_size=s, p1=0.3)
    cell = (int(np.ceil(h / s)), int(np.ceil(w / s)))
    grids, shifts = rise_grids(key, 5, s, 0.3, cell)
    for i in range(5):
        zoom = ((s + 1) * cell[0] / s, (s + 1) * cell[1] / s)
        up = ndi.zoom(grids[i].numpy().astype(np.float64), zoom, order=1, mode="mirror", grid_mode=True)
        dy, dx = shifts[i].numpy()
        assert 0 <= dy < cell[0] and 0 <= dx < cell[1]
        np.testing.assert_allclose(masks[i], up[dy : dy + h, dx : dx + w], atol=1e-6)


def test_rise_masks_have_mean_p1():
    masks = rise_masks(tf.constant([1, 2], tf.int32), 2000, (SIZE, SIZE), grid_size=10, p1=0.25)
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    assert abs(masks.mean() - 0.25) < 0.02


def test_align_corners_upsampling_is_exact_on_linear_ramps():
    a = align_corners_matrix(5, 13)
    ramp = np.linspace(-1.0, 3.0, 5)
    np.testing.assert_allclose(a @ ramp, np.linspace(-1.0, 3.0, 13), atol=1e-6)
    np.testing.assert_allclose(align_corners_matrix(6, 6), np.eye(6))


# -- RISE ------------------------------------------------------------------------------------------


def test_rise_finds_the_patch(patch_model, patch_images):
    maps = RISE(patch_model, n_masks=500, batch_size=64)(patch_images, [1, 1])
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32 and np.all(np.isfinite(maps))
    _assert_finds_patch(maps, margin=0.1 * maps.max())


def test_rise_constant_model_closed_form(constant_model):
    x = np.random.default_rng(1).uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    n, p1 = 400, 0.2
    maps = RISE(constant_model, n_masks=n, grid_size=6, p1=p1, seed=5)(x, [1, 2])
    prob = tf.nn.softmax([0.0, 1.0, -1.0]).numpy()
    keys = per_image_keys(5, 2, "rise")
    for i, label in enumerate([1, 2]):
        mean_mask = rise_masks(keys[i], n, (SIZE, SIZE), grid_size=6, p1=p1).mean(axis=0)
        np.testing.assert_allclose(maps[i], prob[label] * mean_mask / p1, rtol=1e-5)
        # E[M] = p1, so the map is close to the constant probability everywhere.
        assert abs(maps[i].mean() / prob[label] - 1.0) < 0.1


def test_rise_seeds_batch_size_and_no_retracing(patch_model, patch_images):
    rise = RISE(patch_model, n_masks=150, batch_size=64, seed=3)
    a = rise(patch_images, [1, 1])
    (fn,) = rise._chunk_fns.values()  # one traced function for this image size and these settings
    traces = fn.experimental_get_tracing_count()
    np.testing.assert_array_equal(rise(patch_images, [1, 1]), a)  # same seed -> same map
    rise(patch_images[:1], [1])  # another number of images: same traced function
    assert fn.experimental_get_tracing_count() == traces == 1
    assert not np.allclose(rise(patch_images, [1, 1], seed=4), a)
    np.testing.assert_allclose(RISE(patch_model, n_masks=150, batch_size=7, seed=3)(patch_images, [1, 1]), a,
                               rtol=1e-5, atol=1e-6)
    # an image's map does not depend on the other images of the call
    np.testing.assert_allclose(rise(patch_images[:1], [1]), a[:1], rtol=1e-5, atol=1e-6)


def test_rise_baseline_option(constant_model, patch_model, patch_images):
    for baseline in ("normal", "blur", "imagenet_mean"):
        maps = RISE(patch_model, n_masks=100, baseline=baseline)(patch_images, [1, 1])
        assert maps.shape == (2, SIZE, SIZE) and np.all(np.isfinite(maps))


def test_rise_linear_model_closed_form_with_baseline():
    # For a linear logit w.x + c, Eq. 6 with input b + M (x - b) is a finite sum we can evaluate.
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(SIZE, SIZE, 3, 2))
    model = _dense_model(kernel, [0.3, -0.2])
    x = rng.uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    n, p1, labels = 60, 0.3, [1, 0]
    maps = RISE(model, n_masks=n, grid_size=5, p1=p1, baseline="imagenet_mean", score="logit",
                batch_size=16, seed=9)(x, labels)
    base = np.array([0.485, 0.456, 0.406])
    keys = per_image_keys(9, 2, "rise")
    for i, label in enumerate(labels):
        masks = rise_masks(keys[i], n, (SIZE, SIZE), grid_size=5, p1=p1).astype(np.float64)
        inputs = base + masks[..., None] * (x[i] - base)
        logits = np.einsum("nhwc,hwc->n", inputs, kernel[..., label]) + [0.3, -0.2][label]
        expected = np.einsum("n,nhw->hw", logits, masks) / (n * p1)
        np.testing.assert_allclose(maps[i], expected, rtol=1e-4, atol=1e-4)


# -- iGOS++ ----------------------------------------------------------------------------------------

FAST = dict(mask_size=12, iterations=5, steps=5)


def test_igos_finds_the_patch(patch_model, patch_images):
    igos = IGOSPP(patch_model, **FAST)
    maps = igos(patch_images, [1, 1])
    assert maps.shape == (2, SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0  # 1 - product of masks in [0, 1]
    _assert_finds_patch(maps, margin=0.2)
    st = igos.last_stats
    assert st["samples_grads"] == 2 * 5 * 4 * 5 and st["candidates"] >= 2 * 5


def test_igos_constant_model_gives_zero_map(constant_model):
    # No model gradient and no regulariser gradient at M = 1: the masks never move.
    x = np.random.default_rng(2).uniform(0, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    maps = IGOSPP(constant_model, **FAST)(x, [0])
    np.testing.assert_array_equal(maps, 0.0)


def test_igos_regulariser_hand_computed(constant_model):
    igos = IGOSPP(constant_model, mask_size=3, sparsity=20.0, smoothness=30.0)
    kern = igos._get_kernels(3, 3)  # mask size = image size: upsampling is the identity
    m_ins = np.ones((1, 3, 3), np.float32)
    m_ins[0, 1, 1] = 0.0
    ones = np.ones((1, 3, 3), np.float32)
    w_v, w_h = np.ones((1, 2, 3), np.float32), np.ones((1, 3, 2), np.float32)  # flat image
    reg, g_del, g_ins = kern["regulariser"](ones, m_ins, w_v, w_h)
    # L1: 1/9. Each of the 4 TV terms: 2 unit jumps among 6 neighbour pairs; BTV = 1/2 * 4 * 2/6.
    np.testing.assert_allclose(reg.numpy(), [20.0 / 9 + 30.0 * 2.0 / 3.0], rtol=1e-6)
    assert np.all(np.isfinite(g_del.numpy())) and np.all(np.isfinite(g_ins.numpy()))


def test_igos_step_sizes_follow_reference_line_search(constant_model):
    steps = IGOSPP(constant_model)._step_sizes()
    np.testing.assert_allclose(steps, 10.0 * 0.2 ** np.arange(10))
    assert steps[-1] < 1e-5 <= steps[-2]


def test_igos_seeds_batch_size_and_no_retracing(patch_model, patch_images):
    kw = dict(mask_size=8, iterations=3, steps=4, seed=1)
    igos = IGOSPP(patch_model, batch_size=64, **kw)
    a = igos(patch_images, [1, 1])
    (kern,) = igos._kernels.values()

    def traces():
        fns = {k: f for k, f in kern.items() if hasattr(f, "experimental_get_tracing_count")}
        fns.update({f"grads/{c}": f for c, f in kern["grad_kernels"].items()})
        return {k: f.experimental_get_tracing_count() for k, f in fns.items()}

    before = traces()
    np.testing.assert_array_equal(igos(patch_images, [1, 1]), a)
    assert traces() == before and all(v == 1 for v in before.values())
    # one image: 16 gradient samples run as one chunk of 16 -- one new trace of that size only
    igos(patch_images[:1], [1])
    igos(patch_images[:1], [1])
    after = traces()
    assert set(after) - set(before) == {"grads/16"} and all(v == 1 for v in after.values())
    assert not np.allclose(igos(patch_images, [1, 1], seed=2), a)
    np.testing.assert_allclose(IGOSPP(patch_model, batch_size=5, **kw)(patch_images, [1, 1]), a, atol=1e-5)



def test_igos_path_noise_is_gaussian_with_the_given_std_and_fresh_per_sample():
    """Inputs = noise alone (image = baseline = 0); the model's logit is the mean squared input,
    so every sample's score is its noise's mean square: ~ noise_std^2 (3 h w values each)."""
    inp = keras.Input((SIZE, SIZE, 3))
    energy = keras.layers.Lambda(lambda x: tf.reduce_mean(x * x, axis=(1, 2, 3), keepdims=False)[:, None])(inp)
    model = keras.Model(inp, keras.layers.Concatenate()([energy, 0.0 * energy]))
    std = 0.3
    igos = IGOSPP(model, mask_size=4, steps=5, noise_std=std, score="logit", batch_size=40, baseline="zeros")
    kern = igos._get_kernels(SIZE, SIZE)
    zeros = tf.zeros((2, SIZE, SIZE, 3))
    from tfagg.explainers.igos_pp import noise_draws, noise_table

    table = noise_table(SIZE, SIZE)
    values = table.numpy().ravel()
    assert abs(values.mean()) < 2e-3 and abs(values.std() - 1.0) < 2e-3
    window = 3 * SIZE * SIZE // int(table.shape[1])
    keys = np.array([[1, 2]] * 20 + [[3, 4]] * 20)
    rows = noise_draws(keys, np.tile(np.arange(20), 2), int(table.shape[0]) - window + 1)
    assert len(set(rows.tolist())) == 40 and rows.min() >= 0 and rows.max() <= table.shape[0] - window
    np.testing.assert_array_equal(noise_draws(keys, np.tile(np.arange(20), 2), int(table.shape[0]) - window + 1), rows)
    ones = tf.ones((2, 4, 4))
    n = 40
    starts = tf.zeros((4, SIZE, SIZE, 3))  # [baselines; images] of the two images
    out = kern["scores"](starts, zeros, tf.constant([0, 0]), table * std, ones, ones, tf.zeros(n, tf.int32),
                         tf.constant([0] * 20 + [1] * 20), tf.zeros(n, tf.int32), tf.ones(n),
                         tf.constant(rows), tf.ones(n)).numpy()
    np.testing.assert_allclose(out, std**2, rtol=0.12)  # mean of 1728 squared N(0, std^2) values
    np.testing.assert_allclose(out.mean(), std**2, rtol=0.03)
    assert len(np.unique(out)) == n  # every sample drew its own window

# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,kwargs,match", [
    (RISE, dict(n_masks=0), "n_masks"),
    (RISE, dict(n_masks=2.5), "n_masks"),
    (RISE, dict(grid_size=0), "grid_size"),
    (RISE, dict(p1=0.0), "p1"),
    (RISE, dict(p1=1.0), "p1"),
    (RISE, dict(p1="x"), "p1"),
    (RISE, dict(baseline="mean"), "baseline"),
    (RISE, dict(batch_size=0), "batch_size"),
    (IGOSPP, dict(iterations=0), "iterations"),
    (IGOSPP, dict(steps=0), "steps"),
    (IGOSPP, dict(mask_size=1), "mask_size"),
    (IGOSPP, dict(decay=1.0), "decay"),
    (IGOSPP, dict(max_step=-1.0), "max_step"),
    (IGOSPP, dict(min_step=20.0), "min_step"),
    (IGOSPP, dict(btv_sigma=0.0), "btv_sigma"),
    (IGOSPP, dict(tv_exponent=0.5), "tv_exponent"),
    (IGOSPP, dict(sparsity=-1.0), "sparsity"),
    (IGOSPP, dict(score="prob"), "score"),
])
def test_bad_hyperparameters(patch_model, cls, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cls(patch_model, **kwargs)


@pytest.mark.parametrize("cls", [RISE, IGOSPP])
def test_bad_call_arguments(patch_model, patch_images, cls):
    explainer = cls(patch_model, **({"n_masks": 10} if cls is RISE else FAST))
    with pytest.raises(ValueError, match="images"):
        explainer(patch_images * 2.0, [1, 1])
    with pytest.raises(ValueError, match="images"):
        explainer(patch_images[0], [1])
    with pytest.raises(ValueError, match="images"):
        explainer(patch_images[..., :1], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        explainer(patch_images, [1, 2])
    with pytest.raises(ValueError, match="labels"):
        explainer(patch_images, [1, 1, 1])


def test_rise_grid_larger_than_image(patch_model, patch_images):
    with pytest.raises(ValueError, match="grid_size"):
        RISE(patch_model, n_masks=10, grid_size=SIZE + 1)(patch_images, [1, 1])


def test_changed_hyperparameters_are_used_not_the_first_trace(patch_model, patch_images):
    x, y = patch_images, [1, 1]
    rise = RISE(patch_model, n_masks=64, grid_size=4, batch_size=32, seed=0)
    prob_map = rise(x, y)
    rise.score = "logit"
    np.testing.assert_allclose(rise(x, y), RISE(patch_model, n_masks=64, grid_size=4, batch_size=32, seed=0,
                                               score="logit")(x, y), rtol=1e-5, atol=1e-6)
    assert not np.allclose(rise(x, y), prob_map)
    rise.batch_size = 16  # a new chunk size builds a new traced function instead of failing
    assert rise(x, y).shape == prob_map.shape


def test_call_time_seed_must_be_an_integer(patch_model, patch_images):
    x, y = patch_images, [1, 1]
    with pytest.raises(TypeError, match="seed"):
        RISE(patch_model, n_masks=8, grid_size=4)(x, y, seed=1.5)
