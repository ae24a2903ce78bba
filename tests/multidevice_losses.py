"""Prints, as JSON, the metrics and final parameters of a few plain-SGD train steps on meshes of
several sizes.

Run by tests/test_steps.py in subprocesses with XLA_FLAGS=--xla_force_host_platform_device_count=N
(it must be set before jax is imported). With `PROCESS_ID NUM_PROCESSES PORT` arguments it joins
a multi-process CPU cluster (gloo collectives) and trains on the mesh of all processes' devices,
each process feeding its own rows of the same global batches. With `--recipe` first, the
quality recipe's switches are on: L1 pretraining (step 1), the weight average, spectral norm in
D, class-rebalancing weights, the bins head (its cross-entropy beside the rebalanced L1) and
simulated colour hints (drawn per photo from its place in the global batch).

Plain SGD, not Adam: Adam divides by the gradient's own scale, so gradients N times too large
(summed over N devices instead of averaged) would leave Adam's updates almost unchanged.
"""

import json
import sys

import jax
import numpy as np

from colorize.training import compiled
from colorize.training import losses
from colorize.training import steps
from tests.conftest import tiny_config


def local_rows(global_array):
  """This process's share of a global batch (all of it in a single process)."""
  rows = len(global_array) // jax.process_count()
  return global_array[jax.process_index() * rows : (jax.process_index() + 1) * rows]


def flat_params(state) -> dict:
  """Every parameter and batch statistic of G and D, by path, as nested lists."""
  networks = {"generator": state.generator.variables(), "discriminator": state.discriminator.variables()}
  networks["generator_ema"] = state.generator_ema or {}
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(networks))
  return {jax.tree_util.keystr(path): np.asarray(value).tolist() for path, value in leaves}


def run(config, devices, images, num_steps):
  mesh = steps.make_mesh(devices)
  weights = losses.rebalancing_weights(losses.ab_histogram(images[0]), config.loss.rebalance)
  state, (step_fn, eval_fn) = compiled.setup(config, mesh, weights if config.loss.rebalance else None)

  def batch(array):
    return steps.global_batch(mesh, local_rows(array))

  history = []
  for i in range(num_steps):
    state, metrics = step_fn(state, batch(images[i]))
    history.append({k: float(v) for k, v in metrics.items()})
  evaluation = eval_fn(state, {"image": batch(images[0]), "mask": batch(np.ones(len(images[0]), np.float32))})
  history.append({k: float(v) for k, v in evaluation.items() if k != "per_image"})
  return {"metrics": history, "params": flat_params(state)}


def main(argv):
  recipe = argv[:1] == ["--recipe"]
  argv = argv[1:] if recipe else argv
  if len(argv) == 3:
    process_id, num_processes, port = map(int, argv)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id)
  config = tiny_config(batch_size=8)
  config.optim.optimizer = "sgd"
  config.optim.g_learning_rate = config.optim.d_learning_rate = 1e-2
  if recipe:
    config.update_from_flattened_dict(
      {
        "pretrain_steps": 1,
        "ema_decay": 0.5,
        "model.disc_norm": "spectral",
        "loss.rebalance": 0.5,
        "model.output": "ab",
        "model.colour_head": "bins",
        "model.hints": True,
      }
    )
  images = np.random.default_rng(0).integers(0, 256, (3, 8, 16, 16, 3), dtype=np.uint8)
  sizes = (jax.device_count(),) if jax.process_count() > 1 else (1, jax.device_count())
  result = {n: run(config, jax.devices()[:n], images, num_steps=3) for n in sizes}
  if jax.process_index() == 0:
    json.dump(result, sys.stdout)


if __name__ == "__main__":
  main(sys.argv[1:])
