"""The evaluation metrics against hand-computed values and scikit-image."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from colorize import color
from colorize import metrics


def pair(seed=0, shape=(2, 20, 24, 3)):
  rng = np.random.default_rng(seed)
  real = rng.integers(0, 256, shape).astype(np.float32)
  noisy = np.clip(real + rng.normal(0, 20, shape), 0, 255).round().astype(np.float32)
  return noisy, real


def test_mae_and_psnr_by_hand():
  real = np.zeros((1, 2, 2, 3), np.float32)
  predicted = real.copy()
  predicted[0, 0, 0] = [12.0, 0.0, 0.0]  # one channel of one pixel off by 12: MAE 1, MSE 12
  assert float(metrics.mae_rgb(predicted, real)[0]) == pytest.approx(1.0)
  assert float(metrics.psnr(predicted, real)[0]) == pytest.approx(10 * np.log10(255**2 / 12.0), rel=1e-5)


def test_psnr_and_ssim_match_scikit_image():
  predicted, real = pair()
  for i in range(2):
    expected_psnr = peak_signal_noise_ratio(real[i], predicted[i], data_range=255)
    expected_ssim = structural_similarity(real[i], predicted[i], data_range=255, channel_axis=-1)
    assert float(metrics.psnr(predicted, real)[i]) == pytest.approx(expected_psnr, rel=1e-5)
    assert float(metrics.ssim(predicted, real)[i]) == pytest.approx(expected_ssim, abs=1e-4)
  assert float(metrics.ssim(real, real)[0]) == pytest.approx(1.0, abs=1e-6)


def test_colorfulness_by_hand():
  gray = np.full((1, 4, 4, 3), 128.0, np.float32)
  assert float(metrics.colorfulness(gray)[0]) == pytest.approx(0.0)
  red = np.zeros((1, 4, 4, 3), np.float32)
  red[..., 0] = 200.0  # rg = 200, yb = 100 everywhere: no spread, mean term only
  assert float(metrics.colorfulness(red)[0]) == pytest.approx(0.3 * np.hypot(200.0, 100.0), rel=1e-5)


def test_image_metrics_of_a_perfect_prediction():
  _, real = pair(1)
  real_uint8 = real.astype(np.uint8)
  perfect = color.uint8_rgb_to_normalized_lab(real_uint8)
  result = metrics.image_metrics(perfect, real_uint8)
  np.testing.assert_allclose(result["accuracy"], 1.0)
  np.testing.assert_allclose(result["mae_rgb"], 0.0)
  np.testing.assert_allclose(result["colorfulness"], result["real_colorfulness"], rtol=1e-6)
