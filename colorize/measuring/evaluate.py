"""The evaluate mode: the paper's metrics for a trained run, next to the gray baseline.

Writes RUN/eval/metrics.json (DESIGN section 5 keys), RUN/eval/report.md and RUN/eval/grid.png,
with the same per-image metric code that the validation pass uses during training.
"""

import json
import os

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from colorize import metrics as metrics_lib
from colorize.data import input_pipeline
from colorize.measuring import baselines
from colorize.networks import inference
from colorize.runs import bundle
from colorize.runs import checkpoint
from colorize.runs import reporting
from colorize.runs import run_setup
from colorize.runs.run_setup import UsageError
from colorize.training import compiled
from colorize.training import config_checks
from colorize.training import steps
from colorize.training import validation

METRIC_KEYS = ("accuracy", "mae_rgb", "psnr", "ssim", "colorfulness", "delta_colorfulness")
METRIC_LABELS = {
  "accuracy": "accuracy@2 (share of pixels, higher is better)",
  "mae_rgb": "MAE, RGB 0..255 (lower is better)",
  "psnr": "PSNR, dB (higher is better)",
  "ssim": "SSIM (higher is better)",
  "colorfulness": "colourfulness (real images: {real:.2f})",
  "delta_colorfulness": "colourfulness gap to the real images (lower is better)",
}


def intervals(per_image: list, keys: tuple = METRIC_KEYS) -> dict:
  """{key: [low, high]}: the 95% bootstrap interval of each per-image metric's mean (images of
  mask 1), for the model, `kept_l/` and `gray/`, and of the model's paired PSNR gain over gray."""
  images = {name: np.concatenate([batch[name] for batch in per_image]) for name in per_image[0]}
  real = images.pop("mask") > 0
  out = {}
  for name, values in images.items():
    if name.split("/")[-1] in keys:
      out[name] = list(metrics_lib.bootstrap_interval(values[real]))
  out["psnr_vs_gray"] = list(metrics_lib.bootstrap_interval(images["psnr"][real] - images["gray/psnr"][real]))
  return out


CLASSIC_FIT_IMAGES = 512  # Training images whose colours fill the classic colorizers' tables.


def classic_baselines(config, eval_batches) -> dict:
  """{name: averages} of each classic colorizer (`baselines.py`, fitted on the first training
  images) on the evaluation images, scored like the model; {} without training images."""
  try:
    fit_images = input_pipeline.first_training_images(config, CLASSIC_FIT_IMAGES)
  except run_setup.DatasetUnavailableError as error:
    logging.warning("No classic colorizers in the report: no training images to fit them (%s).", error)
    return {}
  if jax.process_count() > 1:  # Every process fits the same tables: on every process's images.
    fit_images = multihost_utils.process_allgather(fit_images, tiled=True)
  tables = baselines.fit(fit_images)
  names = [name for name in baselines.NAMES if name != "gray"]  # Gray is scored in the eval step.
  sums = {name: {} for name in names}
  for batch in eval_batches:
    real = batch["image"][batch["mask"] > 0]
    for name in names if len(real) else ():
      outputs = np.stack([baselines.colorize(tables, name, image) for image in real])
      for key, values in jax.device_get(metrics_lib.jitted_output_metrics(outputs, real)).items():
        sums[name][key] = sums[name].get(key, 0.0) + float(values.sum())
      sums[name]["count"] = sums[name].get("count", 0.0) + len(real)
  if jax.process_count() > 1:  # Each process scored its own rows of every batch.
    sums = jax.tree.map(lambda x: float(np.sum(multihost_utils.process_allgather(np.float64(x)))), sums)
  return {
    name: metrics_lib.with_derived_metrics({k: v / max(s["count"], 1.0) for k, v in s.items() if k != "count"})
    for name, s in sums.items()
  }


def judged_agreement(generator, variables, eval_batches) -> dict:
  """{'model': share, 'gray': share} of the evaluation images whose ImageNet top-1 class (the
  judge's, `judge.py`) is the same for the colorized (or gray) image as for the real one."""
  from colorize.measuring import judge  # EfficientNet-Lite2's weights are read only when asked.

  classifier = judge.ImageNetJudge()
  agreed, count = {"model": 0, "gray": 0}, 0
  for batch in eval_batches:
    real = batch["image"][batch["mask"] > 0]
    if len(real):
      truth = classifier.top1_classes(real)
      colorized = np.asarray(inference.colorize_images(generator, variables, real))
      agreed["model"] += int(np.sum(classifier.top1_classes(colorized) == truth))
      agreed["gray"] += int(np.sum(classifier.top1_classes(inference.gray_version(real)) == truth))
      count += len(real)
  if jax.process_count() > 1:  # Each process judged its own rows of every batch.
    agreed, count = jax.tree.map(lambda x: int(np.sum(multihost_utils.process_allgather(np.int64(x)))), (agreed, count))
  return {name: value / max(count, 1) for name, value in agreed.items()}


def metrics_json(results: dict, step: int, classic: dict | None = None, spread: dict | None = None) -> dict:
  """The evaluation averages in the layout of DESIGN section 5.

  `kept_l` holds the same keys for what the colorize mode writes: G's a,b with the input's own
  L. The top-level keys score G's whole output, the paper's way; for `model.output='ab'` the two
  are the same images.
  """
  count = int(results["num_images"])
  model = {key: results[key] for key in METRIC_KEYS}
  kept_l = {key: results.get(f"kept_l/{key}", results[key]) for key in METRIC_KEYS}
  gray = {key: results[f"gray/{key}"] for key in METRIC_KEYS}
  classic = {name: {key: values[key] for key in METRIC_KEYS} for name, values in (classic or {}).items()}
  return {
    **model,
    "num_images": count,
    "step": step,
    "kept_l": {**kept_l, "num_images": count, "step": step},
    "baselines": {
      name: {**values, "num_images": count, "step": step} for name, values in {"gray": gray, **classic}.items()
    },
    "real_colorfulness": results["real_colorfulness"],
    **({"intervals": spread} if spread else {}),
  }


def split_name(config) -> str:
  if config.dataset in ("demo", "folder"):
    return f"{config.dataset}, held-out photos"
  return f"{config.dataset}, split {config.eval_split}"


def resolution_note(size: int, trained_size: int | None = None) -> str:
  """How the images of a report were made, in words."""
  trained = f"; trained at {trained_size} px" if trained_size and trained_size != size else ""
  return f"at {size}x{size} px: the largest centred square of each photo, resized{trained}"


def with_interval(value: float, interval) -> str:
  return f"{value:.4f}" if not interval else f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"


def report_markdown(metrics: dict, name: str, data: str) -> str:
  spread = metrics.get("intervals", {})
  lines = [
    f"# Evaluation of `{name}`",
    "",
    f"Step {metrics['step']}, {metrics['num_images']} images ({data}), {metrics.get('resolution', '')}"
    + (f", annealed-mean temperature {metrics['temperature']}" if "temperature" in metrics else "")
    + (f", vividness {metrics['vividness']}" if metrics.get("vividness") else "")
    + ". Each mean with its 95% bootstrap interval over the images. Baselines: gray is the input's "
    "lightness with a = b = 0; the classic colorizers (colorize/measuring/baselines.py) predict a,b from the training "
    "images' mean colours: overall, per lightness, per lightness and local texture.",
    "",
    "| metric | model | model, input L kept (what colorize writes) | " + " | ".join(metrics["baselines"]) + " |",
    "|---|---:|---:|" + "---:|" * len(metrics["baselines"]),
  ]
  for key in METRIC_KEYS:
    label = METRIC_LABELS[key].format(real=metrics["real_colorfulness"])
    kept = spread.get(f"kept_l/{key}", spread.get(key))
    values = [with_interval(metrics[key], spread.get(key)), with_interval(metrics["kept_l"][key], kept)]
    for baseline, scores in metrics["baselines"].items():
      values.append(with_interval(scores[key], spread.get(f"{baseline}/{key}")))
    lines.append(f"| {label} | " + " | ".join(values) + " |")
  if "agreement" in metrics:
    lines += [
      "",
      f"Classifier agreement (EfficientNet-Lite2's ImageNet top-1 class the same as for the real image): "
      f"{metrics['agreement']:.3f}; the gray input's {metrics['baselines']['gray']['agreement']:.3f}.",
    ]
  if "psnr_vs_gray" in spread:
    low, high = spread["psnr_vs_gray"]
    gain = metrics["psnr"] - metrics["baselines"]["gray"]["psnr"]
    lines += ["", f"PSNR gain over the gray input, paired image by image: {gain:+.2f} dB [{low:+.2f}, {high:+.2f}]."]
  lines += ["", "![gray | real | generated](grid.png)", "", "*gray input | real | generated*", ""]
  return "\n".join(lines)


def default_output(workdir: str, size: int, trained_size: int | None) -> str:
  """A run's own eval/ at its training size; eval-<size>px/ beside it at another size."""
  return os.path.join(workdir, "eval" if not trained_size or size == trained_size else f"eval-{size}px")


def trained_size(workdir: str) -> int | None:
  """The image size a run trained at (its config.json), None for a bundle."""
  saved = run_setup.saved_start(workdir)
  return None if saved is None else saved["config"].get("image_size")


def trained_state(config, source: str, state, mesh):
  """`state` with the trained generator of a run (its newest checkpoint, its weight average when
  kept: what colorize writes) or of a bundle. The generator alone: it is convolutional, so a run
  can be evaluated at another size than it trained at (its discriminator could not)."""
  _, variables, step = inference.load_generator(config, source)
  variables = jax.device_put(variables, NamedSharding(mesh, P()))
  generator = state.generator.replace(params=variables["params"], batch_stats=variables["batch_stats"])
  step = jax.device_put(np.int32(step), state.step.sharding)
  return state.replace(step=step, generator=generator, generator_ema=None)


def evaluate_run(config, workdir: str, num_images: int = -1, output_dir: str | None = None) -> dict:
  """Evaluates the newest checkpoint of `workdir` (or a bundle) on `config.eval_split`.

  Writes metrics.json, report.md and grid.png to `output_dir` (default: workdir/eval; a bundle
  needs one) and returns the metrics.
  """
  if bundle.is_bundle(workdir) and not output_dir:
    raise UsageError(
      f"--mode=evaluate with the generator in {workdir} (a bundle, no run) needs --output=DIR for the report; "
      "or evaluate a run of yours with --workdir=RUN."
    )
  if not bundle.is_bundle(workdir):
    checkpoint.require_checkpoint(workdir)  # Before any compilation.
  mesh = steps.make_mesh()
  config_checks.check_config(config, jax.device_count(), jax.process_count())
  state, (_, eval_fn) = compiled.setup(config, mesh, pretrained=False)  # The run's or bundle's weights follow.
  generator = inference.generator_module(config)
  state = trained_state(config, workdir, state, mesh)
  step = int(state.step)
  data = input_pipeline.eval_dataset(config, num_images=num_images)
  trained = trained_size(workdir)
  resolution = resolution_note(config.image_size, trained)
  logging.info("Evaluating %s at step %d on %s, %s.", workdir, step, split_name(config), resolution)
  per_image = []
  results = validation.evaluate_subset(eval_fn, state, mesh, _with_progress(data.batches()), per_image)
  metrics = metrics_json(results, step, classic_baselines(config, data.batches()), intervals(per_image))
  metrics |= {"image_size": config.image_size, "resolution": resolution}
  if config.model.colour_head == "bins":
    metrics["temperature"] = config.model.temperature
  metrics["vividness"] = float(config.model.get("vividness", 0.0))
  if config.get("judge", True):  # Older runs and bundles lack the field: judged too.
    agreement = judged_agreement(generator, state.inference_variables(), data.batches())
    metrics["agreement"], metrics["baselines"]["gray"]["agreement"] = agreement["model"], agreement["gray"]

  out_dir = output_dir or default_output(workdir, config.image_size, trained)
  if jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    images = input_pipeline.first_images(data, config.num_sample_images)
    generated = np.asarray(inference.colorize_images(generator, state.inference_variables(), images))
    Image.fromarray(inference.comparison_grid(images, generated)).save(os.path.join(out_dir, "grid.png"))
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
      json.dump(metrics, f, indent=2)
    reporting.write_report(
      report_markdown(metrics, run_setup.run_name(workdir), split_name(config)), os.path.join(out_dir, "report.md")
    )
  logging.info(
    "accuracy@2 %.4f (gray %.4f), MAE %.2f (gray %.2f) on %d images: %s",
    metrics["accuracy"],
    metrics["baselines"]["gray"]["accuracy"],
    metrics["mae_rgb"],
    metrics["baselines"]["gray"]["mae_rgb"],
    metrics["num_images"],
    os.path.join(out_dir, "report.md"),
  )
  return metrics


def _with_progress(batches, every: int = 20):
  for i, batch in enumerate(batches, 1):
    if i % every == 0:
      logging.info("Evaluated %d batches.", i)
    yield batch
