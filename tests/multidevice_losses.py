"""Prints, as JSON, the metrics of a few train steps on a 1-device and an N-device mesh.

Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (it must be set
before jax is imported), by tests/test_train.py.
"""

import json
import sys

import jax
import numpy as np

from colorize import train
from tests.conftest import tiny_config


def run(config, devices, images, steps):
  mesh = train.make_mesh(devices)
  state, (step_fn, eval_fn) = train.setup(config, mesh)
  history = []
  for i in range(steps):
    state, metrics = step_fn(state, train.global_batch(mesh, images[i]))
    history.append({k: float(v) for k, v in metrics.items()})
  evaluation = eval_fn(
    state,
    {
      "image": train.global_batch(mesh, images[0]),
      "mask": train.global_batch(mesh, np.ones(len(images[0]), np.float32)),
    },
  )
  history.append({k: float(v) for k, v in evaluation.items()})
  return history


def main():
  config = tiny_config(batch_size=8)
  images = np.random.default_rng(0).integers(0, 256, (3, 8, 16, 16, 3), dtype=np.uint8)
  result = {n: run(config, jax.devices()[:n], images, steps=3) for n in (1, jax.device_count())}
  json.dump(result, sys.stdout)


if __name__ == "__main__":
  main()
