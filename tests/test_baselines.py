import numpy as np
import pytest

from tfagg.baselines import blur_baseline, normal_baseline, scaled_blur_parameters
from tfagg.random import per_image_keys


@pytest.mark.parametrize("size, kernel", [(8, 25), (5, 7), (32, 25), (3, 11)])
def test_blur_keeps_constant_images_for_any_kernel_size(size, kernel):
    x = np.full((2, size, size, 3), 0.3, np.float32)
    y = blur_baseline(x, sigma=4.0, kernel_size=kernel).numpy()
    assert y.shape == x.shape
    np.testing.assert_allclose(y, 0.3, atol=1e-6)


def test_blur_preserves_the_mean_of_a_periodic_ramp_and_smooths():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(1, 16, 16, 3)).astype(np.float32)
    y = blur_baseline(x, sigma=2.0, kernel_size=5).numpy()
    assert y.std() < x.std()
    assert abs(y.mean() - x.mean()) < 0.02


def test_scaled_blur_parameters():
    assert scaled_blur_parameters(224) == (20.0, 25)
    s, k = scaled_blur_parameters(64)
    assert k % 2 == 1 and abs(s - 20 * 64 / 224) < 1e-9


def test_normal_baseline_statistics_and_seeding():
    rng = np.random.default_rng(1)
    x = (rng.uniform(size=(2, 64, 64, 3)) * np.array([0.2, 0.5, 1.0])).astype(np.float32)
    keys = per_image_keys(0, 2, "baseline")
    b = normal_baseline(x, keys).numpy()
    np.testing.assert_allclose(b.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=0.01)
    np.testing.assert_allclose(b.std(axis=(1, 2)), x.std(axis=(1, 2)), rtol=0.05)
    np.testing.assert_array_equal(b, normal_baseline(x, keys).numpy())
    b2 = normal_baseline(x, keys, mean=[0.5, 0.5, 0.5], std=[0.1, 0.1, 0.1]).numpy()
    np.testing.assert_allclose(b2.mean(axis=(1, 2)), 0.5, atol=0.01)
    assert not np.allclose(b, normal_baseline(x, per_image_keys(1, 2, "baseline")).numpy())
