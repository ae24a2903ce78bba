"""The export mode: a trained generator as a folder for --weights, or as a file for other runtimes.

    python main.py --mode=export --workdir=runs/photos --output=weights --facts=FACTS.json    # a bundle
    python main.py --mode=export --output=onnx --format=onnx              # the bundled model, for onnxruntime
    python main.py --mode=export --workdir=runs/photos --output=hlo --format=stablehlo   # for jax.export

The ONNX and StableHLO files hold the weights and take any batch and photo size (multiples of
the network's stride): L* in [0, 100], float32 [batch, height, width, 1] (and, for a model with
hints, the hint channels [batch, height, width, 3]) -> a*,b* [batch, height, width, 2].
`export.json` beside them says so, with the short side the network was trained at.
"""

import json
import os
import shutil
import sys

import jax
import jax.numpy as jnp

from colorize import files
from colorize.colouring import predict
from colorize.networks import cpu_kernels
from colorize.networks import inference
from colorize.networks import models
from colorize.runs import bundle
from colorize.runs import run_setup
from colorize.runs.run_setup import UsageError

FORMATS = ("bundle", "onnx", "stablehlo")
FILES = {"onnx": "generator.onnx", "stablehlo": "generator.stablehlo"}
FACTS = "export.json"
ONNX_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "colorize_onnx.py")  # Copied as is.
# Every platform jax.export lowers for: the file runs wherever JAX does.
STABLEHLO_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def read_facts(path: str | None) -> dict:
  """The JSON object of facts in `path` (training data, scores), or {}; one-line errors."""
  if not path:
    return {}
  try:
    with open(path) as f:
      facts = json.load(f)
  except (OSError, ValueError) as error:
    raise UsageError(f"--facts={path} cannot be read as JSON ({error}): pass a file holding one JSON object.") from None
  if not isinstance(facts, dict):
    raise UsageError(f"--facts={path} holds a {type(facts).__name__}, not a JSON object: wrap the facts in {{...}}.")
  return facts


def export_bundle(workdir: str | None, output_dir: str | None, facts_path: str | None = None) -> dict:
  """Exports the newest checkpoint of `workdir` (its weight average when kept) to `output_dir`.

  The manifest records the commit that trained the run, then the facts of `facts_path`.
  """
  if not workdir or not output_dir:
    raise UsageError("--mode=export needs --workdir=RUN (a trained run) and --output=DIR (a new folder).")
  facts = read_facts(facts_path)
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise UsageError(f"--workdir={workdir} holds no run (no config.json): name the folder of a trained run.")
  with open(path) as f:
    saved = json.load(f)
  config = run_setup.config_from_dict(saved["config"])
  _, variables, step = inference.load_generator(config, workdir)
  facts = {"commit": saved.get("git_commit", "unknown"), **facts}  # The code that trained it.
  manifest = bundle.export(config, variables, step, output_dir, facts)
  print(f"Exported step {step} of {workdir}: {manifest['bytes']:,} bytes -> {output_dir}", file=sys.stderr)
  return manifest


def input_specs(config) -> list:
  """The generator's inputs with a symbolic batch and size: L* (and the hint channels for a hints model)."""
  multiple = models.input_multiple(config.model)
  batch, height, width = jax.export.symbolic_shape("batch, height, width")
  shape = (batch, multiple * height, multiple * width)
  specs = [jax.ShapeDtypeStruct((*shape, 1), jnp.float32)]
  return specs + ([jax.ShapeDtypeStruct((*shape, 3), jnp.float32)] if config.model.hints else [])


def generator_function(config, source: str):
  """(L* [, hint channels]) -> a*,b* of the generator of `source` (a run or a bundle), its
  weights held as constants; and its step."""
  generator, variables, step = inference.load_generator(config, source)
  variables = jax.device_get(variables)

  def lightness_to_ab(lightness, hints=None):
    return predict.lightness_to_ab(generator, variables, lightness, hints)

  return lightness_to_ab, step


def onnx_bytes(function, specs: list) -> bytes:
  from colorize.exporting import onnx_export  # onnx is needed here alone.

  names = ["lightness", "hints"][: len(specs)]
  with cpu_kernels.xla_ops():
    try:
      model = onnx_export.to_onnx(function, specs, names, ["ab"], doc="L* (and hints) -> a*,b*; export.json")
    except onnx_export.UnsupportedOp as error:
      raise UsageError(f"--format=onnx cannot write this generator: {error}; use --format=stablehlo.") from None
  return model.SerializeToString()


def stablehlo_bytes(function, specs: list) -> bytes:
  """The function lowered for every platform, serialised (`jax.export.deserialize` reads it)."""
  with cpu_kernels.xla_ops():  # XLA's own ops: portable, and chosen without knowing the sizes.
    exported = jax.export.export(jax.jit(function), platforms=STABLEHLO_PLATFORMS)(*specs)
  return exported.serialize()


def _write_new(path: str, data: bytes) -> None:
  """Writes `path` whole or not at all (`files.partial_beside`, renamed)."""
  partial = files.partial_beside(path)
  try:
    with open(partial, "wb") as f:
      f.write(data)
    os.replace(partial, path)
  finally:
    files.remove_if_there(partial)


def export_portable(config, source: str, output_dir: str | None, file_format: str) -> dict:
  """Writes the generator of `source` as an ONNX or StableHLO file with its `export.json` to
  `output_dir` (and, for ONNX, the script that colours photos with it); refuses to replace files."""
  if not output_dir:
    raise UsageError(f"--mode=export --format={file_format} needs --output=DIR (a new folder for the file).")
  names = [FILES[file_format], FACTS] + ([os.path.basename(ONNX_SCRIPT)] if file_format == "onnx" else [])
  if existing := [n for n in names if os.path.exists(os.path.join(output_dir, n))]:
    raise UsageError(f"{os.path.join(output_dir, existing[0])} exists: choose another --output, or move it away first.")
  run_setup.make_writable_folder(output_dir, "--output")
  function, step = generator_function(config, source)
  specs = input_specs(config)
  data = onnx_bytes(function, specs) if file_format == "onnx" else stablehlo_bytes(function, specs)
  multiple = models.input_multiple(config.model)
  facts = {
    "format": f"colorize-{file_format}-1",
    "file": FILES[file_format],
    "inputs": {
      "lightness": f"float32 [batch, height, width, 1]: CIE L* in [0, 100]; height and width multiples of {multiple}",
      **(
        {"hints": "float32 [batch, height, width, 3]: a/110, b/110 of hinted pixels and a mask of 1 there, else 0"}
        if config.model.hints
        else {}
      ),
    },
    "output": "ab: float32 [batch, height, width, 2], CIE a* and b*",
    "short_side": int(config.image_size),
    **({"temperature": float(config.model.temperature)} if config.model.colour_head == "bins" else {}),
    "vividness": float(config.model.get("vividness", 0.0)),
    "multiple": multiple,
    "step": int(step),
    "source": source,
  }
  _write_new(os.path.join(output_dir, FILES[file_format]), data)
  if file_format == "onnx":
    shutil.copyfile(ONNX_SCRIPT, os.path.join(output_dir, os.path.basename(ONNX_SCRIPT)))
  _write_new(os.path.join(output_dir, FACTS), json.dumps(facts, indent=2).encode())
  print(f"Exported step {step} of {source}: {len(data):,} bytes -> {output_dir}/{FILES[file_format]}", file=sys.stderr)
  return facts
