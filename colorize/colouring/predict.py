"""Colorize anyone's photos at full resolution with a trained run (DESIGN section 6).

The generator sees the photo's lightness resized so its short side is `size` (the long side
rounded to a multiple of 2**depth); its predicted a,b are upsampled bilinearly to the photo's
own size and joined with the photo's ORIGINAL lightness, so detail and tones are the input's.
"""

import concurrent.futures
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from colorize import color
from colorize.colouring import full_size
from colorize.colouring import hint_points
from colorize.colouring import propagate
from colorize.colouring import steadying
from colorize.colouring import video
from colorize.data import photos
from colorize.networks import inference
from colorize.networks import models
from colorize.runs import run_setup
from colorize.runs.run_setup import UsageError

_PIXELS_PER_GROUP = 40_000_000  # Photos decoded ahead of the generator, at most (about 0.5 GB).


# ----------------------------------------------------------------------------- the generator


def lightness_to_ab(generator, variables, lightness_batch, hint_batch=None):
  """L in [0, 100], [B, h, w, 1] (and hint channels [B, h, w, 3]) -> predicted a,b in Lab units,
  [B, h, w, 2] (eval mode): the generator as the colorize mode and the exported files apply it."""
  gray = color.normalize_lightness(lightness_batch)
  lab = generator.apply(variables, gray, train=False, **({} if hint_batch is None else {"hints": hint_batch}))
  # A lax slice, not [..., 1:]: with symbolic sizes (the exports) indexing becomes a gather.
  return jax.lax.slice_in_dim(color.denormalize_lab(lab), 1, 3, axis=-1).astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=0)
def predict_ab(generator, variables, lightness_batch, hint_batch=None):
  """`lightness_to_ab` for L planes [B, h, w], compiled."""
  return lightness_to_ab(generator, variables, lightness_batch[..., None], hint_batch)


def hint_channels(group: list, planes: list, height: int, width: int) -> np.ndarray | None:
  """The group's hint channels at the network's size (photos without hints: none), or None when
  no photo has any."""
  if all(photo.hints is None for photo in group):
    return None
  empty = np.zeros((0, 5), np.float32)
  return np.stack(
    [
      hint_points.for_network(empty if photo.hints is None else photo.hints, plane.shape, (height, width))
      for photo, plane in zip(group, planes, strict=True)
    ]
  )


def colorize_group(
  generator,
  variables,
  group: list,
  size: int,
  multiple: int,
  spread: propagate.Spread | None = propagate.SPREAD,
  learned_channels: bool = False,
) -> list:
  """Colorizes photos that share a network shape in one generator call; uint8 RGB(A) arrays.

  A photo's hint points have their residual spread over the photo (`spread`, `propagate.py`)
  and, with `learned_channels`, reach a hints generator's hint channels too: off by default, as
  on val/ they took 0.3-1.4 dB off the spread's gain (docs/hints.md). Photos without points are
  coloured automatically, bit for bit."""
  planes = [full_size.lightness(photo.rgb) for photo in group]
  small = full_size.network_planes(planes, size, multiple)
  channels = hint_channels(group, planes, *small.shape[1:])
  given = channels if channels is not None and learned_channels and getattr(generator, "hints", False) else None
  ab_small = np.asarray(predict_ab(generator, variables, small, given))
  if channels is not None and spread is not None:
    ab_small = np.stack(
      [propagate.spread_hints(plane, ab, ch, spread) for plane, ab, ch in zip(small, ab_small, channels, strict=True)]
    )
  results = []
  for photo, plane, ab in zip(group, planes, ab_small, strict=True):
    rgb = full_size.full_size_colour(plane, ab)
    results.append(rgb if photo.alpha is None else np.concatenate([rgb, photo.alpha[..., None]], axis=-1))
  return results


class FrameColourer:
  """Colours the frames of one video in order: the generator on a batch, then `steadying.Steadier` frame by
  frame, then each frame's own full-resolution L*."""

  def __init__(
    self,
    generator,
    variables,
    *,
    size: int,
    multiple: int,
    batch_size: int,
    steadiness: float,
    gate: float = steadying.GATE_LIGHTNESS,
  ):
    self.generator, self.variables, self.size, self.multiple = generator, variables, size, multiple
    self.batch_size = batch_size
    self.steadier = steadying.Steadier(steadiness, gate)

  def __call__(self, frames: list) -> list:
    """uint8 RGB frames [H, W, 3] (one size, at most `batch_size`) -> the coloured frames, uint8 RGB."""
    planes = [full_size.lightness(frame) for frame in frames]
    small = full_size.network_planes(planes, self.size, self.multiple)
    # The last batch padded to the others' size: one compiled generator per video.
    padded = np.concatenate([small, np.repeat(small[-1:], self.batch_size - len(small), axis=0)])
    ab_small = np.asarray(predict_ab(self.generator, self.variables, padded))[: len(small)]
    return [
      full_size.full_size_colour(plane, self.steadier(small_plane, ab))
      for plane, small_plane, ab in zip(planes, small, ab_small, strict=True)
    ]


# ----------------------------------------------------------------------------- the command


@dataclasses.dataclass
class Summary:
  done: int = 0
  skipped: int = 0
  failed: int = 0


class ProgressLine:
  """One status line on stderr: items done (written or failed), written items per second, time left.

  `total` may be 0 when unknown (a video without a frame count): no ETA then."""

  def __init__(self, total: int, unit: str = "img"):
    self.total, self.unit, self.start, self.count, self.written = total, unit, time.perf_counter(), 0, 0
    self.interactive = sys.stderr.isatty()
    self.every = 1 if self.interactive else max(1, (total or 1000) // 10)  # Logs get about ten lines.

  def advance(self, written: bool) -> None:
    self.count += 1
    self.written += written
    if self.count % self.every and self.count != self.total:
      return
    end = "" if self.interactive and self.count != self.total else "\n"
    print(f"\r{self.text()}", end=end, file=sys.stderr, flush=True)

  def text(self) -> str:
    """The rate counts written items only (a failed file takes no time worth reporting), so it
    is left out until an item is written."""
    done = f"[{self.count}/{self.total}]" if self.total else f"[{self.count}]"
    if not self.written:
      return done
    rate = self.written / max(time.perf_counter() - self.start, 1e-9)
    left = f", ETA {(self.total - self.count) / rate:.0f} s" if self.count < self.total else ""
    return f"{done} {rate:.2f} {self.unit}/s{left}"

  def say(self, line: str) -> None:
    """A line of its own on stderr (after ending the progress line on a terminal)."""
    line_break = "\n" if self.interactive else ""
    print(f"{line_break}{line}", file=sys.stderr, flush=True)


def _decoded(jobs: list, max_pixels: int, report) -> Iterator[photos.Photo]:
  """Photos decoded on two threads ahead of the consumer; bad ones reported and dropped."""
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    futures = [pool.submit(photos.load_photo, source, target, max_pixels) for source, target in jobs[:4]]
    for i, (source, _) in enumerate(jobs):
      if i + 4 < len(jobs):
        futures.append(pool.submit(photos.load_photo, *jobs[i + 4], max_pixels))
      try:
        yield futures[i].result()
      except photos.BadPhoto as error:
        report(source, str(error))
      futures[i] = None  # Drop the decoded pixels once consumed.


def _with_hint_files(decoded: Iterator[photos.Photo], hint_files: dict, report) -> Iterator[photos.Photo]:
  """Photos with their hint file's points (`hint_points.hint_files`); a photo whose hint file is bad is
  reported and dropped (nothing is written for it)."""
  for photo in decoded:
    path = hint_files.get(photo.source)
    if path is None:
      yield photo
      continue
    try:
      points = hint_points.read_points(path)
      photo.hints = hint_points.user_points(points, *photo.rgb.shape[:2], source=path)
    except hint_points.BadHints as error:
      report(photo.source, str(error))
      continue
    yield photo


def _groups(decoded: Iterator[photos.Photo], batch_size: int, size: int, multiple: int) -> Iterator[list]:
  """Consecutive photos batched by network shape, up to `batch_size` photos and a pixel budget."""
  pending, pixels = {}, 0
  for photo in decoded:
    shape = full_size.network_shape(*photo.rgb.shape[:2], size, multiple)
    pending.setdefault(shape, []).append(photo)
    pixels += photo.rgb.shape[0] * photo.rgb.shape[1]
    if len(pending[shape]) >= batch_size:
      group = pending.pop(shape)
      pixels -= sum(p.rgb.shape[0] * p.rgb.shape[1] for p in group)
      yield group
    elif pixels > _PIXELS_PER_GROUP:
      yield from pending.values()
      pending, pixels = {}, 0
  yield from pending.values()


def colorize_photos(
  generator,
  variables,
  jobs: list,
  *,
  size: int,
  multiple: int,
  batch_size: int,
  max_pixels: int,
  image_format: str,
  hint_files: dict | None = None,
) -> Summary:
  """Colorizes every (source, target) job, with the points of its hint file (`hint_files`: {source:
  file}) if it has one; prints one line per failed photo."""
  summary, progress = Summary(), ProgressLine(len(jobs))

  def report(source, reason):
    summary.failed += 1
    progress.say(f"FAILED {source}: {reason}")
    progress.advance(written=False)

  decoded = _with_hint_files(_decoded(jobs, max_pixels, report), hint_files or {}, report)
  for group in _groups(decoded, batch_size, size, multiple):
    for photo, result in zip(group, colorize_group(generator, variables, group, size, multiple), strict=True):
      try:
        photos.save_image(result, photo.target, image_format)
        summary.done += 1
        if notes := photos.input_notes(photo):
          progress.say(f"NOTE {photo.source}: {'; '.join(notes)}")
        progress.advance(written=True)
      except OSError as error:
        report(photo.source, f"cannot write {photo.target}: {error.strerror or error}")
  return summary


def batch_shape(config, size: int = 0, batch_size: int = 8) -> dict:
  """The generator's short side (`size`, or 0: the config's), stride multiple and batch, as the
  keyword arguments of `colorize_photos` and `colorize_video`."""
  return dict(size=size or config.image_size, multiple=models.input_multiple(config.model), batch_size=batch_size)


def colorize_video(
  generator,
  variables,
  source: str,
  target: str,
  *,
  size: int,
  multiple: int,
  batch_size: int,
  steadiness: float,
  gate: float = steadying.GATE_LIGHTNESS,
) -> int:
  """Colours the video `source` into `target` (`video.transcode`), with a progress line; the frame count."""
  total = video.frame_count(source)
  progress = ProgressLine(total, unit="frames")
  progress.say(f"{source}: {total or 'an unknown number of'} frames")
  colour = FrameColourer(
    generator, variables, size=size, multiple=multiple, batch_size=batch_size, steadiness=steadiness, gate=gate
  )
  frames = video.transcode(source, target, colour, batch_size, progress)
  if progress.count != progress.total and progress.interactive:
    progress.say("")  # End the progress line of a video whose header had no (or another) frame count.
  return frames


def plan_jobs(found: list, targets: list, overwrite: bool):
  """(jobs to run, number skipped): existing outputs are kept unless `overwrite`; inputs never."""
  jobs, skipped = [], 0
  for (source, _), target in zip(found, targets, strict=True):
    if os.path.exists(target) and os.path.samefile(source, target):
      print(f"SKIPPED {source}: the output would replace the input; choose another --output", file=sys.stderr)
      skipped += 1
    elif os.path.exists(target) and not overwrite:
      print(f"SKIPPED {source}: {target} exists (--overwrite replaces it)", file=sys.stderr)
      skipped += 1
    else:
      jobs.append((source, target))
  return jobs, skipped


def check_hints(hints: str, num_photos: int) -> None:
  """Refuses a --hints that cannot apply: missing, or a file for several photos. (Every generator
  takes points: their colour spreads over the photo, `propagate.py`; one trained with hints also
  sees them in its hint channels.)"""
  if not hints:
    return
  if not os.path.exists(hints):
    raise UsageError(f"--hints={hints} does not exist: pass a JSON file (one photo) or a folder of <photo name>.json.")
  if os.path.isfile(hints) and num_photos > 1:
    raise UsageError(
      f"--hints={hints} is one file for {num_photos} photos: pass a folder of <photo name>.json files instead."
    )


def checked_flags(input_pattern: str, output_dir: str, image_format: str, batch_size: int, steadiness) -> float:
  """Refuses the colorize mode's flags that cannot work, one line each; the steadiness to use."""
  if not input_pattern or not output_dir:
    raise UsageError("--mode=colorize needs --input=PATH (a file, a folder or a glob) and --output=DIR.")
  if image_format not in photos.FORMATS:
    raise UsageError(f"--format={image_format} is unknown; use png or jpeg.")
  if not any(c in input_pattern for c in "*?[") and not os.path.exists(input_pattern):
    raise UsageError(f"--input={input_pattern} does not exist: pass a photo, a folder or a glob.")
  if batch_size < 1:
    raise UsageError(f"--colorize_batch={batch_size} must be at least 1 (photos or video frames per generator call).")
  steadiness = steadying.STEADINESS if steadiness is None else steadiness
  try:
    steadying.check_steadiness(steadiness)
  except ValueError as error:
    raise UsageError(f"--{error}") from None
  return steadiness


def found_inputs(input_pattern: str, recursive: bool, hints: str) -> tuple:
  """(photos, videos, {photo: its hint file}) found at --input, as (path, name) pairs."""
  found = photos.find_photos(input_pattern, recursive, photos.PHOTO_EXTENSIONS + video.VIDEO_EXTENSIONS)
  if not found:
    extensions = ", ".join(photos.PHOTO_EXTENSIONS + video.VIDEO_EXTENSIONS)
    raise UsageError(f"no photos or videos ({extensions}) found at --input={input_pattern}.")
  found_videos = [item for item in found if video.is_video(item[0])]
  found_photos = [item for item in found if not video.is_video(item[0])]
  if hints and not found_photos:
    raise UsageError(f"--hints are for photos; --input={input_pattern} holds videos only (coloured automatically).")
  check_hints(hints, len(found_photos))
  try:
    hint_files = hint_points.hint_files(hints, found_photos)
  except hint_points.BadHints as error:
    raise UsageError(str(error)) from None
  if hints and not hint_files:
    print(
      f"NOTE --hints={hints}: no hint file matches a photo (a photo a/img.jpg under --input takes "
      f"{os.path.join(hints, 'a', 'img.json')}): every photo is coloured automatically.",
      file=sys.stderr,
    )
  return found_photos, found_videos, hint_files


def run(
  config,
  workdir: str,
  *,
  input_pattern: str,
  output_dir: str,
  recursive: bool = False,
  overwrite: bool = False,
  image_format: str = "png",
  size: int = 0,
  batch_size: int = 8,
  max_pixels: int = photos.MAX_PIXELS,
  hints: str = "",
  steadiness: float | None = None,
) -> int:
  """The colorize mode, for photos and videos. Returns the exit status: 0 all done, 1 some failed."""
  steadiness = checked_flags(input_pattern, output_dir, image_format, batch_size, steadiness)
  found_photos, found_videos, hint_files = found_inputs(input_pattern, recursive, hints)
  output_existed = os.path.isdir(output_dir)
  run_setup.make_writable_folder(output_dir, "--output")
  photo_targets = photos.output_paths([name for _, name in found_photos], output_dir, image_format)
  jobs, skipped = plan_jobs(found_photos, photo_targets, overwrite)
  video_jobs, skipped_videos = plan_jobs(
    found_videos, [os.path.join(output_dir, n) for _, n in found_videos], overwrite
  )
  generator, variables, step = inference.load_generator(config, workdir)
  counts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in ((len(jobs), "photo"), (len(video_jobs), "video")) if n]
  print(f"Colorizing {' and '.join(counts) or 'nothing new'} with {workdir} at step {step}.", file=sys.stderr)
  shape = batch_shape(config, size, batch_size)
  summary = colorize_photos(
    generator, variables, jobs, **shape, max_pixels=max_pixels, image_format=image_format, hint_files=hint_files
  )
  for source, target in video_jobs:
    try:
      colorize_video(generator, variables, source, target, **shape, steadiness=steadiness)
      summary.done += 1
    except video.BadVideo as error:
      summary.failed += 1
      print(f"FAILED {source}: {error}", file=sys.stderr)
  summary.skipped += skipped + skipped_videos
  if not output_existed and not os.listdir(output_dir):
    os.rmdir(output_dir)  # Made by this run, which wrote nothing: no empty folder left behind.
  print(
    f"Done: {summary.done} colorized, {summary.skipped} skipped, {summary.failed} failed -> {output_dir}",
    file=sys.stderr,
  )
  return 1 if summary.failed else 0
