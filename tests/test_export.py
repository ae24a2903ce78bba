"""Exported generators for other runtimes: ONNX (onnxruntime) and StableHLO (jax.export) give JAX's colours."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime
import pytest
import skimage.data
from PIL import Image

from colorize.colouring import full_size
from colorize.colouring import hint_points
from colorize.colouring import predict
from colorize.exporting import export
from colorize.exporting import onnx_export
from colorize.networks import inference
from colorize.networks import models
from colorize.runs import bundle
from configs import photos_pretrained_bins
from tests.conftest import run_main
from tests.conftest import tiny_config
from tests.test_main import HINT

# (batch, height, width): landscape and portrait at the bundle's stride 32, one photo and three.
SIZES = ((1, 64, 96), (3, 96, 64))
PHOTOS = (skimage.data.coffee, skimage.data.astronaut, skimage.data.chelsea)


def network_inputs(batch: int, height: int, width: int, with_hints: bool):
  """L* of `batch` real photos resized to height x width, and hint channels with a few points (or None)."""
  planes = [
    full_size.lightness(np.asarray(Image.fromarray(PHOTOS[i % 3]()).resize((width, height), Image.BILINEAR)))
    for i in range(batch)
  ]
  if not with_hints:
    return np.stack(planes)[..., None], None
  # Columns x, y, size, a, b (`hint_points.user_points`): a 1 px point and a 5 px patch near the far corner.
  points = np.array([[12, 10, 1, 40.0, -20.0], [width - 7, height - 9, 5, -30.0, 50.0]], np.float32)
  hint_map = hint_points.for_network(points, (height, width), (height, width))
  # The points land where, as large and in the colours they say (a swapped column would not).
  assert hint_map[..., 2].sum() == 1 + 5 * 5
  np.testing.assert_allclose(hint_map[10, 12], [40 / 110, -20 / 110, 1], atol=1e-6)
  np.testing.assert_allclose(hint_map[height - 9, width - 7], [-30 / 110, 50 / 110, 1], atol=1e-6)
  return np.stack(planes)[..., None], np.stack([hint_map] * batch)


def onnx_session(model_bytes: bytes):
  return onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def run_onnx(session, lightness, hint_batch):
  feeds = {"lightness": lightness} | ({} if hint_batch is None else {"hints": hint_batch})
  return session.run(["ab"], feeds)[0]


@pytest.mark.slow  # The bundled model exported twice and run at two sizes: 15 s.
def test_onnx_and_stablehlo_of_the_bundled_model_give_jax_colours_on_real_photos_at_two_sizes():
  config = bundle.bundle_config(bundle.BUNDLED)  # EfficientNet-Lite0 encoder, hints.
  function, _ = export.generator_function(config, bundle.BUNDLED)
  specs = export.input_specs(config)
  session = onnx_session(export.onnx_bytes(function, specs))
  reloaded = jax.export.deserialize(export.stablehlo_bytes(function, specs))
  assert set(reloaded.platforms) >= {"cpu", "cuda"}
  for batch, height, width in SIZES:
    lightness, hint_batch = network_inputs(batch, height, width, with_hints=True)
    expected = np.asarray(jax.jit(function)(lightness, hint_batch))  # The colorize mode's ops (CPU kernels).
    assert np.abs(expected).mean() > 1.0  # Colours worth comparing, not zeros.
    got = run_onnx(session, lightness, hint_batch)
    assert got.shape == (batch, height, width, 2)
    # 2e-3: float32 rounding, times a*,b*'s scale of 110, reaches 1.1e-3 on chelsea at 96x64 (both files).
    np.testing.assert_allclose(got, expected, atol=2e-3)
    np.testing.assert_allclose(np.asarray(reloaded.call(lightness, hint_batch)), expected, atol=2e-3)


@pytest.mark.parametrize(
  "overrides",
  [
    {},  # The paper's U-Net, L*a*b* out.
    {"model.generator": "pix2pix"},
    {"model.hints": True, "model.output": "ab"},
    {"model.output": "ab", "model.colour_head": "bins", "model.temperature": 0.38},
  ],
  ids=["paper", "pix2pix", "hints", "bins"],
)
def test_onnx_and_stablehlo_of_every_generator_kind_give_jax_colours(overrides):
  config = tiny_config(**overrides)
  generator = inference.generator_module(config)
  gray = jnp.zeros((1, 16, 16, 1))
  init = jax.jit(lambda rngs, x: generator.init(rngs, x, train=False))  # Compiled: 1 s instead of 7 eagerly.
  variables = init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, gray)
  variables = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(3), x.shape), variables)

  def function(lightness, hints=None):
    return predict.lightness_to_ab(generator, variables, lightness, hints)

  specs = export.input_specs(config)
  session = onnx_session(export.onnx_bytes(function, specs))
  reloaded = jax.export.deserialize(export.stablehlo_bytes(function, specs))
  for batch, height, width in ((1, 16, 24), (2, 32, 16)):
    lightness, hint_batch = network_inputs(batch, height, width, with_hints=config.model.hints)
    inputs = (lightness,) if hint_batch is None else (lightness, hint_batch)
    expected = np.asarray(jax.jit(function)(*inputs))
    np.testing.assert_allclose(run_onnx(session, lightness, hint_batch), expected, atol=1e-3)
    np.testing.assert_allclose(np.asarray(reloaded.call(*inputs)), expected, atol=1e-3)


def random_variables(generator, size: int, seed: int = 0):
  """Variables of `generator` drawn with NumPy from its shapes: no compiled init (15 s for EfficientNet)."""
  gray = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
  shapes = jax.eval_shape(lambda x: generator.init(jax.random.key(0), x, train=False), gray)
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if "kernel" in jax.tree_util.keystr(path):  # 1/sqrt(fan-in): activations stay of order one.
      return (rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(np.float32)
    centre = 1.0 if any(name in jax.tree_util.keystr(path) for name in ("scale", "var")) else 0.0
    return (centre + 0.05 * rng.standard_normal(leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.slow  # EfficientNet compiled by JAX at two sizes: 25 s on 2 cores.
def test_onnx_and_stablehlo_of_the_pretrained_bins_generator_give_jax_colours_at_two_sizes():
  config = photos_pretrained_bins.get_config()  # The recipe's bins head: half resolution, resized to the input's.
  config.model.base_width = 4
  generator = inference.generator_module(config)
  # ImageNet's encoder gives colours that vary across the photo: a wrong resize would show.
  variables = models.with_pretrained_encoder(config.model, random_variables(generator, 32))

  def function(lightness):
    return predict.lightness_to_ab(generator, variables, lightness)

  specs = export.input_specs(config)
  session = onnx_session(export.onnx_bytes(function, specs))
  reloaded = jax.export.deserialize(export.stablehlo_bytes(function, specs))
  for batch, height, width in ((1, 32, 64), (2, 64, 32)):
    lightness, _ = network_inputs(batch, height, width, with_hints=False)
    expected = np.asarray(jax.jit(function)(lightness))
    assert expected.std(axis=(1, 2)).min() > 1.0  # Colours that vary, not one everywhere.
    np.testing.assert_allclose(run_onnx(session, lightness, None), expected, atol=1e-3)
    np.testing.assert_allclose(np.asarray(reloaded.call(lightness)), expected, atol=1e-3)


def test_resizes_to_symbolic_sizes_and_iotas_convert():
  # jax.image.resize of a symbolic size: its scale from dim_as_value, its weights from iota.
  batch, height, width = jax.export.symbolic_shape("batch, height, width")

  def function(x):
    resized = jax.image.resize(x, (x.shape[0], 2 * x.shape[1], 3 * x.shape[2], 2), "linear")
    return resized, jax.lax.broadcasted_iota(jnp.int32, (x.shape[0], x.shape[1], 4), 1)

  spec = jax.ShapeDtypeStruct((batch, height, 2 * width, 2), jnp.float32)
  session = onnx_session(onnx_export.to_onnx(function, [spec], ["x"], ["y", "rows"]).SerializeToString())
  for shape in ((1, 3, 4, 2), (2, 5, 2, 2)):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got, rows = session.run(None, {"x": x})
    expected, expected_rows = function(x)
    np.testing.assert_allclose(got, np.asarray(expected), atol=1e-5)
    np.testing.assert_array_equal(rows, np.asarray(expected_rows))


def test_comparisons_logic_and_whole_array_reductions_convert():
  def function(x):
    keep = (x != 0.5) & ~(x > 0.9)
    return jnp.where(keep, x, 0.0).reshape(2, 3).sum(axis=()) * 2.0, keep.reshape(2, 3)

  x = np.array([0.5, 0.1, 0.95, 0.3, 0.5, 0.7], np.float32)
  model = onnx_export.to_onnx(function, [jax.ShapeDtypeStruct((6,), jnp.float32)], ["x"], ["y", "keep"])
  got = onnx_session(model.SerializeToString()).run(None, {"x": x})
  for ours, theirs in zip(got, function(x), strict=True):
    np.testing.assert_array_equal(ours, np.asarray(theirs))


def test_an_op_the_converter_does_not_know_is_named():
  with pytest.raises(onnx_export.UnsupportedOp, match="the op sort"):
    onnx_export.to_onnx(jnp.sort, [jax.ShapeDtypeStruct((4,), jnp.float32)], ["x"], ["y"])


@pytest.mark.slow  # Five runs of the program and one of the script.
def test_export_mode_writes_an_onnx_file_whose_script_colours_a_photo_like_the_colorize_mode(trained_run, tmp_path):
  # The command line's export on a tiny run (the bundled model's ONNX and StableHLO are checked above).
  photo = tmp_path / "coffee.png"
  Image.fromarray(skimage.data.coffee()[::3, ::3]).save(photo)  # 134x200: resized to the network's shape.
  run = f"--workdir={trained_run}"
  done = run_main("--mode=export", run, f"--output={tmp_path / 'onnx'}", "--format=onnx")
  assert done.returncode == 0, done.stderr
  facts = json.loads((tmp_path / "onnx" / "export.json").read_text())
  config = tiny_config()
  assert facts["short_side"] == config.image_size and facts["multiple"] == 2**config.model.depth
  script = tmp_path / "onnx" / "colorize_onnx.py"
  # The folder alone: run from elsewhere, without this project on the path.
  ran = subprocess.run(
    [sys.executable, str(script), str(photo), str(tmp_path / "onnx.png")], cwd=tmp_path, capture_output=True, text=True
  )
  assert ran.returncode == 0, ran.stderr
  assert run_main("--mode=colorize", run, f"--input={photo}", f"--output={tmp_path / 'jax'}").returncode == 0
  ours = np.asarray(Image.open(tmp_path / "onnx.png")).astype(int)
  theirs = np.asarray(Image.open(tmp_path / "jax" / "coffee.png")).astype(int)
  assert ours.shape == theirs.shape == (134, 200, 3)
  assert np.abs(ours - theirs).max() <= 1  # Rounding alone.
  again = run_main("--mode=export", run, f"--output={tmp_path / 'onnx'}", "--format=onnx")
  assert again.returncode == 2 and "generator.onnx exists: choose another --output" in again.stderr
  assert run_main("--mode=export", run, f"--output={tmp_path / 'hlo'}", "--format=stablehlo").returncode == 0
  reloaded = jax.export.deserialize(bytearray((tmp_path / "hlo" / "generator.stablehlo").read_bytes()))
  lightness, _ = network_inputs(1, 96, 128, with_hints=False)
  session = onnx_session(str(tmp_path / "onnx" / "generator.onnx"))
  plain = run_onnx(session, lightness, None)
  assert np.abs(plain).mean() > 0.5  # Colours worth comparing, not zeros.
  np.testing.assert_allclose(reloaded.call(lightness), plain, atol=1e-3)
  # At a vividness of 0.5 a single-colour head's a*,b* are scaled by 1.5 (and clipped to the gamut's box), recorded.
  assert facts["vividness"] == 0.0
  vivid = run_main("--mode=export", run, f"--output={tmp_path / 'vivid'}", "--format=onnx", "--vividness=0.5")
  assert vivid.returncode == 0, vivid.stderr
  assert json.loads((tmp_path / "vivid" / "export.json").read_text())["vividness"] == 0.5
  bold = run_onnx(onnx_session(str(tmp_path / "vivid" / "generator.onnx")), lightness, None)
  np.testing.assert_allclose(bold, np.clip(1.5 * plain, -110.0, 110.0), atol=1e-3)


def stand_in_colours(lightness):
  return jnp.concatenate([lightness - 50.0, 50.0 - lightness], -1) * 0.4


def write_onnx_folder(folder, function, input_names: list) -> None:
  """What --format=onnx writes (generator.onnx, export.json, the script) for a stand-in generator
  of inputs `input_names` (1 channel for lightness, 3 for hints), exported in a second instead of
  EfficientNet's minutes of runs."""
  batch, height, width = jax.export.symbolic_shape("batch, height, width")
  channels = {"lightness": 1, "hints": 3}
  specs = [jax.ShapeDtypeStruct((batch, 4 * height, 4 * width, channels[name]), jnp.float32) for name in input_names]
  model = onnx_export.to_onnx(function, specs, input_names, ["ab"])
  (folder / "generator.onnx").write_bytes(model.SerializeToString())
  (folder / "export.json").write_text(json.dumps({"short_side": 16, "multiple": 4}))
  shutil.copy(export.ONNX_SCRIPT, folder)


@pytest.fixture(scope="module")
def onnx_folder(tmp_path_factory):
  """An ONNX export of a stand-in generator: a*,b* from L* alone."""
  folder = tmp_path_factory.mktemp("onnx")
  write_onnx_folder(folder, stand_in_colours, ["lightness"])
  return folder


def test_the_onnx_script_feeds_a_hints_model_no_hints(tmp_path):
  # A stand-in with the bundled model's two inputs that colours only where the hint mask is 0:
  # a missing hints input would be refused by onnxruntime, a mask of ones would leave gray.
  folder, photo = tmp_path / "onnx", tmp_path / "photo.png"
  folder.mkdir()

  def colours(lightness, hints):
    return stand_in_colours(lightness) * (1.0 - jax.lax.slice_in_dim(hints, 2, 3, axis=3))

  write_onnx_folder(folder, colours, ["lightness", "hints"])
  Image.fromarray(skimage.data.coffee()[::8, ::8]).save(photo)
  code, lines = run_script(folder / "colorize_onnx.py", photo, tmp_path / "out.png", cwd=tmp_path)
  assert code == 0, lines
  assert np.ptp(np.asarray(Image.open(tmp_path / "out.png")).astype(int), axis=-1).max() > 10  # Coloured.


def run_script(script, *args, cwd):
  done = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=cwd, capture_output=True, text=True)
  assert "Traceback" not in done.stderr, done.stderr
  return done.returncode, done.stderr.strip().splitlines()


def test_the_onnx_script_colours_a_folder_and_says_in_one_line_what_it_cannot_read(onnx_folder, tmp_path):
  script, photos, out = onnx_folder / "colorize_onnx.py", tmp_path / "photos", tmp_path / "out"
  photos.mkdir()
  Image.fromarray(skimage.data.coffee()[::8, ::8]).save(photos / "good.png")  # 50x75.
  Image.fromarray(skimage.data.astronaut()[::8, ::8]).save(photos / "cut.jpg")
  (photos / "cut.jpg").write_bytes((photos / "cut.jpg").read_bytes()[:400])  # Its header whole, its pixels cut.
  (photos / "notes.jpg").write_text("not a photo\n")
  # PostScript named as a photo: Pillow must not hand it to Ghostscript.
  eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"
  (photos / "drawing.tif").write_bytes(eps)
  (photos / "readme.txt").write_text("not a photo, and not named one: left alone\n")
  code, lines = run_script(script, photos, out, cwd=tmp_path)
  assert code == 1 and len(lines) == 4 and lines[-1] == f"Done: 1 coloured, 3 failed -> {out}", lines
  assert sorted(line.split(" (")[0] for line in lines[:-1]) == [  # The reasons, less Pillow's words.
    f"FAILED {photos / 'cut.jpg'}: truncated or corrupt image",
    f"FAILED {photos / 'drawing.tif'}: not a photo in a format read here",
    f"FAILED {photos / 'notes.jpg'}: not a photo in a format read here",
  ]
  assert os.listdir(out) == ["good.png"]
  coloured = np.asarray(Image.open(out / "good.png"))
  assert coloured.shape == (50, 75, 3) and np.ptp(coloured.astype(int), axis=-1).max() > 10  # Coloured, not gray.
  written = (out / "good.png").read_bytes()
  code, lines = run_script(script, photos, out, cwd=tmp_path)  # Again: nothing is replaced.
  assert code == 1 and f"FAILED {photos / 'good.png'}: {out / 'good.png'} exists: nothing is replaced" in lines
  assert (out / "good.png").read_bytes() == written
  code, lines = run_script(script, photos / "drawing.tif", tmp_path / "drawing.png", cwd=tmp_path)
  assert code == 1 and lines == [
    f"FAILED {photos / 'drawing.tif'}: not a photo in a format read here (JPEG, PNG, WEBP, TIFF, BMP, GIF)"
  ]
  assert not (tmp_path / "drawing.png").exists()


@pytest.mark.parametrize("broken", ["photo", "export.json", "cut export.json", "cut generator.onnx"])
def test_the_onnx_script_refuses_a_missing_photo_or_a_broken_export_in_one_line(onnx_folder, tmp_path, broken):
  folder, photo = tmp_path / "onnx", tmp_path / "photo.png"
  shutil.copytree(onnx_folder, folder)
  Image.fromarray(skimage.data.coffee()[::8, ::8]).save(photo)
  if broken == "photo":
    photo = tmp_path / "gone.jpg"
  elif broken == "export.json":
    os.remove(folder / "export.json")
  else:
    (folder / broken.split()[1]).write_text('{"short_side": 16')  # Cut short.
  expected = {
    "photo": f"{photo} does not exist: pass a photo or a folder of photos.",
    "export.json": f"{folder / 'export.json'} is missing: keep the export.json written beside {folder}",
    "cut export.json": f"{folder / 'export.json'} cannot be read (",
    "cut generator.onnx": f"--model={folder / 'generator.onnx'} cannot be loaded by onnxruntime (",
  }[broken]
  model = f"--model={folder / 'generator.onnx'}"
  code, lines = run_script(folder / "colorize_onnx.py", photo, tmp_path / "out.png", model, cwd=tmp_path)
  assert code == 2 and len(lines) == 1 and lines[0].startswith(f"colorize_onnx.py: error: {expected}"), lines
  assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
  "args,message",
  [
    (["--format=tflite"], "--format=tflite is not an export format: use one of bundle, onnx, stablehlo."),
    (["--format=onnx", "--facts=f.json"], "--facts is for --format=bundle"),
    (["--weights=weights"], "--weights=weights is a bundle already: copy the folder, or pick --format=onnx."),
    (["--format=stablehlo"], "--mode=export --format=stablehlo needs --output=DIR"),
    (["--colorize_temperature=0.5"], "--colorize_temperature is for --format=onnx or stablehlo"),
    (["--vividness=0.5"], "--vividness is for --format=onnx or stablehlo"),
  ],
)
def test_export_mode_refuses_what_it_cannot_do_in_one_line(tmp_path, args, message):
  output = [] if "--format=stablehlo" in args else [f"--output={tmp_path / 'out'}"]
  done = run_main("--mode=export", *output, *args)
  assert done.returncode == 2
  first, hint = done.stderr.strip().splitlines()
  assert first.startswith(f"main.py: error: {message}") and hint == HINT
  assert not os.path.exists(tmp_path / "out")


def test_the_input_specs_are_symbolic_multiples_of_the_stride():
  config = tiny_config(**{"model.hints": True})
  lightness, hint_spec = export.input_specs(config)
  assert str(lightness.shape[1]) == f"{models.input_multiple(config.model)}*height" and lightness.shape[-1] == 1
  assert hint_spec.shape[-1] == 3
