"""User colour hints: their encoding, the simulated training hints, hint files, and the generators."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from PIL import Image

from colorize import color
from colorize import hints
from colorize.colouring import hint_points
from colorize.networks import layers
from colorize.networks import models
from colorize.training import steps
from tests.conftest import run_main
from tests.conftest import tiny_config
from tests.test_steps import smooth_colour_images
from tests.test_steps import steps_on_fixed_batch


def painted(points, height, width):
  """The hint channels painted point by point with slices (the later point on top)."""
  out = np.zeros((height, width, 3), np.float32)
  for top, left, size, a, b in points:
    out[top : top + size, left : left + size] = [a / 110.0, b / 110.0, 1.0]
  return out


def test_the_encoding_is_the_patches_painted_in_order_pixel_by_pixel():
  points = [(0, 0, 3, 40.0, -20.0), (2, 1, 4, -60.0, 10.0), (10, 12, 1, 5.0, 70.0), (5, 12, 9, 0.0, 0.0)]
  tops, lefts, sizes, a, b = map(np.asarray, zip(*points, strict=True))
  valid = np.ones(len(points), bool)
  encoded = np.asarray(hints.encode(tops, lefts, sizes, np.stack([a, b], -1), valid, 16, 20))
  np.testing.assert_allclose(encoded, painted(points, 16, 20), atol=1e-7)
  # A point that is not valid leaves no trace; no point at all is the automatic mode's zeros.
  valid[1] = False
  encoded = np.asarray(hints.encode(tops, lefts, sizes, np.stack([a, b], -1), valid, 16, 20))
  np.testing.assert_allclose(encoded, painted([points[i] for i in (0, 2, 3)], 16, 20), atol=1e-7)
  assert not np.asarray(hints.encode(tops, lefts, sizes, np.stack([a, b], -1), valid & False, 16, 20)).any()


def test_a_simulated_point_is_its_patchs_mean_colour_and_the_count_is_asked_for():
  rng = np.random.default_rng(0)
  ab = rng.uniform(-80, 80, (24, 20, 2)).astype(np.float32)
  config = tiny_config().hints
  for count in (0, 1, 5):
    key = jax.random.key(count)
    encoded = np.asarray(hints.simulate(key, jnp.asarray(ab), config, count=count))
    tops, lefts, sizes, valid = (
      np.asarray(x)
      for x in hints.simulated_points(jax.random.split(key)[1], 24, 20, count, config.max_points, config.max_size)
    )
    assert valid.sum() == count and (sizes >= 1).all() and (sizes <= config.max_size).all()
    assert (tops + sizes <= 24).all() and (lefts + sizes <= 20).all()
    means = [ab[t : t + s, x : x + s].reshape(-1, 2).mean(0) for t, x, s in zip(tops, lefts, sizes, strict=True)]
    expected = painted(
      [(t, x, s, *m) for t, x, s, m, v in zip(tops, lefts, sizes, means, valid, strict=True) if v], 24, 20
    )
    np.testing.assert_allclose(encoded, expected, atol=1e-5)


def test_training_counts_are_geometric_with_an_extra_share_of_none():
  keys = jax.random.split(jax.random.key(1), 20_000)
  counts = np.asarray(jax.vmap(lambda k: hints.training_count(k, 0.125, 0.25, 32))(keys))
  assert counts.min() == 0 and counts.max() == 32
  assert (counts == 0).mean() == pytest.approx(0.25 + 0.75 * 0.125, abs=0.01)
  # Among photos that were not chosen for none, P(n = k) = (1 - p)^k p: mean (1 - p) / p = 7 (less the cap).
  expected_mean = 0.75 * sum(min(k, 32) * 0.875**k * 0.125 for k in range(400))
  assert counts.mean() == pytest.approx(expected_mean, rel=0.03)


def write_json(path, content):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(content if isinstance(content, str) else json.dumps(content))
  return str(path)


def test_a_users_point_is_centred_on_its_pixel_in_the_generators_smaller_input(tmp_path):
  path = write_json(
    tmp_path / "p.json", [{"x": 150, "y": 20, "rgb": [200, 30, 40], "size": 20}, {"x": 0, "y": 99, "rgb": [0, 0, 255]}]
  )
  points = hint_points.user_points(hint_points.read_points(path), height=100, width=200)
  encoded = hint_points.for_network(points, (100, 200), (32, 64))  # A third of the photo's size.
  red = np.asarray(color.rgb_to_lab(np.array([200, 30, 40]) / 255.0, np))[1:] / 110.0
  blue = np.asarray(color.rgb_to_lab(np.array([0, 0, 255]) / 255.0, np))[1:] / 110.0
  # x = 150 -> column 48 of 64, y = 20 -> row 6; 20 px -> 6 input pixels, centred: rows 3..8, columns 45..50.
  expected = np.zeros((32, 64, 3), np.float32)
  expected[3:9, 45:51] = [*red, 1.0]
  expected[29:32, 0:3] = [*blue, 1.0]  # The default size, kept inside the input at the corner.
  np.testing.assert_allclose(encoded, expected, atol=1e-6)


@pytest.mark.parametrize(
  "content, message",
  [
    ("[{'x': 1}]", "not JSON"),
    ({"x": 1, "y": 2, "rgb": [1, 2, 3]}, "must hold a list of points"),
    (
      [{"x": 1, "y": 2, "rgb": [1, 2, 3]}, {"x": 1, "y": 2, "rgb": [1, 2, 3], "colour": "red"}],
      "point 2 has unknown key(s) colour",
    ),
    ([{"x": 1, "rgb": [1, 2, 3]}], "point 1 lacks y"),
    ([{"x": 1.5, "y": 2, "rgb": [1, 2, 3]}], "point 1: x and y must be whole pixel numbers"),
    ([{"x": 1, "y": 2, "rgb": [1, 2, 300]}], "point 1: rgb must be three whole numbers in 0..255"),
    ([{"x": 1, "y": 2, "rgb": [1, 2]}], "point 1: rgb must be three whole numbers in 0..255"),
    ([{"x": 1, "y": 2, "rgb": [1, 2, 3], "size": 0}], "point 1: size must be a whole number of pixels >= 1"),
    (
      [{"x": 1, "y": 2, "rgb": [1, 2, 3]}, {"x": 200, "y": 2, "rgb": [1, 2, 3]}],
      "point 2 at x=200, y=2 lies outside the photo (200x100 px)",
    ),
    ([{"x": 1, "y": -1, "rgb": [1, 2, 3]}], "point 1 at x=1, y=-1 lies outside the photo"),
    ([{"x": 1, "y": 2, "rgb": [1, 2, 3], "size": 10**20}], "point 1 has size 100000000000000000000, larger than"),
    ([{"x": 1, "y": 2, "rgb": [1, 2, 3]}] * 1001, "1001 points, more than the 1000 a photo may have"),
    ("[" * 100_000, "nested too deeply to be a list of points"),
  ],
)
def test_a_bad_hint_file_is_one_line_naming_the_file_and_the_point(tmp_path, content, message):
  path = write_json(tmp_path / "bad.json", content)
  with pytest.raises(hint_points.BadHints) as raised:
    hint_points.user_points(hint_points.read_points(path), height=100, width=200, source=path)
  text = str(raised.value)
  assert text.startswith(path) and message in text and "\n" not in text, text


@pytest.mark.parametrize("generator", ["paper", "pix2pix"])
def test_a_hints_generator_without_hints_is_automatic_and_hints_change_its_colour(generator):
  config = tiny_config()
  config.model.generator = generator
  config.model.hints = True
  if generator == "pix2pix":
    config.model.depth, config.image_size = 4, 16
  model, _ = models.create_models(config.model)
  gray = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 1)), jnp.float32)
  variables = model.init(jax.random.key(0), gray, train=False)
  first_kernel = jax.tree.leaves(variables["params"]["ConvNormAct_0" if generator == "paper" else "Conv_0"])[-1]
  assert first_kernel.ndim == 4 and first_kernel.shape[2] == 4  # L and the three hint channels.
  automatic = model.apply(variables, gray, train=False)
  np.testing.assert_array_equal(
    automatic, model.apply(variables, gray, train=False, hints=np.zeros((2, 16, 16, 3), np.float32))
  )
  one_point = hints.encode(
    np.array([4]), np.array([4]), np.array([3]), np.array([[60.0, 60.0]]), np.array([True]), 16, 16
  )
  hinted = model.apply(variables, gray, train=False, hints=jnp.stack([one_point, np.zeros((16, 16, 3), np.float32)]))
  assert not np.allclose(hinted[0], automatic[0])
  np.testing.assert_allclose(hinted[1], automatic[1], atol=1e-6)  # Each photo sees its own hints only.
  plain, _ = models.create_models(tiny_config().model)
  with pytest.raises(ValueError, match="has no hint channels"):
    plain.apply(
      plain.init(jax.random.key(0), gray, train=False), gray, train=False, hints=np.zeros((2, 16, 16, 3), np.float32)
    )


def test_the_pretrained_decoder_sees_the_hints_at_every_level():
  config = tiny_config()
  config.model.encoder, config.model.output, config.model.base_width, config.image_size = (
    "efficientnet_lite0",
    "ab",
    4,
    32,
  )
  config.model.hints = True
  model, _ = models.create_models(config.model)
  gray = jnp.zeros((1, 32, 32, 1), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), gray, train=False))
  units = sorted(name for name in variables["params"] if name.startswith("DecoderUnit"))
  # Each decoder unit's first conv reads (upsampled features + skip + 3 hint channels).
  plain_config = tiny_config()
  plain_config.model.encoder, plain_config.model.output, plain_config.model.base_width = "efficientnet_lite0", "ab", 4
  plain, _ = models.create_models(plain_config.model)
  plain_variables = jax.eval_shape(lambda: plain.init(jax.random.key(0), gray, train=False))
  for unit in units:
    with_hints = jax.tree.leaves(variables["params"][unit])
    without = jax.tree.leaves(plain_variables["params"][unit])
    assert sum(x.size for x in with_hints) > sum(x.size for x in without), unit


def test_a_decoder_level_sees_each_blocks_hinted_colour_at_full_strength():
  points = [(1, 1, 2, 40.0, -20.0), (9, 12, 1, -60.0, 10.0), (8, 8, 1, 20.0, 20.0)]
  tops, lefts, sizes, a, b = map(np.asarray, zip(*points, strict=True))
  hint_map = hints.encode(tops, lefts, sizes, np.stack([a, b], -1), np.ones(3, bool), 16, 16)
  pooled = np.asarray(layers.pooled_hints(hint_map[None], 8))[0]
  expected = np.zeros((2, 2, 3), np.float32)
  expected[0, 0] = [40 / 110, -20 / 110, 1]  # Four hinted pixels of one colour: that colour, not a sixteenth of it.
  expected[1, 1] = [(-60 + 20) / 2 / 110, (10 + 20) / 2 / 110, 1]  # Two points in a block: their mean.
  np.testing.assert_allclose(pooled, expected, atol=1e-6)


@pytest.mark.slow
def test_training_with_hints_draws_them_per_photo_and_learns():
  config = tiny_config()
  config.model.hints = True
  config.adversarial = False
  config.optim.g_learning_rate = 1e-2
  _, _, history = steps_on_fixed_batch(config, 6)
  l1 = [float(m["g_loss_l1"]) for m in history]
  assert np.isfinite(l1).all() and l1[-1] < l1[0], l1
  # The draws are a function of the photo's place in the global batch: 1 device of 4 photos and
  # 4 devices of 1 (vmap stands in for the mesh axis) draw the same hints.
  real = jnp.asarray(color.uint8_rgb_to_normalized_lab(smooth_colour_images(4, 16)))

  def draw(rng, devices):
    per_device = real.reshape(devices, 4 // devices, *real.shape[1:])
    drawn = jax.vmap(lambda r: steps.training_hints(config, rng, r), axis_name=steps.AXIS)(per_device)
    return np.asarray(drawn).reshape(real.shape)

  one_device = draw(jax.random.key(0), 1)
  np.testing.assert_array_equal(one_device, draw(jax.random.key(0), 4))
  assert not np.array_equal(one_device, draw(jax.random.key(1), 1))
  assert len({one_device[i].tobytes() for i in range(4)}) > 1  # Each photo its own draw.


# ----------------------------------------------------------------------------- the command line

GREEN = [30, 170, 60]


def coffee(width=192, height=128):
  return Image.fromarray(skimage.data.coffee()).resize((width, height))


@pytest.mark.slow
def test_colorize_reads_each_photos_hint_file_and_a_bad_one_costs_only_its_photo(tmp_path):
  (tmp_path / "in").mkdir()
  bad_files = {  # Each kind of mistake: its file's content and the end of its line.
    "outside": (
      [{"x": 60, "y": 40, "rgb": GREEN}, {"x": 192, "y": 5, "rgb": GREEN}],
      "point 2 at x=192, y=5 lies outside the photo (192x128 px)",
    ),
    "unknown": (
      [{"x": 6, "y": 4, "rgb": GREEN, "color": "red"}],
      "point 1 has unknown key(s) color; use x, y, rgb and optionally size",
    ),
    "colour": (
      [{"x": 6, "y": 4, "rgb": [0, 256, 0]}],
      "point 1: rgb must be three whole numbers in 0..255, not [0, 256, 0]",
    ),
    "broken": (
      "[{",
      "not JSON (Expecting property name enclosed in double quotes at line 1); see docs/hints.md for the format",
    ),
  }
  for name in ("hinted", "automatic", *bad_files):
    coffee().save(tmp_path / "in" / f"{name}.png")
  (tmp_path / "hints").mkdir()
  write_json(tmp_path / "hints" / "hinted.json", [{"x": 60, "y": 40, "rgb": GREEN, "size": 12}])
  for name, (content, _) in bad_files.items():
    write_json(tmp_path / "hints" / f"{name}.json", content)
  paths = (f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}", f"--hints={tmp_path / 'hints'}")
  out = run_main("--mode=colorize", *paths)
  assert out.returncode == 1, out.stderr[-2000:]
  assert sorted(os.listdir(tmp_path / "out")) == ["automatic.png", "hinted.png"]  # Nothing for the bad files' photos.
  failed = sorted(line for line in out.stderr.splitlines() if line.startswith("FAILED"))
  assert failed == sorted(
    f"FAILED {tmp_path / 'in' / name}.png: {tmp_path / 'hints' / name}.json: {message}"
    for name, (_, message) in bad_files.items()
  )
  plain = run_main("--mode=colorize", f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'plain'}")
  assert plain.returncode == 0, plain.stderr[-2000:]
  read = lambda folder, name: np.asarray(Image.open(tmp_path / folder / f"{name}.png").convert("RGB"))  # noqa: E731
  # No hint file: automatic (batched with other photos, so XLA's rounding may differ by a level).
  automatic_gap = np.abs(read("out", "automatic").astype(int) - read("plain", "automatic"))
  assert automatic_gap.max() <= 1 and automatic_gap.mean() < 0.01
  near = (slice(30, 51), slice(50, 71))
  distance = (
    lambda image: np.linalg.norm(  # noqa: E731
      color.rgb_to_lab(image / 255.0, np)[..., 1:] - color.rgb_to_lab(np.array(GREEN) / 255.0, np)[1:], axis=-1
    ).mean()
  )
  assert distance(read("out", "hinted")[near]) < 0.8 * distance(read("plain", "hinted")[near])


@pytest.mark.slow
def test_hint_flags_that_cannot_apply_are_one_line(tmp_path, trained_run):
  (tmp_path / "in").mkdir()
  for name in ("a", "b"):
    coffee(64, 64).save(tmp_path / "in" / f"{name}.png")
  hint_file = write_json(tmp_path / "a.json", [{"x": 1, "y": 1, "rgb": GREEN}])
  base = ("--mode=colorize", f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}")
  for args, message in (
    ((*base, f"--hints={tmp_path / 'nowhere'}"), "does not exist"),
    ((*base, f"--hints={hint_file}"), "is one file for 2 photos: pass a folder of <photo name>.json files"),
    (("--mode=evaluate", f"--hints={hint_file}"), "--hints is for the colorize mode, not --mode=evaluate"),
  ):
    out = run_main(*args)
    assert out.returncode == 2 and message in out.stderr.splitlines()[0], (args, out.stderr[-1000:])
  assert not (tmp_path / "out").exists()


def test_host_encoding_paints_a_thousand_points_in_the_memory_of_one_image():
  """The app encodes up to MAX_POINTS points at every click: [points, H, W] arrays took 2.2 GB at 256 px."""
  import tracemalloc

  rng = np.random.default_rng(0)
  count, height, width = hint_points.MAX_POINTS, 256, 256
  sizes = rng.integers(1, 40, count)
  tops, lefts = rng.integers(-5, height, count), rng.integers(-5, width, count)
  ab = rng.uniform(-80, 80, (count, 2))
  valid = rng.uniform(size=count) < 0.9
  tracemalloc.start()
  encoded = hints.encode(tops, lefts, sizes, ab, valid, height, width, np)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 4 * encoded.nbytes, peak  # The old [K, H, W] encoding: about 600 MB here.
  traced = np.asarray(hints.encode(tops, lefts, sizes, ab, valid, height, width))
  np.testing.assert_allclose(encoded, traced, atol=1e-6)  # The same painting: float32 vs float64 rounding.


def test_hint_files_are_matched_by_the_photos_path_under_the_input_and_a_shared_name_is_refused(tmp_path):
  hint_dir = tmp_path / "hints"
  for name in ("a/img.json", "b/img.json", "c/door.json", "c/door.png.json"):
    write_json(hint_dir / name, [])
  found = [(f"in/{name}", name) for name in ("a/img.jpg", "b/img.jpg", "c/door.jpg", "c/door.png", "d/img.jpg")]
  assert hint_points.hint_files(str(hint_dir), found) == {
    "in/a/img.jpg": str(hint_dir / "a/img.json"),
    "in/b/img.jpg": str(hint_dir / "b/img.json"),
    "in/c/door.jpg": str(hint_dir / "c/door.json"),
    "in/c/door.png": str(hint_dir / "c/door.png.json"),  # Its full name: no longer shared.
  }
  (hint_dir / "c/door.png.json").unlink()  # Now door.jpg and door.png would both take door.json.
  with pytest.raises(hint_points.BadHints, match=r"c/door.json would apply to 2 photos .*name it after one photo"):
    hint_points.hint_files(str(hint_dir), found)
  assert hint_points.hint_files(str(hint_dir / "a/img.json"), found[:1]) == {
    "in/a/img.jpg": str(hint_dir / "a/img.json")
  }
  assert hint_points.hint_files("", found) == {}
