"""Exported generators for other runtimes: ONNX (onnxruntime) and StableHLO (jax.export) give JAX's colours."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime
import pytest
import skimage.data
from PIL import Image

from colorize import bundle
from colorize import export
from colorize import hints as hints_lib
from colorize import inference
from colorize import models
from colorize import onnx_export
from colorize import predict
from tests.conftest import tiny_config
from tests.test_main import HINT
from tests.test_main import run_main

# (batch, height, width): landscape and portrait at the bundle's stride 32, one photo and three.
SIZES = ((1, 64, 96), (3, 96, 64))
PHOTOS = (skimage.data.coffee, skimage.data.astronaut, skimage.data.chelsea)


def network_inputs(batch: int, height: int, width: int, with_hints: bool):
  """L* of `batch` real photos resized to height x width, and hint channels with a few points (or None)."""
  planes = [
    predict.lightness(np.asarray(Image.fromarray(PHOTOS[i % 3]()).resize((width, height), Image.BILINEAR)))
    for i in range(batch)
  ]
  if not with_hints:
    return np.stack(planes)[..., None], None
  points = np.array([[10, 12, 40.0, -20.0, 3], [height - 9, width - 7, -30.0, 50.0, 5]], np.float32)
  hint_batch = np.stack([hints_lib.for_network(points, (height, width), (height, width))] * batch)
  return np.stack(planes)[..., None], hint_batch


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
    np.testing.assert_allclose(got, expected, atol=1e-3)
    np.testing.assert_allclose(np.asarray(reloaded.call(lightness, hint_batch)), expected, atol=1e-3)


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


@pytest.mark.slow  # Four runs of main.py.
def test_export_mode_writes_an_onnx_file_whose_script_colours_a_photo_like_the_colorize_mode(tmp_path):
  photo = tmp_path / "coffee.png"
  Image.fromarray(skimage.data.coffee()[::3, ::3]).save(photo)  # 134x200: resized to the network's shape.
  done = run_main("--mode=export", f"--output={tmp_path / 'onnx'}", "--format=onnx")
  assert done.returncode == 0, done.stderr
  facts = json.loads((tmp_path / "onnx" / "export.json").read_text())
  assert facts["short_side"] == bundle.bundle_config(bundle.BUNDLED).image_size and facts["multiple"] == 32
  script = tmp_path / "onnx" / "colorize_onnx.py"
  # The folder alone: run from elsewhere, without this project on the path.
  ran = subprocess.run(
    [sys.executable, str(script), str(photo), str(tmp_path / "onnx.png")], cwd=tmp_path, capture_output=True, text=True
  )
  assert ran.returncode == 0, ran.stderr
  assert run_main("--mode=colorize", f"--input={photo}", f"--output={tmp_path / 'jax'}").returncode == 0
  ours = np.asarray(Image.open(tmp_path / "onnx.png")).astype(int)
  theirs = np.asarray(Image.open(tmp_path / "jax" / "coffee.png")).astype(int)
  assert ours.shape == theirs.shape == (134, 200, 3)
  assert np.abs(ours - theirs).max() <= 1  # Rounding alone.
  again = run_main("--mode=export", f"--output={tmp_path / 'onnx'}", "--format=onnx")
  assert again.returncode == 2 and "generator.onnx exists: choose another --output" in again.stderr
  assert run_main("--mode=export", f"--output={tmp_path / 'hlo'}", "--format=stablehlo").returncode == 0
  reloaded = jax.export.deserialize(bytearray((tmp_path / "hlo" / "generator.stablehlo").read_bytes()))
  lightness, hint_batch = network_inputs(1, 96, 128, with_hints=True)
  session = onnx_session(str(tmp_path / "onnx" / "generator.onnx"))
  np.testing.assert_allclose(reloaded.call(lightness, hint_batch), run_onnx(session, lightness, hint_batch), atol=1e-3)


@pytest.mark.parametrize(
  "args,message",
  [
    (["--format=tflite"], "--format=tflite is not an export format: use one of bundle, onnx, stablehlo."),
    (["--format=onnx", "--facts=f.json"], "--facts is for --format=bundle"),
    (["--weights=weights"], "--weights=weights is a bundle already: copy the folder, or pick --format=onnx."),
    (["--format=stablehlo"], "--mode=export --format=stablehlo needs --output=DIR"),
    (["--colorize_temperature=0.5"], "--colorize_temperature is for --format=onnx or stablehlo"),
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
