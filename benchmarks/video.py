"""Video colour: flicker and PSNR frame by frame vs steadied vs the real video, and frames/s at 640x360.

    python -m benchmarks.video --data_dir=../shared/photos/val           # flicker on clips of real photos
    python -m benchmarks.video --data_dir=../shared/photos/train --clips=15 --steadiness=0,0.8,0.9 --gate=12  # tuning
    python -m benchmarks.video --quick                                   # scikit-image photos (CI smoke run)

Each clip is two shots of `--shot_frames` frames panning across a photo, with a cut between
them (`benchmarks/clips.py`), written as H.264 with an audio tone: the real colour video. The
colorize mode's own video path (`predict.colorize_video`, the bundled model unless --weights)
colours it at each steadiness; the coloured and the real videos are decoded and compared:
flicker (`steadying.FlickerMeter`: mean a,b distance between consecutive frames over pixels
whose L* moved by less than 2) and PSNR per frame against the real frames. Then the speed of the
whole path (decode, colour, encode) for a 640x360 clip. JSON lines, then a table. The flicker of
the coloured frames before they are encoded is reported too: the encoder's own noise (in the
real video as well) is left out of it.
"""

import os
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

from benchmarks import clips
from benchmarks import common
from colorize import metrics
from colorize.colouring import predict
from colorize.colouring import steadying
from colorize.data import photos
from colorize.networks import inference
from colorize.runs import bundle

flags.DEFINE_string("data_dir", None, "A folder of colour photos (two per clip); default: scikit-image's.")
flags.DEFINE_string("weights", bundle.BUNDLED, "An exported generator folder.")
flags.DEFINE_list("steadiness", ["0", str(steadying.STEADINESS)], "Steadiness values to compare (0: frame by frame).")
flags.DEFINE_float("gate", steadying.GATE_LIGHTNESS, "Steadier's gate in L* units (tuning).")
flags.DEFINE_integer("clips", 30, "Clips (two photos each); 0: the speed alone.")
flags.DEFINE_integer("shot_frames", 24, "Frames per shot.")
flags.DEFINE_integer("height", 128, "Clip frame height.")
flags.DEFINE_integer("width", 192, "Clip frame width.")
flags.DEFINE_integer("speed_frames", 96, "Frames of the 640x360 speed clip; 0 skips it.")
flags.DEFINE_string("frames_picture", None, "Writes the first clip's frames side by side (e.g. docs/video_frames.jpg).")
flags.DEFINE_bool("quick", False, "4 scikit-image photos, 8-frame shots, a 16-frame speed clip.")
FLAGS = flags.FLAGS
FPS = 24


def clip_photos(data_dir: str | None, count: int) -> list:
  """RGB photos for the clips, in name order (never picked by hand)."""
  if not data_dir:
    return [common.photo_like(256, 256, seed) for seed in range(count)]
  found = photos.find_photos(data_dir)[:count]
  return [photos.load_photo(path, "", 10**9).rgb for path, _ in found]


def psnr_per_frame(frames: np.ndarray, real: np.ndarray) -> float:
  """The mean over frames of each frame's PSNR against the real one (uint8 RGB)."""
  return float(np.mean(metrics.psnr(frames.astype(np.float32), real.astype(np.float32))))


def frames_picture(real: np.ndarray, coloured: dict, path: str, count: int = 6) -> None:
  """`count` frames spread over the clip (both shots), each as gray | each steadiness's colours | real."""
  from PIL import Image

  picks = np.linspace(0, len(real) - 1, count).round().astype(int)
  columns = [inference.gray_version(real[picks])] + [frames[picks] for frames in coloured.values()] + [real[picks]]
  Image.fromarray(inference.image_grid(columns, groups_per_row=2)).save(path, quality=90)


def add_clip(meter: steadying.FlickerMeter, frames: np.ndarray) -> None:
  meter.new_clip()
  for frame in frames:
    meter.add_rgb(frame)


def colour_frames(generator, variables, config, frames: np.ndarray, steadiness: float) -> np.ndarray:
  """The coloured frames as the video path makes them before encoding (`predict.FrameColourer`)."""
  shape = predict.batch_shape(config)
  colourer = predict.FrameColourer(generator, variables, **shape, steadiness=steadiness, gate=FLAGS.gate)
  return np.stack([rgb for start in range(0, len(frames), 8) for rgb in colourer(list(frames[start : start + 8]))])


def colour_clip(generator, variables, config, source: str, target: str, steadiness: float) -> float:
  """Colours `source` into `target` through the colorize mode's video path; seconds taken."""
  start = time.perf_counter()
  shape = predict.batch_shape(config)
  predict.colorize_video(generator, variables, source, target, **shape, steadiness=steadiness, gate=FLAGS.gate)
  return time.perf_counter() - start


def flicker_rows(generator, variables, config, folder: str, steadiness_values: list) -> list:
  pictures = clip_photos(FLAGS.data_dir, 2 * FLAGS.clips)
  real_flicker, real_frames = steadying.FlickerMeter(), 0
  flicker = {s: steadying.FlickerMeter() for s in steadiness_values}
  unencoded_flicker = {s: steadying.FlickerMeter() for s in steadiness_values}
  psnr = {s: [] for s in steadiness_values}  # Each clip's mean over its frames.
  for i in range(0, len(pictures) - 1, 2):
    first_clip_frames = {}
    source = os.path.join(folder, f"clip{i // 2}.mp4")
    frames = clips.panning_clip(pictures[i : i + 2], FLAGS.shot_frames, FLAGS.height, FLAGS.width)
    clips.write_video(source, frames, FPS, clips.tone(len(frames) / FPS))
    real = clips.read_frames(source)
    real_frames += len(real)
    add_clip(real_flicker, real)
    for steadiness in steadiness_values:
      target = os.path.join(folder, f"clip{i // 2}-s{steadiness}.mp4")
      colour_clip(generator, variables, config, source, target, steadiness)
      coloured = clips.read_frames(target)
      add_clip(flicker[steadiness], coloured)
      first_clip_frames[steadiness] = coloured
      add_clip(unencoded_flicker[steadiness], colour_frames(generator, variables, config, real, steadiness))
      psnr[steadiness].append(psnr_per_frame(coloured, real))
    if i == 0 and FLAGS.frames_picture:
      frames_picture(real, first_clip_frames, FLAGS.frames_picture)
  base_psnr = float(np.mean(psnr[steadiness_values[0]]))
  rows = []
  for steadiness in steadiness_values:
    mean_psnr = float(np.mean(psnr[steadiness]))
    rows.append(
      common.emit(
        {
          "benchmark": "video_flicker",
          "data": FLAGS.data_dir or "scikit-image photos",
          "clips": len(pictures) // 2,
          "frames": real_frames,
          "size": f"{FLAGS.width}x{FLAGS.height}",
          "steadiness": steadiness,
          "gate_lightness": FLAGS.gate,
          "flicker": round(flicker[steadiness].value, 3),
          "flicker_real": round(real_flicker.value, 3),
          "flicker_vs_real": round(flicker[steadiness].value / max(real_flicker.value, 1e-9), 2),
          "flicker_before_encoding": round(unencoded_flicker[steadiness].value, 3),
          "psnr": round(mean_psnr, 3),
          "psnr_vs_first": round(mean_psnr - base_psnr, 3),
          "weights": FLAGS.weights,
        }
      )
    )
  return rows


def speed_rows(generator, variables, config, folder: str, steadiness_values: list) -> list:
  """Frames/s of the whole video path for a 640x360 clip, after an untimed run that compiles."""
  source = os.path.join(folder, "speed.mp4")
  shot = FLAGS.speed_frames // 2
  clips.write_video(source, clips.panning_clip(clip_photos(None, 2), shot, 360, 640), FPS, clips.tone(2 * shot / FPS))
  colour_clip(generator, variables, config, source, os.path.join(folder, "warm.mp4"), steadiness_values[-1])
  rows = []
  for steadiness in steadiness_values:
    seconds = colour_clip(
      generator, variables, config, source, os.path.join(folder, f"speed-{steadiness}.mp4"), steadiness
    )
    rows.append(
      common.emit(
        {
          "benchmark": "video_speed",
          "size": "640x360",
          "frames": 2 * shot,
          "steadiness": steadiness,
          "seconds": round(seconds, 2),
          "frames_per_s": round(2 * shot / seconds, 2),
          "cpu": common.cpu_model(),
          "cores": os.cpu_count(),
          "weights": FLAGS.weights,
        }
      )
    )
  return rows


def main(argv):
  del argv
  if FLAGS.quick:
    FLAGS.clips, FLAGS.shot_frames, FLAGS.speed_frames = 2, 8, 16
  steadiness_values = [float(s) for s in FLAGS.steadiness]
  config = bundle.bundle_config(FLAGS.weights)
  generator, variables, _ = inference.load_generator(config, FLAGS.weights)
  with tempfile.TemporaryDirectory() as folder:
    rows = flicker_rows(generator, variables, config, folder, steadiness_values) if FLAGS.clips else []
    if FLAGS.speed_frames:
      rows += speed_rows(generator, variables, config, folder, steadiness_values)
  columns = ["benchmark", "steadiness", "flicker", "flicker_real", "flicker_vs_real", "flicker_before_encoding"]
  columns += ["psnr", "psnr_vs_first"]
  common.print_table(rows, columns + ["frames_per_s"])


if __name__ == "__main__":
  app.run(main)
