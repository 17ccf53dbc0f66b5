"""Normalisations of Mahlau & Nolde (2022), Eqs 1-4, checked against their defining properties."""
import numpy as np
import pytest
import tensorflow as tf

from tfagg.normalize import (
    NORMALIZATION_METHODS,
    normalize,
    normalize_l1,
    normalize_l2,
    normalize_linear,
    normalize_zscore,
)


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    # Maps on very different scales, as base attributions are (Sec. 3.1).
    scales = np.array([1e-4, 1.0, 300.0])[:, None, None]
    return (rng.normal(size=(3, 5, 6)) * scales + rng.normal(size=(3, 1, 1))).astype(np.float32)


def test_linear_hand_computed():
    e = np.array([[[1.0, 3.0], [5.0, 2.0]]], np.float32)
    np.testing.assert_allclose(normalize_linear(e), [[[0.0, 0.5], [1.0, 0.25]]], rtol=1e-6)


def test_linear_range_is_exactly_unit_interval(maps):
    out = normalize(maps, "linear")
    assert out.min(axis=(1, 2)).tolist() == [0.0] * 3
    np.testing.assert_allclose(out.max(axis=(1, 2)), 1.0, rtol=1e-6)
    assert np.all((out >= 0) & (out <= 1))


def test_zscore_matches_formula_and_has_unit_population_std(maps):
    out = normalize(maps, "zscore")
    m64 = maps.astype(np.float64)
    expected = (m64 - m64.mean(axis=(1, 2), keepdims=True)) / m64.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, rtol=1e-5)  # ddof = 0


def test_l1_and_l2_give_unit_norm(maps):
    l1 = normalize(maps, "l1")
    l2 = normalize(maps, "l2")
    np.testing.assert_allclose(np.abs(l1).sum(axis=(1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.sqrt((l2.astype(np.float64) ** 2).sum(axis=(1, 2))), 1.0, rtol=1e-5)
    np.testing.assert_allclose(l1 * np.abs(maps).sum(axis=(1, 2), keepdims=True), maps, rtol=1e-4)


def test_l2_hand_computed_and_no_overflow():
    e = np.array([[[3.0, 0.0], [0.0, -4.0]]], np.float32)
    np.testing.assert_allclose(normalize_l2(e), [[[0.6, 0.0], [0.0, -0.8]]], rtol=1e-6)
    np.testing.assert_allclose(normalize_l2(e * 1e30), [[[0.6, 0.0], [0.0, -0.8]]], rtol=1e-6)
    np.testing.assert_allclose(normalize_l1(e), [[[3 / 7, 0.0], [0.0, -4 / 7]]], rtol=1e-6)


def test_each_map_is_normalised_on_its_own(maps):
    ensemble = np.stack([maps, maps[::-1] * 2.0])  # (K=2, N=3, H, W)
    for method in NORMALIZATION_METHODS:
        whole = normalize(ensemble, method)
        assert whole.shape == ensemble.shape and whole.dtype == np.float32
        for k in range(2):
            for n in range(3):
                np.testing.assert_allclose(whole[k, n], normalize(ensemble[k, n], method), rtol=1e-6)


def test_constant_maps_have_documented_finite_values():
    const = np.full((2, 7, 9), 0.1, np.float32)  # 0.1 is not exact in float32: the mean may round
    zero = np.zeros((1, 4, 4), np.float32)
    assert np.array_equal(normalize(const, "linear"), np.zeros_like(const))
    assert np.array_equal(normalize(const, "zscore"), np.zeros_like(const))
    assert np.array_equal(normalize(zero, "l1"), zero)
    assert np.array_equal(normalize(zero, "l2"), zero)
    # A constant non-zero map has a norm and is scaled to unit norm.
    np.testing.assert_allclose(normalize(const, "l1"), 1.0 / 63, rtol=1e-5)
    np.testing.assert_allclose(normalize(const, "l2"), 1.0 / np.sqrt(63), rtol=1e-5)


def test_mixed_batch_constant_map_does_not_affect_others(maps):
    batch = np.concatenate([maps, np.full((1, 5, 6), -2.0, np.float32)])
    for method in ("linear", "zscore"):
        out = normalize(batch, method)
        assert np.all(np.isfinite(out))
        assert np.array_equal(out[-1], np.zeros((5, 6), np.float32))
        np.testing.assert_allclose(out[:-1], normalize(maps, method), rtol=1e-6)


def test_shapes_dtypes_and_inputs():
    e = np.arange(12, dtype=np.float64).reshape(3, 4)
    out = normalize(e, "linear")
    assert out.shape == (3, 4) and out.dtype == np.float32
    np.testing.assert_allclose(normalize(tf.constant(e, tf.float32), "linear"), out)
    np.testing.assert_array_equal(normalize(e, "none"), e.astype(np.float32))
    np.testing.assert_allclose(normalize(e, " ZScore "), normalize_zscore(e))


@pytest.mark.parametrize(
    "bad, exc, message",
    [
        (np.array([[0.0, np.nan]]), ValueError, "NaN"),
        (np.array([[0.0, np.inf]]), ValueError, "NaN or inf"),
        (np.zeros(5), ValueError, "H, W"),
        (np.zeros((2, 0, 3)), ValueError, "empty"),
        (np.zeros((2, 2), complex), TypeError, "real"),
    ],
)
def test_bad_maps_raise(bad, exc, message):
    with pytest.raises(exc, match=message):
        normalize(bad, "zscore")


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="zscore"):
        normalize(np.zeros((2, 2)), "minmax")
    with pytest.raises(TypeError, match="string"):
        normalize(np.zeros((2, 2)), None)
