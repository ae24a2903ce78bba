"""A trained generator as a self-contained folder: what inference needs, and nothing else.

    python main.py --mode=export --workdir=runs/photos --output=weights --facts=FACTS.json   # export a run

The folder holds `generator.msgpack` (flax serialization of G's {'params', 'batch_stats'}: the
weight average when the run keeps one) and `manifest.json`: the config, the training facts
(data, steps, seed, commit, scores) and the file's SHA-256, which `load` checks. The project
ships one such folder, `weights/`: `python main.py --mode=colorize --input=... --output=...`
uses it when no run is named.
"""

import hashlib
import json
import os

import flax.serialization
import flax.traverse_util
import jax
import ml_collections
import numpy as np

import colorize
from colorize.runs import reporting
from colorize.runs import run_setup
from colorize.runs.run_setup import UsageError

BUNDLED = os.path.join(colorize.REPO, "weights")
MANIFEST = "manifest.json"
WEIGHTS_FILE = "generator.msgpack"
FORMAT = "colorize-generator-1"


def is_bundle(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, MANIFEST))


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def export(config, variables, step: int, out_dir: str, facts: dict | None = None) -> dict:
  """Writes G's variables and the manifest to `out_dir` (refusing to replace a bundle there).

  `facts` go into the manifest as they are (training data, scores, the run's commit); without a
  `commit` among them, this checkout's is recorded."""
  if any(os.path.exists(os.path.join(out_dir, name)) for name in (MANIFEST, WEIGHTS_FILE)):
    raise UsageError(f"{out_dir} already holds a bundle: choose another --output, or move it away first.")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, WEIGHTS_FILE)
  host = jax.tree.map(lambda x: np.asarray(x, np.float32), jax.device_get(variables))
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(host))
  manifest = {
    "format": FORMAT,
    "file": WEIGHTS_FILE,
    "sha256": sha256_of(path),
    "bytes": os.path.getsize(path),
    "step": int(step),
    "seed": int(config.seed),
    "commit": reporting.git_commit(),  # Replaced by the run's own when `facts` names it.
    **(facts or {}),
    "config": config.to_dict(),
  }
  with open(os.path.join(out_dir, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=2)
  return manifest


def read_manifest(folder: str) -> dict:
  path = os.path.join(folder, MANIFEST)
  if not os.path.isfile(path):
    raise UsageError(f"no trained generator at {folder} (no {MANIFEST}): pass --workdir=RUN, or restore weights/.")
  try:
    with open(path) as f:
      manifest = json.load(f)
  except (OSError, ValueError) as error:
    raise UsageError(f"{path} cannot be read ({error}): restore it (git checkout weights/).") from None
  if manifest.get("format") != FORMAT:
    raise UsageError(f"{path} is not a {FORMAT} manifest: export the run again with --mode=export.")
  return manifest


def bundle_config(folder: str, data_config=None) -> ml_collections.ConfigDict:
  """The bundle's config, or `data_config` (data and evaluation settings) with the bundle's networks.

  The discriminator is not shipped: `adversarial` is off, so evaluation scores G alone; the
  weights are final (a run's average already), so no average is kept (`ema_decay` 0).
  """
  config = run_setup.config_from_dict(read_manifest(folder)["config"])
  if data_config is not None:
    networks = config
    config = ml_collections.ConfigDict(data_config.to_dict())
    config.model, config.image_size, config.dtype = networks.model, networks.image_size, networks.dtype
  config.adversarial, config.ema_decay = False, 0.0
  return config


def _checked_weights(folder: str) -> tuple:
  """(the bundle's raw weights as nested dicts, its manifest), its checksum checked."""
  manifest = read_manifest(folder)
  path = os.path.join(folder, manifest["file"])
  if not os.path.isfile(path):
    raise UsageError(f"{path} is missing: restore it (git checkout weights/), or pass --workdir=RUN.")
  if (found := sha256_of(path)) != manifest["sha256"]:
    raise UsageError(
      f"{path} is damaged (SHA-256 {found[:12]}..., the manifest says {manifest['sha256'][:12]}...): "
      "restore it (git checkout weights/)."
    )
  with open(path, "rb") as f:
    return flax.serialization.msgpack_restore(f.read()), manifest


def load_variables(folder: str, abstract_variables: dict) -> tuple:
  """(G's variables, step) from the bundle in `folder`, its checksum and shapes checked."""
  restored, manifest = _checked_weights(folder)
  shapes = jax.tree.map(lambda x: x.shape, abstract_variables)
  if jax.tree.map(np.shape, restored) != shapes:
    path = os.path.join(folder, manifest["file"])
    raise UsageError(f"{path} does not fit the networks of its manifest's config: export the run again.")
  variables = jax.tree.map(lambda x, a: np.asarray(x, a.dtype), restored, abstract_variables)
  return variables, manifest["step"]


def weights_into(folder: str, variables: dict) -> tuple:
  """(`variables` with every array the bundle holds, step, paths the bundle lacks): to start a
  run from a bundle (config.init_from), e.g. a generator that adds a vivid head to it.

  Every array of the bundle must find its place with its shape: otherwise the networks differ."""
  restored, manifest = _checked_weights(folder)
  ours, theirs = flax.traverse_util.flatten_dict(variables, sep="/"), flax.traverse_util.flatten_dict(restored, sep="/")
  misfits = [p for p, x in theirs.items() if p not in ours or np.shape(x) != np.shape(ours[p])]
  if misfits:
    raise UsageError(
      f"config.init_from={folder}: the bundle's {misfits[0]} (and {len(misfits) - 1} more) does not fit this "
      "config's generator: model.* must build the bundle's networks (extra heads may be added)."
    )
  merged = {p: np.asarray(theirs[p], np.asarray(x).dtype) if p in theirs else x for p, x in ours.items()}
  return flax.traverse_util.unflatten_dict(merged, sep="/"), manifest["step"], sorted(set(ours) - set(theirs))
