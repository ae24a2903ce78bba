"""Colour points that spread (`propagate.py`): the solver against the energy itself, edges that
stop the colour, and photos without points left exactly as they were."""

import itertools

import numpy as np
import pytest
import skimage.data
from PIL import Image

from colorize import color
from colorize.colouring import predict
from colorize.colouring import propagate
from colorize.data import photos
from colorize.networks import inference
from colorize.networks import models
from colorize.runs import bundle


def energy(r: np.ndarray, lightness: np.ndarray, hinted: np.ndarray, targets: np.ndarray, spread) -> float:
  """The energy of one channel's residual r [H, W], written out pixel by pixel from its definition."""
  height, width = lightness.shape
  inside = lambda y, x: 0 <= y < height and 0 <= x < width  # noqa: E731
  weights = {}
  for y, x in itertools.product(range(height), range(width)):
    window = [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if inside(y + dy, x + dx)]
    variance = np.clip(np.var([lightness[p] for p in window]), spread.min_variance, spread.max_variance)
    near = {q: np.exp(-((lightness[y, x] - lightness[q]) ** 2) / (2 * variance)) for q in window if q != (y, x)}
    total = sum(near.values())
    weights[y, x] = {q: w / total for q, w in near.items()}
  if spread.form == "levin":
    smooth = sum((r[p] - sum(w * r[q] for q, w in weights[p].items())) ** 2 for p in weights)
  else:  # Each pair once, with the mean of its two directed weights.
    smooth = sum((w + weights[q][p]) / 2 * (r[p] - r[q]) ** 2 / 2 for p in weights for q, w in weights[p].items())
  return float(smooth + spread.decay * np.sum(r**2) + spread.weight * np.sum(hinted * (r - targets) ** 2))


def dense_minimum(lightness, hinted, targets, spread) -> np.ndarray:
  """The energy's minimum from its own values: a quadratic's Hessian and gradient by differences."""
  size = lightness.size
  unit = np.eye(size).reshape(size, *lightness.shape)
  at = lambda r: energy(r, lightness, hinted, targets, spread)  # noqa: E731
  zero = at(np.zeros(lightness.shape))
  single = np.array([at(unit[i]) for i in range(size)])
  hessian = np.array([[at(unit[i] + unit[j]) - single[i] - single[j] + zero for j in range(size)] for i in range(size)])
  gradient = (single - np.array([at(-unit[i]) for i in range(size)])) / 2
  return np.linalg.solve(hessian, -gradient).reshape(lightness.shape)


@pytest.mark.parametrize("form", ["laplacian", "levin"])
def test_the_sparse_solve_is_the_minimum_of_the_energy_as_written(form):
  rng = np.random.default_rng(0)
  lightness = rng.uniform(20, 80, (4, 5))
  lightness[:, 3:] += 15  # An edge.
  hinted = np.zeros((4, 5), bool)
  hinted[1, 1] = hinted[2, 4] = True
  targets = rng.uniform(-40, 40, (4, 5, 2))
  spread = propagate.Spread(decay=1e-3, weight=50.0, min_variance=4.0, form=form)
  solved = propagate.residual(lightness, hinted, targets, spread)
  for channel in range(2):
    expected = dense_minimum(lightness, hinted, targets[..., channel], spread)
    np.testing.assert_allclose(solved[..., channel], expected, atol=2e-3 * np.abs(expected).max())


def test_a_point_fills_its_region_and_stops_at_an_edge():
  """Two flat regions, dark and light: a point in the dark one colours all of it, far from the
  point too, and leaves the light one as the generator coloured it."""
  lightness = np.full((40, 60), 30.0)
  lightness[:, 30:] = 70.0
  automatic = np.zeros((40, 60, 2), np.float32)
  channels = np.zeros((40, 60, 3), np.float32)
  channels[18:21, 5:8] = [40 / 110, -30 / 110, 1.0]  # A 3x3 point near the dark region's left edge.
  spread_ab = propagate.spread_hints(lightness, automatic, channels, propagate.SPREAD)
  dark, light = spread_ab[:, :30], spread_ab[:, 30:]
  # Every dark pixel takes at least 80% of the point's colour (the decay keeps the rest: measured
  # 85-89%), the far side of the region included; the light region keeps the generator's colour.
  assert np.all(np.abs(dark - [40, -30]) < 0.2 * np.array([40, 30]))
  assert np.abs(light).max() < 0.05 * 50, np.abs(light).max()


@pytest.fixture(scope="module")
def bundled():
  config = bundle.bundle_config(bundle.BUNDLED)
  generator, variables, _ = inference.load_generator(config, bundle.BUNDLED)
  return config, generator, variables


def coloured(bundled, image, points, spread, learned_channels=False):
  config, generator, variables = bundled
  photo = photos.Photo("", "", image, None, hints=points)
  multiple = models.input_multiple(config.model)
  options = dict(spread=spread, learned_channels=learned_channels)
  (out,) = predict.colorize_group(generator, variables, [photo], config.image_size, multiple, **options)
  return out


@pytest.mark.slow  # Three batches through the bundled model: 10 s.
def test_without_points_the_output_is_bit_for_bit_the_automatic_one(bundled):
  """No points at all, an empty list of them (the app's), and a photo without points batched
  beside one with points: each the automatic colours, bit for bit."""
  config, generator, variables = bundled
  image = np.asarray(Image.fromarray(skimage.data.coffee()).resize((192, 128)))
  other = np.asarray(Image.fromarray(skimage.data.chelsea()).resize((192, 128)))
  automatic = coloured(bundled, image, None, None)
  np.testing.assert_array_equal(coloured(bundled, image, np.zeros((0, 5), np.float32), propagate.SPREAD), automatic)

  def pair(points_of_other):
    group = [photos.Photo("", "", image, None), photos.Photo("", "", other, None, hints=points_of_other)]
    return predict.colorize_group(generator, variables, group, config.image_size, models.input_multiple(config.model))

  alone, beside_points = pair(None)[0], pair(np.array([[60, 40, 0, -40.0, 40.0]], np.float32))[0]
  np.testing.assert_array_equal(beside_points, alone)


def test_a_point_moves_far_more_of_the_photo_when_it_spreads(bundled):
  image = np.asarray(Image.fromarray(skimage.data.chelsea()).resize((192, 128)))
  points = np.array([[60, 40, 0, -40.0, 40.0]], np.float32)  # A green point on the cat's fur.
  automatic = coloured(bundled, image, None, None)
  moved = {}
  for name, spread, learned in (("channels", None, True), ("spread", propagate.SPREAD, False)):
    out = coloured(bundled, image, points, spread, learned)
    distance = np.linalg.norm(
      color.rgb_to_lab(out / 255.0, np)[..., 1:] - color.rgb_to_lab(automatic / 255.0, np)[..., 1:], axis=-1
    )
    moved[name] = int((distance > 2).sum())
  assert moved["spread"] > 5 * max(moved["channels"], 100), moved
