"""SmoothGrad, Integrated Gradients and Expected Gradients against closed forms and axioms."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from tfagg.baselines import blur_baseline, scaled_blur_parameters
from tfagg.explainers import EXPLAINERS, ExpectedGradients, IntegratedGradients, SmoothGrad
from tfagg.explainers._gradients import stateless_normal_rows

SIZE = 8
RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0.05, 0.95, (3, SIZE, SIZE, 3)).astype(np.float32)
LABELS = np.array([0, 2, 1])


class BatchProbe(layers.Layer):
    """Identity that records the static batch size of every traced model call."""

    seen = []

    def call(self, x):
        BatchProbe.seen.append(x.shape[0])
        return x


def linear_model(seed=1):
    """logit_c = sum_i W[i, c] x_i + b_c: gradient W[:, c] everywhere."""
    inputs = keras.Input((SIZE, SIZE, 3))
    dense = layers.Dense(3, name="logits")
    out = dense(layers.Flatten()(inputs))
    model = keras.Model(inputs, out)
    r = np.random.default_rng(seed)
    dense.set_weights([r.normal(size=(SIZE * SIZE * 3, 3)).astype(np.float32), r.normal(size=3).astype(np.float32)])
    return model


def smooth_model(seed=2, probe=False):
    """A small smooth non-linear classifier (tanh conv -> dense)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = BatchProbe()(inputs) if probe else inputs
    x = layers.Conv2D(4, 3, activation="tanh")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(3, name="logits")(x))


def quadratic_model(a=0.5):
    """logit_c = a * sum_i x_i^2 for every class: gradient 2 a x."""
    inputs = keras.Input((SIZE, SIZE, 3))
    sq = layers.Flatten()(layers.Multiply()([inputs, inputs]))
    dense = layers.Dense(3, use_bias=False)
    model = keras.Model(inputs, dense(sq))
    dense.set_weights([np.full((SIZE * SIZE * 3, 3), a, np.float32)])
    return model


def logits_of(model, x, labels):
    return model(tf.constant(x), training=False).numpy()[np.arange(len(labels)), labels]


def input_gradients(model, x, labels):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        s = tf.gather(model(x, training=False), tf.constant(labels), axis=1, batch_dims=1)
    return tape.gradient(s, x).numpy()


REDUCE = {
    "sum": lambda g: g.sum(-1),
    "abs_sum": lambda g: np.abs(g).sum(-1),
    "max_abs": lambda g: np.abs(g).max(-1),
    "l2": lambda g: np.sqrt((g * g).sum(-1)),
}


@pytest.fixture(scope="module")
def linear():
    return linear_model()


@pytest.fixture(scope="module")
def smooth():
    return smooth_model()


# -- Integrated Gradients ---------------------------------------------------------------------
def test_ig_of_linear_model_is_weight_times_difference_to_blurred_baseline(linear):
    w = linear.get_layer("logits").get_weights()[0][:, LABELS].T.reshape(3, SIZE, SIZE, 3)
    sigma, k = scaled_blur_parameters(SIZE)
    delta = IMAGES - blur_baseline(IMAGES, sigma, k).numpy()
    for reduce in ("sum", "abs_sum"):
        maps = IntegratedGradients(linear, steps=4, rule="right", reduce=reduce)(IMAGES, LABELS)
        np.testing.assert_allclose(maps, REDUCE[reduce](w * delta), rtol=1e-4, atol=1e-5)


def test_ig_completeness_improves_with_steps(smooth):
    sigma, k = scaled_blur_parameters(SIZE)
    baseline = blur_baseline(IMAGES, sigma, k).numpy()
    target = logits_of(smooth, IMAGES, LABELS) - logits_of(smooth, baseline, LABELS)
    errors = []
    for steps in (2, 20, 300):
        maps = IntegratedGradients(smooth, steps=steps, reduce="sum", batch_size=128)(IMAGES, LABELS)
        errors.append(np.abs(maps.sum(axis=(1, 2)) - target).max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4 * max(1.0, np.abs(target).max())


def test_ig_blur_scales_with_resolution():
    assert scaled_blur_parameters(224) == (20.0, 25)
    ig = IntegratedGradients(linear_model(), blur_reference_size=None)
    assert ig.blur_parameters(SIZE, SIZE) == (20.0, 25)


# -- SmoothGrad -------------------------------------------------------------------------------
@pytest.mark.parametrize("reduce", ["sum", "abs_sum", "max_abs", "l2"])
def test_smoothgrad_without_noise_is_the_plain_gradient(smooth, reduce):
    maps = SmoothGrad(smooth, n_samples=3, sigma=0.0, reduce=reduce)(IMAGES, LABELS)
    np.testing.assert_allclose(maps, REDUCE[reduce](input_gradients(smooth, IMAGES, LABELS)), rtol=1e-5, atol=1e-7)


def test_smoothgrad_of_linear_model_is_the_weights(linear):
    w = linear.get_layer("logits").get_weights()[0][:, LABELS].T.reshape(3, SIZE, SIZE, 3)
    maps = SmoothGrad(linear, n_samples=5, sigma=0.3)(IMAGES, LABELS)  # default abs_sum
    np.testing.assert_allclose(maps, np.abs(w).sum(-1), rtol=1e-5)


def test_smoothgrad_averages_n_samples_of_noise_with_std_sigma():
    # Gradient 2a(x + eps): the signed channel sum deviates from 2a*sum_c x_c by 2a*sum_c mean(eps),
    # whose standard deviation is 2a * sqrt(3) * sigma / sqrt(n).
    a, sigma, n = 0.5, 0.1, 16
    images = np.concatenate([IMAGES, IMAGES[::-1]])
    maps = SmoothGrad(quadratic_model(a), n_samples=n, sigma=sigma, reduce="sum")(images, np.zeros(6, int))
    residual = maps - 2 * a * images.sum(-1)
    expected_std = 2 * a * np.sqrt(3) * sigma / np.sqrt(n)
    assert abs(residual.mean()) < 0.2 * expected_std
    assert 0.85 < residual.std() / expected_std < 1.15


def test_smoothgrad_clip_keeps_noisy_images_in_unit_range():
    ones = np.ones((1, SIZE, SIZE, 3), np.float32)
    maps = SmoothGrad(quadratic_model(0.5), n_samples=4, sigma=0.2, clip=True, reduce="sum")(ones, [0])
    assert np.all(maps <= 3.0 + 1e-5) and maps.mean() < 2.95  # gradient 2*0.5*x <= 1 per channel


def test_noise_rows_are_standard_normal_and_keyed_per_row():
    keys = tf.constant([[1, 2], [3, 4], [1, 2]], tf.int32)
    z = stateless_normal_rows(keys, (31, 33, 3)).numpy()  # odd element count
    assert z.shape == (3, 31, 33, 3) and np.all(np.isfinite(z))
    np.testing.assert_allclose(z[0], z[2], rtol=1e-6, atol=1e-6)  # same key, same draw (up to SIMD ulps)
    sample = z[:2].ravel()
    assert abs(sample.mean()) < 0.02 and abs(sample.std() - 1) < 0.02
    assert abs(np.mean(sample**4) - 3) < 0.15  # Gaussian kurtosis
    assert abs(np.corrcoef(z[0].ravel(), z[1].ravel())[0, 1]) < 0.03


# -- Expected Gradients -----------------------------------------------------------------------
def test_eg_with_constant_baseline_is_closed_form_on_linear_model(linear):
    mean = (0.2, 0.5, 0.7)
    w = linear.get_layer("logits").get_weights()[0][:, LABELS].T.reshape(3, SIZE, SIZE, 3)
    eg = ExpectedGradients(linear, n_baselines=2, steps=3, baseline_mean=mean, baseline_std=0.0)
    np.testing.assert_allclose(eg(IMAGES, LABELS), (w * (IMAGES - np.array(mean))).sum(-1), rtol=1e-4, atol=1e-5)


def test_eg_completeness_with_constant_baseline(smooth):
    mean = (0.3, 0.4, 0.5)
    baseline = np.broadcast_to(np.array(mean, np.float32), IMAGES.shape)
    target = logits_of(smooth, IMAGES, LABELS) - logits_of(smooth, baseline, LABELS)
    eg = ExpectedGradients(smooth, n_baselines=1, steps=200, baseline_mean=mean, baseline_std=(0, 0, 0))
    maps = eg(IMAGES, LABELS)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), target, rtol=1e-3, atol=1e-4)


def test_eg_samples_normal_baselines_from_image_statistics(linear):
    # Linear model: EG = w * (x - mean over B baselines). Each baseline is redrawn per image from
    # N(mu_c, sd_c) of that image and shared by its `steps` interpolation points, so the residual
    # w * (x - mu) - EG has per-pixel std |w_c| sd_c / sqrt(B) (it would be sqrt(steps) times
    # smaller if baselines were redrawn per step).
    n_baselines = 4
    images = np.concatenate([IMAGES, RNG.uniform(0, 1, (5, SIZE, SIZE, 3)).astype(np.float32)])
    labels = np.zeros(len(images), int)
    w = linear.get_layer("logits").get_weights()[0][:, 0].reshape(SIZE, SIZE, 3)
    mu, sd = images.mean(axis=(1, 2), keepdims=True), images.std(axis=(1, 2), keepdims=True)
    eg = ExpectedGradients(linear, n_baselines=n_baselines, steps=3, reduce="sum")
    residual = (w * (images - mu)).sum(-1) - eg(images, labels)
    expected_std = np.sqrt(((w * sd) ** 2).sum(-1) / n_baselines)
    z = residual / expected_std
    assert abs(z.mean()) < 0.15
    assert 0.85 < z.std() < 1.15


# -- shared properties --------------------------------------------------------------------------
def _random_explainers(model):
    return [
        SmoothGrad(model, n_samples=6, sigma=0.2),
        ExpectedGradients(model, n_baselines=2, steps=3),
    ]


def test_seeds_reproduce_and_differ(smooth):
    for explainer in _random_explainers(smooth):
        a = explainer(IMAGES, LABELS)
        np.testing.assert_array_equal(a, explainer(IMAGES, LABELS))
        reseeded = type(explainer)(smooth, **_params(explainer, seed=5))
        np.testing.assert_array_equal(explainer(IMAGES, LABELS, seed=5), reseeded(IMAGES, LABELS))
        assert not np.allclose(a, explainer(IMAGES, LABELS, seed=1))


def _params(explainer, **overrides):
    return {**explainer.get_params(), **overrides}


def test_results_do_not_depend_on_batch_size_and_never_retrace():
    model = smooth_model(probe=True)
    for explainer in _random_explainers(model) + [IntegratedGradients(model, steps=17)]:  # 51 rows: padded
        big = type(explainer)(model, **_params(explainer, batch_size=64))(IMAGES, LABELS)
        BatchProbe.seen.clear()
        small = type(explainer)(model, **_params(explainer, batch_size=7))
        np.testing.assert_allclose(small(IMAGES, LABELS), big, rtol=1e-5, atol=1e-6)
        traces = small.tracing_count()
        small(IMAGES[::-1], LABELS[::-1], seed=3)  # same shapes, other values
        assert small.tracing_count() == traces == 1
        small(IMAGES[:2], LABELS[:2])  # two images may need one new chunk shape ...
        traces = small.tracing_count()
        small(IMAGES[1:] ** 2, LABELS[1:], seed=4)  # ... but only once
        assert small.tracing_count() == traces
        # the model only ever saw static batches of at most batch_size inputs
        assert BatchProbe.seen and None not in BatchProbe.seen and max(BatchProbe.seen) <= 7


def test_registry_names():
    assert EXPLAINERS["smoothgrad"] is SmoothGrad
    assert EXPLAINERS["integrated_gradients"] is IntegratedGradients
    assert EXPLAINERS["expected_gradients"] is ExpectedGradients


def test_appendix_a_defaults(linear):
    sg, ig, eg = SmoothGrad(linear), IntegratedGradients(linear), ExpectedGradients(linear)
    assert (sg.n_samples, sg.sigma, sg.score) == (256, 0.1, "logit")
    assert (ig.steps, ig.blur_sigma, ig.blur_kernel_size, ig.reduce) == (30, 20.0, 25, "sum")
    assert (eg.n_baselines, eg.steps, eg.samples_per_image, eg.reduce) == (20, 30, 600, "sum")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda m: SmoothGrad(m, n_samples=0), "n_samples"),
        (lambda m: SmoothGrad(m, sigma=-0.1), "sigma"),
        (lambda m: SmoothGrad(m, reduce="mean"), "reduce"),
        (lambda m: IntegratedGradients(m, steps=0), "steps"),
        (lambda m: IntegratedGradients(m, rule="simpson"), "rule"),
        (lambda m: IntegratedGradients(m, steps=1, rule="trapezoid"), "steps"),
        (lambda m: IntegratedGradients(m, blur_kernel_size=4), "blur_kernel_size"),
        (lambda m: ExpectedGradients(m, n_baselines=0), "n_baselines"),
        (lambda m: ExpectedGradients(m, baseline_std=(-1, 0, 0)), "baseline_std"),
        (lambda m: ExpectedGradients(m, baseline_mean=(0.5, 0.5)), "baseline_mean"),
        (lambda m: SmoothGrad(m, batch_size=0), "batch_size"),
    ],
)
def test_bad_hyperparameters_name_the_argument(linear, make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(linear)


@pytest.mark.parametrize(
    "images, labels, match",
    [
        (IMAGES * 2, LABELS, "images"),
        (IMAGES[0], LABELS[:1], "images"),
        (IMAGES[..., :2], LABELS, "images"),
        (IMAGES, np.array([0, 1, 3]), "labels"),
        (IMAGES, np.array([0, 1]), "labels"),
        (np.zeros((1, 4, 4, 3), np.float32), [0], "images"),
    ],
)
def test_bad_inputs_name_the_argument(linear, images, labels, match):
    explainer = SmoothGrad(linear, n_samples=2)
    with pytest.raises(ValueError, match=match):
        explainer(images, labels)
