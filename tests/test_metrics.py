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
  # Another data range, with an MSE below 1: 1 / 0.01 -> 20 dB.
  assert float(metrics.psnr(real + 0.1, real, data_range=1.0)[0]) == pytest.approx(20.0, rel=1e-4)


def low_contrast_pair(seed=2, shape=(2, 20, 24, 3)):
  """Dark, nearly flat images: SSIM's constants and its sample-covariance factor matter here."""
  rng = np.random.default_rng(seed)
  real = rng.integers(0, 6, shape).astype(np.float32)
  return np.clip(real + rng.integers(-2, 3, shape), 0, 255).astype(np.float32), real


def unit_range_pair():
  """Floats in [0, 1] (data range 1): SSIM's constants are tiny, its local statistics rule."""
  predicted, real = pair(3)
  return predicted / 255.0, real / 255.0


@pytest.mark.parametrize(
  "make_pair, data_range",
  [(pair, 255.0), (low_contrast_pair, 255.0), (unit_range_pair, 1.0)],
  ids=["noisy", "low_contrast", "unit_range"],
)
def test_psnr_and_ssim_match_scikit_image(make_pair, data_range):
  predicted, real = make_pair()
  for i in range(2):
    expected_psnr = peak_signal_noise_ratio(real[i], predicted[i], data_range=data_range)
    expected_ssim = structural_similarity(real[i], predicted[i], data_range=data_range, channel_axis=-1)
    range_argument = {} if data_range == 255.0 else {"data_range": data_range}  # 255: the default
    assert float(metrics.psnr(predicted, real, **range_argument)[i]) == pytest.approx(expected_psnr, rel=1e-5)
    assert float(metrics.ssim(predicted, real, **range_argument)[i]) == pytest.approx(expected_ssim, abs=1e-4)
  assert float(metrics.ssim(real, real)[0]) == pytest.approx(1.0, abs=1e-6)


def test_colorfulness_by_hand():
  gray = np.full((1, 4, 4, 3), 128.0, np.float32)
  assert float(metrics.colorfulness(gray)[0]) == pytest.approx(0.0)
  red = np.zeros((1, 4, 4, 3), np.float32)
  red[..., 0] = 200.0  # rg = 200, yb = 100 everywhere: no spread, mean term only
  assert float(metrics.colorfulness(red)[0]) == pytest.approx(0.3 * np.hypot(200.0, 100.0), rel=1e-5)


def colorfulness_by_numpy(image):
  """Hasler & Suesstrunk (2003) for one float RGB image, written out."""
  rg = image[..., 0] - image[..., 1]
  yb = 0.5 * (image[..., 0] + image[..., 1]) - image[..., 2]
  return np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())


def test_colorfulness_of_each_image_of_a_batch():
  rng = np.random.default_rng(3)
  images = np.stack([rng.uniform(0, 255, (6, 5, 3)), rng.uniform(0, 255, (6, 5, 3)) * [1.0, 0.3, 0.6]])
  expected = [colorfulness_by_numpy(image) for image in images]
  np.testing.assert_allclose(metrics.colorfulness(images.astype(np.float32)), expected, rtol=1e-5)


def test_image_metrics_of_a_perfect_prediction():
  _, real = pair(1)
  real_uint8 = real.astype(np.uint8)
  perfect = color.uint8_rgb_to_normalized_lab(real_uint8)
  result = metrics.image_metrics(perfect, real_uint8)
  np.testing.assert_allclose(result["accuracy"], 1.0)
  np.testing.assert_allclose(result["mae_rgb"], 0.0)
  np.testing.assert_allclose(result["colorfulness"], result["real_colorfulness"], rtol=1e-6)


def test_output_metrics_score_uint8_outputs_like_the_single_metrics():
  predicted, real = (x.astype(np.uint8) for x in pair(4))  # uint8: a difference must not wrap around
  result = metrics.output_metrics(predicted, real)
  expected_keys = {"accuracy", "mae_rgb", "psnr", "ssim", "colorfulness", "real_colorfulness"}
  assert set(result) == expected_keys
  for i in range(2):
    expected_psnr = peak_signal_noise_ratio(real[i], predicted[i], data_range=255)
    expected_ssim = structural_similarity(real[i], predicted[i], data_range=255, channel_axis=-1)
    assert float(result["psnr"][i]) == pytest.approx(expected_psnr, rel=1e-5)
    assert float(result["ssim"][i]) == pytest.approx(expected_ssim, abs=1e-4)
    mae = np.abs(predicted[i].astype(float) - real[i]).mean()
    assert float(result["mae_rgb"][i]) == pytest.approx(mae, rel=1e-5)
    assert float(result["colorfulness"][i]) == pytest.approx(colorfulness_by_numpy(predicted[i].astype(float)), 1e-5)


def test_derived_metrics_are_the_colourfulness_gaps_and_the_total_discriminator_loss():
  averages = {
    "colorfulness": 20.0,
    "gray/colorfulness": 0.0,
    "kept_l/colorfulness": 50.0,
    "real_colorfulness": 30.0,
    "d_loss_real": 0.25,
    "d_loss_fake": 1.5,
  }
  derived = metrics.with_derived_metrics(averages)
  assert derived == {
    **averages,
    "delta_colorfulness": 10.0,
    "gray/delta_colorfulness": 30.0,
    "kept_l/delta_colorfulness": 20.0,
    "d_loss": 1.75,
  }
  assert metrics.with_derived_metrics({"psnr": 20.0}) == {"psnr": 20.0}  # Nothing to derive from.
