"""What a run writes into its workdir: config.json, metrics.jsonl, TensorBoard, sample grids.

Only process 0 writes; the other processes get the same calls and do nothing.
"""

import html
import importlib.metadata
import io
import json
import os
import subprocess
import time

import jax
import numpy as np
from absl import logging
from PIL import Image
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from colorize.runs import run_record

_PACKAGES = (
  "jax",
  "jaxlib",
  "flax",
  "optax",
  "orbax-checkpoint",
  "ml-collections",
  "tensorflow-datasets",
  "grain",
  "tensorboard",
  "numpy",
)


def package_versions() -> dict:
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return versions


def git_commit() -> str:
  try:
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    return out.stdout.strip() or "unknown"
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def run_description(config, mesh) -> dict:
  return {
    "config": run_record.recorded(config),
    "data_rules": run_record.DATA_RULES,
    "versions": package_versions(),
    "git_commit": git_commit(),
    "devices": [str(d) for d in mesh.devices.flat],
    "process_count": jax.process_count(),
  }


def _format_duration(seconds: float) -> str:
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
  """Images per second and the estimated time left, measured between log points."""

  def __init__(self, start_step: int, total_steps: int, batch_size: int):
    self.total_steps, self.batch_size = total_steps, batch_size
    self.last_step, self.last_time = start_step, time.perf_counter()

  def restart(self, step: int) -> float:
    """Measures from `step` on; returns the seconds since the last (re)start."""
    now = time.perf_counter()
    elapsed, self.last_step, self.last_time = now - self.last_time, step, now
    return elapsed

  def update(self, step: int) -> dict:
    if step <= self.last_step:  # Nothing timed since the last (re)start.
      return {}
    now = time.perf_counter()
    seconds_per_step = (now - self.last_time) / (step - self.last_step)
    self.last_step, self.last_time = step, now
    return {
      "images_per_second": self.batch_size / seconds_per_step,
      "eta_seconds": seconds_per_step * (self.total_steps - step),
    }


CONSOLE_LEGEND = (
  "Each progress line: D = how well the discriminator tells real from colorized (its loss), G = the "
  "generator's loss, G_adv = its part from fooling the discriminator, L1 = its mean colour error, "
  "acc@2 = pixels whose colour is within about 2 units of the real one (L* within 2, a* and b* within 4.4: the "
  "paper's accuracy)."
)


def console_line(step: int, total: int, scalars: dict) -> str:
  parts = [f"step {step}/{total}"]
  for key, label in (
    ("train/d_loss", "D"),
    ("train/g_loss", "G"),
    ("train/g_loss_adv", "G_adv"),
    ("train/g_loss_l1", "L1"),
    ("eval/l1", "val L1"),
    ("eval/d_loss", "val D"),
  ):
    if key in scalars:
      parts.append(f"{label} {scalars[key]:.4f}")
  for key, label in (("train/accuracy", "acc@2"), ("eval/accuracy", "val acc@2")):
    if key in scalars:
      parts.append(f"{label} {100 * scalars[key]:.1f}%")
  if scalars.get("train/gray_images_skipped"):
    parts.append(f"{scalars['train/gray_images_skipped']} gray photos skipped")
  if "images_per_second" in scalars:
    parts.append(f"{scalars['images_per_second']:.1f} img/s")
    parts.append(f"ETA {_format_duration(scalars['eta_seconds'])}")
  return " | ".join(parts)


def _logged_step(line: str) -> int | None:
  """The step of one metrics.jsonl line; None for a line cut short (no newline, or not JSON)."""
  if not line.endswith("\n"):
    return None
  try:
    return json.loads(line)["step"]
  except (json.JSONDecodeError, KeyError, TypeError):
    return None


class RunFolder:
  """The workdir of one run, written by process 0 only."""

  def __init__(self, workdir: str, config, mesh, rewrite_config: bool = False):
    self.workdir = workdir
    self.total_steps = config.num_train_steps
    self.is_writer = jax.process_index() == 0
    self.metrics_path = os.path.join(workdir, "metrics.jsonl")
    self.samples_dir = os.path.join(workdir, "samples")
    config_path = os.path.join(workdir, "config.json")
    if self.is_writer:
      os.makedirs(self.samples_dir, exist_ok=True)
      # A run's first config stays (each resume goes to its history), unless it never trained.
      if rewrite_config or not os.path.exists(config_path):
        with open(config_path + ".tmp", "w") as f:  # Whole or not at all: other processes read it.
          json.dump(run_description(config, mesh), f, indent=2)
        os.replace(config_path + ".tmp", config_path)
    # TensorBoard only: the console line above is the human-readable log.
    self.writer = TensorBoardWriter(workdir) if self.is_writer else None

  def record_start(self, step: int, config, changed: dict, invocation: dict) -> None:
    """This start or resume in the run's history (`run_record`)."""
    if self.is_writer:
      run_record.record_start(self.workdir, step, config, changed, invocation, package_versions(), git_commit())
      self.writer.hparams(step, config)

  def forget_metrics_after(self, step: int) -> None:
    """Drops metrics.jsonl lines past `step`, and a line torn by a kill: a resumed run logs those
    steps again, so each appears once."""
    if not self.is_writer or not os.path.exists(self.metrics_path):
      return
    with open(self.metrics_path) as f:
      lines = [line for line in f if (logged := _logged_step(line)) is not None and logged <= step]
    with open(self.metrics_path + ".tmp", "w") as f:
      f.writelines(lines)
    os.replace(self.metrics_path + ".tmp", self.metrics_path)

  def write_scalars(self, step: int, scalars: dict) -> None:
    logging.info("%s", console_line(step, self.total_steps, scalars))
    if not self.is_writer:
      return
    self.writer.scalars(step, scalars)
    with open(self.metrics_path, "a") as f:
      f.write(json.dumps({"step": step, **scalars}) + "\n")

  def write_samples(self, step: int, grid: np.ndarray) -> str:
    """Saves a sample grid (gray | real | generated) as samples/step_XXXXXXX.png; returns its path."""
    path = os.path.join(self.samples_dir, f"step_{step:07d}.png")
    if self.is_writer:
      Image.fromarray(grid).save(path)
      self.writer.image(step, "samples", grid)
    return path

  def close(self) -> None:
    if self.writer:
      self.writer.close()


class TensorBoardWriter:
  """TensorBoard event files through the tensorboard package alone (no TensorFlow): scalars and
  PNG images, in the summary format that TensorBoard's scalar and image dashboards read."""

  def __init__(self, logdir: str):
    self.events = EventFileWriter(logdir)

  def _write(self, step: int, values: list) -> None:
    summary = summary_pb2.Summary(value=values)
    self.events.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

  def hparams(self, step: int, config) -> None:
    """The config as TensorBoard hyperparameters (its HParams tab), one per dotted field."""
    from tensorboard.plugins.hparams import summary_v2  # Protocol buffers only: no TensorFlow.

    fields = {
      name: value if isinstance(value, bool | int | float | str) else json.dumps(value)
      for name, value in run_record.flat(config).items()
    }
    summary = summary_v2.hparams_pb(fields)
    self.events.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

  def scalars(self, step: int, scalars: dict) -> None:
    self._write(step, [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()])

  def image(self, step: int, tag: str, image: np.ndarray) -> None:
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    height, width, channels = image.shape
    encoded = summary_pb2.Summary.Image(
      height=height, width=width, colorspace=channels, encoded_image_string=png.getvalue()
    )
    self._write(step, [summary_pb2.Summary.Value(tag=tag, image=encoded)])

  def close(self) -> None:
    self.events.flush()
    self.events.close()


def write_report(markdown_text: str, markdown_path: str) -> str:
  """Writes a report as Markdown and, beside it, as one HTML page (same name, .html) to open in a
  browser or send; its images stay files beside it. Returns the HTML page's path."""
  import markdown  # Only reports need it.

  with open(markdown_path, "w", encoding="utf-8") as f:
    f.write(markdown_text)
  # Run names and config values are text, never markup: a page meant to be sent runs nothing.
  text = markdown_text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
  body = markdown.markdown(text, extensions=["tables"], output_format="html")
  title = html.escape(markdown_text.splitlines()[0].lstrip("# ").strip() if markdown_text else "report")
  page = (
    f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
    "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px}"
    "table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%;image-rendering:pixelated}</style>\n"
    f"</head>\n<body>\n{body}\n</body>\n</html>\n"
  )
  html_path = os.path.splitext(markdown_path)[0] + ".html"
  with open(html_path, "w", encoding="utf-8") as f:
    f.write(page)
  return html_path
