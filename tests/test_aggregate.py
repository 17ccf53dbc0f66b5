"""Aggregations of Mahlau & Nolde (2022), Eqs 5-16, against independent numpy/scipy computations."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import norm

from tfagg.aggregate import (
    AGGREGATIONS,
    DEFAULT_HYPERPARAMETERS,
    TABLE1_METHODS,
    aei,
    aggregate,
    api,
    average,
    ci,
    contextual_epsilon,
    ei,
    percentile,
    pi,
    rbm,
    ucb,
    var,
)
from tfagg.aggregate.rbm import orient_hidden

PIXELWISE = [m for m in TABLE1_METHODS if m != "rbm"]


@pytest.fixture
def ensemble():
    """(K=5, N=3, H=4, W=6) z-score-like ensemble."""
    return np.random.default_rng(0).normal(size=(5, 3, 4, 6)).astype(np.float32)


def stats(ens):
    """Independent float64 mean (Eq 6), population std (Eq 7) and per-image E+."""
    e = ens.astype(np.float64)
    mu = e.mean(axis=0)
    sigma = e.std(axis=0)  # ddof = 0
    best = mu.max(axis=(1, 2), keepdims=True)
    return mu, sigma, best


def pi_reference(ens, eps):
    mu, sigma, best = stats(ens)
    return norm.cdf((mu - best - eps) / sigma)


def ei_reference(ens, eps):
    mu, sigma, best = stats(ens)
    d = mu - best - eps
    z = d / sigma
    return norm.cdf(z) * d + sigma * norm.pdf(z)


# --- hand-computed small case -------------------------------------------------------------

def test_hand_computed_single_pixel_values():
    # One image, two pixels, K = 2: pixel 0 has members (1, 3), pixel 1 has (0, 0.5).
    ens = np.array([[[[1.0, 0.0]]], [[[3.0, 0.5]]]], np.float32)  # (2, 1, 1, 2)
    # mu = (2, 0.25), sigma = (1, 0.25), E+ = 2
    np.testing.assert_allclose(average(ens), [[[2.0, 0.25]]])
    np.testing.assert_allclose(ucb(ens, epsilon=-0.5), [[[1.5, 0.125]]])
    np.testing.assert_allclose(var(ens, epsilon=1.0, delta=1.0), [[[1.0, 0.2]]], rtol=1e-6)
    # PI with eps = -1: Z = (1, (0.25 - 2 + 1) / 0.25 = -3)
    np.testing.assert_allclose(pi(ens, epsilon=-1.0), [[[norm.cdf(1.0), norm.cdf(-3.0)]]], rtol=1e-6)
    # EI with eps = -1: d = (1, -0.75)
    expected = [norm.cdf(1.0) * 1.0 + norm.pdf(1.0), norm.cdf(-3.0) * -0.75 + 0.25 * norm.pdf(-3.0)]
    np.testing.assert_allclose(ei(ens, epsilon=-1.0), [[expected]], rtol=1e-5)
    # Eq 11: eps = mean(sigma^2) / E+ = ((1 + 1/16) / 2) / 2
    np.testing.assert_allclose(contextual_epsilon(ens), [17 / 64], rtol=1e-6)


def test_average_and_ucb_match_formulas(ensemble):
    mu, sigma, _ = stats(ensemble)
    np.testing.assert_allclose(average(ensemble), mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ucb(ensemble, epsilon=-0.7), mu - 0.7 * sigma, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ucb(ensemble, epsilon=0.0), average(ensemble), rtol=1e-6, atol=1e-7)


def test_percentile_matches_numpy_exactly():
    rng = np.random.default_rng(1)
    for k_members in range(1, 9):
        ens = rng.normal(size=(k_members, 2, 3, 5)).astype(np.float32)
        # np.median averages the middle pair instead of interpolating: equal up to one ulp.
        np.testing.assert_allclose(percentile(ens, 50), np.median(ens, axis=0), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(percentile(ens, 50), np.percentile(ens, 50, axis=0))
        np.testing.assert_array_equal(percentile(ens, 0), ens.min(axis=0))
        np.testing.assert_array_equal(percentile(ens, 100), ens.max(axis=0))
        for k in (1.0, 12.5, 25.0, 33.3, 40.0, 62.5, 75.0, 99.9):
            np.testing.assert_array_equal(percentile(ens, k), np.percentile(ens, k, axis=0))


def test_pi_ei_match_scipy(ensemble):
    for eps in (-4.0, -1.0, 0.0, 0.5):
        np.testing.assert_allclose(pi(ensemble, epsilon=eps), pi_reference(ensemble, eps), atol=1e-6)
        np.testing.assert_allclose(ei(ensemble, epsilon=eps), ei_reference(ensemble, eps), rtol=1e-5, atol=1e-6)


def test_ci_is_ei_with_eq11_epsilon_per_image(ensemble):
    _, sigma, best = stats(ensemble)
    eps = (sigma**2).mean(axis=(1, 2)) / best[:, 0, 0]  # Eq 11, one rate per image
    np.testing.assert_allclose(contextual_epsilon(ensemble), eps, rtol=1e-5)
    out = ci(ensemble)
    for n in range(ensemble.shape[1]):
        np.testing.assert_allclose(out[n], ei(ensemble[:, n : n + 1], epsilon=float(eps[n]))[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(out[n], ei_reference(ensemble[:, n : n + 1], eps[n])[0], rtol=1e-4, atol=1e-7)


def test_api_aei_average_over_evenly_spaced_rates(ensemble):
    rates = np.linspace(-7.0, 2.0, 4)
    np.testing.assert_allclose(
        api(ensemble, a=-7.0, b=2.0, n_samples=4),
        np.mean([pi_reference(ensemble, r) for r in rates], axis=0),
        atol=1e-6,
    )
    rates = np.linspace(-10.0, 5.0, 7)
    np.testing.assert_allclose(
        aei(ensemble, a=-10.0, b=5.0, n_samples=7),
        np.mean([ei_reference(ensemble, r) for r in rates], axis=0),
        rtol=1e-5,
        atol=1e-6,
    )


def test_api_aei_with_one_sample_are_pi_ei_at_a(ensemble):
    np.testing.assert_array_equal(api(ensemble, a=-3.0, b=2.0, n_samples=1), pi(ensemble, epsilon=-3.0))
    np.testing.assert_array_equal(aei(ensemble, a=-3.0, b=2.0, n_samples=1), ei(ensemble, epsilon=-3.0))
    # a == b is a degenerate but valid interval: every sample is a.
    np.testing.assert_allclose(api(ensemble, a=-1.0, b=-1.0, n_samples=5), pi(ensemble, epsilon=-1.0), rtol=1e-6)


def test_ei_with_very_negative_epsilon_ranks_like_average(ensemble):
    # Sec. 4.2.4: Phi(Z) -> 1, phi(Z) -> 0, so EI = average - E+ - eps (a per-image shift).
    out, avg = ei(ensemble, epsilon=-30.0), average(ensemble)
    for n in range(ensemble.shape[1]):
        order = np.argsort(avg[n].ravel())
        assert np.all(np.diff(out[n].ravel()[order]) > 0)
    _, _, best = stats(ensemble)
    np.testing.assert_allclose(out, avg - best + 30.0, rtol=1e-6)


def test_var_formula_and_limits(ensemble):
    mu, sigma, _ = stats(ensemble)
    np.testing.assert_allclose(var(ensemble, epsilon=0.3, delta=0.2), mu / (0.3 * sigma + 0.2), rtol=1e-5)
    # epsilon = 0: exactly the average divided by delta.
    np.testing.assert_allclose(var(ensemble, epsilon=0.0), average(ensemble) / 1e-7, rtol=1e-6)
    np.testing.assert_allclose(var(ensemble, epsilon=0.0, delta=2.0), average(ensemble) / 2.0, rtol=1e-6)
    # Small epsilon relative to delta stays close to the (scaled) average (Sec. 4.2.5) ...
    np.testing.assert_allclose(var(ensemble, epsilon=1e-12) * 1e-7, average(ensemble), rtol=1e-4, atol=1e-6)
    # ... and large epsilon approaches Rieger & Hansen's mu / sigma.
    np.testing.assert_allclose(var(ensemble, epsilon=1.0) * 1.0, mu / (sigma + 1e-7), rtol=1e-5)


# --- degenerate statistics ------------------------------------------------------------------

def test_zero_sigma_pixels_use_the_documented_limits():
    # One image, 3 pixels where all K = 3 members agree (sigma = 0), 1 pixel where they do not.
    agree = np.array([2.0, 1.0, -1.0], np.float32)
    ens = np.zeros((3, 1, 1, 4), np.float32)
    ens[:, 0, 0, :3] = agree
    ens[:, 0, 0, 3] = [0.0, 0.5, 1.0]
    # mu = (2, 1, -1, 0.5); E+ = 2 at a sigma = 0 pixel.
    d = np.array([2.0, 1.0, -1.0]) - 2.0 - (-1.0)  # eps = -1 -> d = (1, 0, -2)
    p, e = pi(ens, epsilon=-1.0)[0, 0], ei(ens, epsilon=-1.0)[0, 0]
    np.testing.assert_array_equal(p[:3], [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(e[:3], np.maximum(d, 0.0))
    # eps = 0: the E+ pixel has d = 0 exactly.
    assert pi(ens, epsilon=0.0)[0, 0, 0] == 0.5 and ei(ens, epsilon=0.0)[0, 0, 0] == 0.0
    for method in PIXELWISE:
        assert np.all(np.isfinite(aggregate(ens, method)))


def test_zero_sigma_even_when_the_float32_mean_would_round():
    ens = np.full((7, 1, 2, 2), 0.1, np.float32)  # sum of seven 0.1f is not 7 * 0.1f
    ens[:, 0, 1, 1] = np.arange(7)
    np.testing.assert_array_equal(ucb(ens, epsilon=5.0)[0, 0], np.float32([0.1, 0.1]))
    assert pi(ens, epsilon=-10.0)[0, 0, 0] == 1.0


def test_huge_z_gives_exact_probabilities_not_nan():
    ens = np.zeros((2, 1, 1, 3), np.float32)
    ens[:, 0, 0, 0] = [1.0, 1.0 + 1e-6]  # tiny sigma, E+ pixel
    ens[:, 0, 0, 1] = [-1e30, -1e30 + 1e24]  # huge negative improvement
    ens[:, 0, 0, 2] = [0.0, 1e-30]
    for eps in (-1e3, 0.0, 1e3):
        for fn in (pi, ei, ci, api, aei):
            out = fn(ens) if fn is ci else (fn(ens, epsilon=eps) if fn in (pi, ei) else fn(ens, a=eps, b=eps + 1))
            assert np.all(np.isfinite(out)), (fn.__name__, eps)
    assert pi(ens, epsilon=-1e3)[0, 0, 0] == 1.0 and pi(ens, epsilon=1e3)[0, 0, 0] == 0.0


def test_ci_with_zero_incumbent_falls_back_to_epsilon_zero():
    ens = np.stack([np.ones((1, 2, 2)), -np.ones((1, 2, 2))]).astype(np.float32)  # mu = 0 everywhere
    np.testing.assert_array_equal(contextual_epsilon(ens), [0.0])
    np.testing.assert_allclose(ci(ens), ei(ens, epsilon=0.0))
    assert np.all(np.isfinite(ci(ens)))


def test_single_member_ensemble():
    member = np.random.default_rng(2).normal(size=(1, 2, 3, 3)).astype(np.float32)
    for method in TABLE1_METHODS:
        kwargs = {"n_iter": 2} if method == "rbm" else {}
        out = aggregate(member, method, **kwargs)
        assert out.shape == (2, 3, 3) and out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_array_equal(percentile(member, 25), member[0])
    np.testing.assert_array_equal(ucb(member, epsilon=3.0), member[0])
    best = member[0].max(axis=(1, 2), keepdims=True)
    np.testing.assert_array_equal(ei(member, epsilon=0.0), np.maximum(member[0] - best, 0.0))


# --- shapes, inputs, batch independence -------------------------------------------------------

def test_shapes_dtypes_and_input_forms(ensemble):
    as_list = list(ensemble)
    as_tensor = tf.constant(ensemble.astype(np.float64))
    for method in PIXELWISE:
        out = aggregate(ensemble, method)
        assert out.shape == (3, 4, 6) and out.dtype == np.float32
        np.testing.assert_array_equal(aggregate(as_list, method), out)
        np.testing.assert_array_equal(aggregate(as_tensor, method), out)


def test_each_image_is_aggregated_on_its_own(ensemble):
    # E+ and Eq 11 are per image, so an image's map must not depend on its batch mates.
    for method in PIXELWISE:
        whole = aggregate(ensemble, method)
        for n in range(ensemble.shape[1]):
            np.testing.assert_allclose(whole[n], aggregate(ensemble[:, n : n + 1], method)[0], rtol=1e-6, atol=1e-7)


# --- RBM ----------------------------------------------------------------------------------

def _toy_ensemble(seed=1, size=24):
    """5 members share a bright square (plus mild noise), 2 members are pure noise; z-scored."""
    rng = np.random.default_rng(seed)
    square = np.zeros((size, size), bool)
    square[6:14, 8:16] = True
    members = [square + 0.3 * rng.normal(size=square.shape) for _ in range(5)]
    members += [rng.normal(size=square.shape) for _ in range(2)]
    ens = np.stack(members)[:, None]
    ens = (ens - ens.mean(axis=(2, 3), keepdims=True)) / ens.std(axis=(2, 3), keepdims=True)
    return ens.astype(np.float32), square


def test_rbm_ranks_the_agreed_region_highest_and_is_a_probability():
    ens, square = _toy_ensemble()
    out = rbm(ens, seed=3)  # Table 1 defaults: alpha = 1e-4, k = 100
    assert out.shape == (1, 24, 24) and out.dtype == np.float32
    assert np.all((out >= 0.0) & (out <= 1.0))
    assert out[0][square].mean() > out[0][~square].mean()
    # Most of the top pixels of the RBM map lie in the square.
    top = np.argsort(out[0].ravel())[-square.sum():]
    assert square.ravel()[top].mean() > 0.8


def test_rbm_is_deterministic_per_seed_and_per_image():
    ens, _ = _toy_ensemble()
    two = np.concatenate([ens, ens[:, :, ::-1]], axis=1)  # two images
    first = rbm(two, n_iter=5, seed=7)
    np.testing.assert_array_equal(first, rbm(two, n_iter=5, seed=7))
    np.testing.assert_array_equal(first[1], rbm(two[:, 1:], n_iter=5, seed=7)[0])
    assert not np.array_equal(first, rbm(two, n_iter=5, seed=8))


def test_orientation_flips_an_inverted_code():
    reference = np.linspace(0.0, 1.0, 100)
    inverted = 1.0 - reference**2
    np.testing.assert_allclose(orient_hidden(inverted, reference), reference**2)
    np.testing.assert_array_equal(orient_hidden(reference**2, reference), reference**2)


# --- registry -----------------------------------------------------------------------------

def test_registry_and_table1_defaults():
    assert TABLE1_METHODS == ["average", "rbm", "var", "ucb", "percentile", "pi", "ei", "ci", "api", "aei"]
    assert set(TABLE1_METHODS) == set(AGGREGATIONS)
    d = DEFAULT_HYPERPARAMETERS
    assert d["ucb"] == {"epsilon": -0.5}
    assert d["percentile"] == {"k": 25.0}
    assert d["pi"] == {"epsilon": -4.0} and d["ei"] == {"epsilon": -6.0} and d["ci"] == {}
    assert (d["api"]["a"], d["api"]["b"]) == (-7.0, 2.0)
    assert (d["aei"]["a"], d["aei"]["b"]) == (-10.0, 5.0)
    assert d["var"]["epsilon"] == 1e-7
    assert d["rbm"]["learning_rate"] == 1e-4 and d["rbm"]["n_iter"] == 100


def test_aggregate_dispatches_with_overrides(ensemble):
    np.testing.assert_array_equal(aggregate(ensemble, "UCB", epsilon=0.25), ucb(ensemble, epsilon=0.25))
    np.testing.assert_array_equal(aggregate(ensemble, "percentile"), percentile(ensemble, 25))


# --- bad input ----------------------------------------------------------------------------

def test_unknown_names_raise_clear_errors(ensemble):
    with pytest.raises(ValueError, match="average"):
        aggregate(ensemble, "median")
    with pytest.raises(TypeError, match="epsilon"):
        aggregate(ensemble, "ucb", eps=0.1)
    with pytest.raises(TypeError, match="none"):
        aggregate(ensemble, "ci", epsilon=0.1)


@pytest.mark.parametrize(
    "bad, exc, message",
    [
        (np.full((2, 1, 2, 2), np.nan), ValueError, "NaN"),
        (np.full((2, 1, 2, 2), np.inf), ValueError, "NaN or inf"),
        ([np.zeros((1, 2, 2)), np.zeros((1, 3, 2))], ValueError, "same shape"),
        (np.zeros((2, 4, 4)), ValueError, r"\(K, N, H, W\)"),
        (np.zeros((2, 1, 1, 4, 4)), ValueError, r"\(K, N, H, W\)"),
        ([], ValueError, "empty"),
        (np.zeros((0, 1, 4, 4)), ValueError, "empty"),
        (np.zeros((2, 0, 4, 4)), ValueError, "empty"),
        (np.zeros((2, 1, 2, 2), complex), TypeError, "real"),
    ],
)
@pytest.mark.parametrize("method", ["average", "ei", "rbm"])
def test_bad_ensembles_raise(bad, exc, message, method):
    with pytest.raises(exc, match=message):
        aggregate(bad, method)


@pytest.mark.parametrize(
    "method, kwargs, exc, message",
    [
        ("percentile", {"k": 101}, ValueError, r"\[0, 100\]"),
        ("percentile", {"k": -1}, ValueError, r"\[0, 100\]"),
        ("percentile", {"k": "25"}, TypeError, "`k`"),
        ("api", {"a": 2.0, "b": -7.0}, ValueError, "a <= b"),
        ("aei", {"a": 5.0, "b": -10.0}, ValueError, "a <= b"),
        ("api", {"n_samples": 0}, ValueError, "n_samples"),
        ("aei", {"n_samples": 2.5}, TypeError, "n_samples"),
        ("ucb", {"epsilon": float("nan")}, TypeError, "epsilon"),
        ("var", {"epsilon": -1.0}, ValueError, "epsilon"),
        ("var", {"delta": 0.0}, ValueError, "delta"),
        ("rbm", {"learning_rate": 0.0}, ValueError, "learning_rate"),
        ("rbm", {"n_iter": 0}, ValueError, "n_iter"),
        ("rbm", {"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_bad_hyperparameters_raise(ensemble, method, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        aggregate(ensemble, method, **kwargs)


def test_float32_overflow_of_the_result_is_an_error_not_inf():
    big = np.full((2, 1, 2, 2), 1e35, np.float32)
    big[1] = 2e35
    np.testing.assert_allclose(average(big), 1.5e35, rtol=1e-6)  # the sum would overflow float32 but not the mean
    with pytest.raises(ValueError, match="float32 range"):
        var(big, epsilon=0.0)  # mu / delta = 1.5e42
