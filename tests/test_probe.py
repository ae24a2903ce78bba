"""The linear-probe floor's ridge regression (benchmarks/probe.py), from its accumulated sums."""

import numpy as np
import pytest

from benchmarks import probe


def cell_rgb_features(variables, images):
  """Stand-in features per grid cell: its mean RGB, their squares, and a constant column."""
  del variables
  n, size = len(images), images.shape[1]
  cells = images.reshape(n, probe.GRID, size // probe.GRID, probe.GRID, size // probe.GRID, 3).mean(axis=(2, 4))
  cells = cells.reshape(-1, 3) / 255.0
  return np.concatenate([cells, cells**2, np.ones((len(cells), 1))], axis=1)


def test_the_probe_is_the_ridge_regression_of_standardised_features(monkeypatch):
  monkeypatch.setattr(probe, "features_of", cell_rgb_features)
  images = np.random.default_rng(0).integers(0, 256, (40, 64, 64, 3), np.uint8)  # 3 batches of 16.
  ((mean, std, weights, intercept),) = probe.fit(None, images, [10.0]).values()
  x = cell_rgb_features(None, images)
  y = probe.cell_colours(images).reshape(-1, 2).astype(np.float64)
  scale = np.where(x.std(0) > 1e-4, x.std(0), 1.0)  # The constant column stays unscaled.
  z = (x - x.mean(0)) / scale
  expected = np.linalg.solve(z.T @ z + 10.0 * np.eye(z.shape[1]), z.T @ (y - y.mean(0)))
  np.testing.assert_allclose(weights, expected, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(intercept, y.mean(0), rtol=1e-9)
  np.testing.assert_allclose(mean, x.mean(0), rtol=1e-9)
  assert std[-1] == 1.0 and std[:-1] == pytest.approx(x.std(0)[:-1], rel=1e-6)
