"""Videos: flicker measured, colour steadied across frames, files round-tripped with their audio and timing."""

import os

import av
import numpy as np
import pytest
import skimage.data

from benchmarks import clips
from colorize import color
from colorize import metrics
from colorize.colouring import full_size
from colorize.colouring import predict
from colorize.colouring import steadying
from colorize.colouring import video
from colorize.networks import inference
from colorize.runs import bundle
from tests.conftest import run_main
from tests.test_main import HINT

FPS = 12


def flicker_of(lightness_frames, ab_frames) -> float:
  meter = steadying.FlickerMeter()
  for lightness, ab in zip(lightness_frames, ab_frames, strict=True):
    meter.add(lightness, ab)
  return meter.value


def test_flicker_is_the_colour_change_over_pixels_whose_lightness_stayed():
  lightness = np.full((3, 4, 4), 50.0)
  ab = np.zeros((3, 4, 4, 2))
  ab[1] = [3.0, 4.0]  # Distance 5 from frames 0 and 2.
  assert flicker_of(lightness, ab) == pytest.approx(5.0)
  lightness[1, :2] += 2.0  # Half the pixels move: their colour change does not count.
  ab[1, :2] = [100.0, 100.0]
  assert flicker_of(lightness, ab) == pytest.approx(5.0)
  meter = steadying.FlickerMeter()
  meter.add(lightness[0], ab[0])
  meter.new_clip()
  meter.add(lightness[1], ab[1])  # Another clip: not compared with the last frame.
  assert meter.count == 0


def test_a_pan_is_one_scene_and_a_cut_is_another():
  frames = clips.panning_clip([skimage.data.coffee(), skimage.data.astronaut()], 6, 48, 64)
  planes = [full_size.lightness(frame) for frame in frames]
  cuts = [i for i in range(1, len(planes)) if steadying.is_cut(planes[i - 1], planes[i])]
  assert cuts == [6]


def test_the_steadier_keeps_colour_where_lightness_stays_and_follows_motion_and_cuts():
  rng = np.random.default_rng(0)
  lightness = np.full((8, 8), 50.0)
  raw = [np.full((8, 8, 2), 20.0) + rng.normal(0.0, 3.0, (8, 8, 2)) for _ in range(6)]
  steadier = steadying.Steadier(0.8, gate=6.0)
  steadied = [steadier(lightness, ab) for ab in raw]
  assert flicker_of([lightness] * 6, steadied) < 0.5 * flicker_of([lightness] * 6, raw)
  np.testing.assert_array_equal(steadied[0], raw[0])  # Nothing to carry into the first frame.
  moved = lightness.copy()
  moved[:4] += 6.0  # These pixels' lightness changed by the gate: the new colour alone.
  new = rng.normal(0.0, 10.0, (8, 8, 2))
  out = steadier(moved, new)
  np.testing.assert_array_equal(out[:4], new[:4])
  assert np.abs(out[4:] - new[4:]).mean() > 1.0  # The still half keeps part of the old colour.
  other_scene = np.linspace(0.0, 100.0, 64).reshape(8, 8)
  np.testing.assert_array_equal(steadier(other_scene, new), new)  # A cut starts afresh.
  plain = steadying.Steadier(0.0, gate=6.0)
  assert all(np.array_equal(plain(lightness, ab), ab) for ab in raw)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  """Two 12-frame shots panning across real photos, with a cut, 96x64 at 12 frames/s, and a tone."""
  path = str(tmp_path_factory.mktemp("clip") / "clip.mp4")
  frames = clips.panning_clip([skimage.data.coffee(), skimage.data.astronaut()], 12, 64, 96)
  clips.write_video(path, frames, FPS, clips.tone(len(frames) / FPS, 330.0))
  return path


@pytest.fixture(scope="module")
def bundled_generator():
  config = bundle.bundle_config(bundle.BUNDLED)
  generator, variables, _ = inference.load_generator(config, bundle.BUNDLED)
  return config, generator, variables


def colorize_clip(bundled_generator, source, target, steadiness=steadying.STEADINESS):
  config, generator, variables = bundled_generator
  shape = predict.batch_shape(config)
  return predict.colorize_video(generator, variables, source, target, **shape, steadiness=steadiness)


def stream_facts(path: str) -> dict:
  with av.open(path) as container:
    stream = container.streams.video[0]
    facts = {
      "frames": stream.frames,
      "rate": stream.average_rate,
      "size": (stream.width, stream.height),
      "duration": float(stream.duration * stream.time_base),
      "audio_codec": container.streams.audio[0].codec_context.name,
    }
  with av.open(path) as container:
    facts["audio"] = [bytes(packet) for packet in container.demux(audio=0) if packet.size]
  with av.open(path) as container:
    facts["times"] = [frame.pts for frame in container.decode(video=0)]
  return facts


def test_a_video_keeps_its_frames_timing_size_audio_and_lightness(bundled_generator, clip, tmp_path):
  target = str(tmp_path / "out" / "clip.mp4")
  assert colorize_clip(bundled_generator, clip, target) == 24
  original, coloured = stream_facts(clip), stream_facts(target)
  assert coloured["frames"] == original["frames"] == 24
  for key in ("rate", "size", "duration", "times", "audio_codec"):
    assert coloured[key] == original[key], key
  assert coloured["audio"] == original["audio"] and len(original["audio"]) > 10  # Copied packet by packet.
  real, out = clips.read_frames(clip), clips.read_frames(target)
  lightness_gap = np.abs(color.lightness(out) - color.lightness(real))
  assert lightness_gap.mean() < 1.5  # Each frame's own L*, through the encoder once more.
  spread = out.max(axis=-1).astype(int) - out.min(axis=-1)
  assert spread.mean() > 5  # Coloured, not gray.
  assert os.listdir(tmp_path / "out") == ["clip.mp4"]  # No temporary file left beside it.


def test_a_video_that_fails_midway_leaves_no_file_under_its_name(bundled_generator, clip, tmp_path, monkeypatch):
  calls = []

  def colour_then_fail(self, frames):
    calls.append(len(frames))
    if len(calls) == 2:
      raise OSError(28, "No space left on device")
    return [frame for frame in frames]

  monkeypatch.setattr(predict.FrameColourer, "__call__", colour_then_fail)
  target = str(tmp_path / "clip.mp4")
  with pytest.raises(video.BadVideo, match="No space left on device"):
    colorize_clip(bundled_generator, clip, target)
  assert calls == [8, 8] and os.listdir(tmp_path) == []


def test_a_file_that_is_not_a_video_is_refused(bundled_generator, tmp_path):
  fake = tmp_path / "fake.mp4"
  fake.write_bytes(b"not a video at all" * 10)
  with pytest.raises(video.BadVideo, match="not a video PyAV can read") as raised:
    colorize_clip(bundled_generator, str(fake), str(tmp_path / "out.mp4"))
  assert "Errno" not in str(raised.value) and "Invalid data" in str(raised.value)  # Words, not an errno number.
  assert not os.path.exists(tmp_path / "out.mp4")


@pytest.mark.slow  # Five runs of main.py.
def test_colorize_mode_takes_a_folder_of_photos_and_videos(clip, tmp_path):
  folder = tmp_path / "in"
  folder.mkdir()
  os.symlink(clip, folder / "clip.mp4")
  (folder / "broken.mov").write_bytes(b"\0" * 100)
  from PIL import Image

  Image.fromarray(skimage.data.chelsea()[::4, ::4]).save(folder / "cat.jpg")
  done = run_main("--mode=colorize", f"--input={folder}", f"--output={tmp_path / 'out'}", "--steadiness=0.5")
  assert done.returncode == 1  # The broken video failed; the others were written.
  assert sorted(os.listdir(tmp_path / "out")) == ["cat.png", "clip.mp4"]
  assert "FAILED" in done.stderr and "broken.mov: not a video PyAV can read" in done.stderr
  assert "[24/24]" in done.stderr and "frames/s" in done.stderr
  again = run_main("--mode=colorize", f"--input={folder / 'clip.mp4'}", f"--output={tmp_path / 'out'}")
  assert again.returncode == 0 and "clip.mp4 exists (--overwrite replaces it)" in again.stderr
  for flags, message in (
    (["--steadiness=1"], "--steadiness=1.0 is outside [0, 1): 0 colours each frame on its own."),
    (["--colorize_batch=0"], "--colorize_batch=0 must be at least 1 (photos or video frames per generator call)."),
    (
      [f"--input={folder / 'clip.mp4'}", f"--hints={folder}"],
      f"--hints are for photos; --input={folder / 'clip.mp4'} holds videos only (coloured automatically).",
    ),
  ):
    wrong = run_main("--mode=colorize", f"--input={folder}", f"--output={tmp_path / 'wrong'}", *flags)
    assert wrong.returncode == 2 and wrong.stderr.splitlines() == [f"main.py: error: {message}", HINT]


def transcode_unchanged(source: str, target: str) -> list:
  """`video.transcode` with a colouring that changes nothing; the frames it was given."""
  given = []

  def keep(frames):
    given.extend(frames)
    return frames

  assert video.transcode(source, target, keep, 4, predict.ProgressLine(0, unit="frames")) > 0
  return given


def test_a_phone_video_is_coloured_upright_and_keeps_its_display_rotation(tmp_path):
  upright = clips.panning_shot(skimage.data.astronaut(), 6, 64, 96)
  stored = np.ascontiguousarray(np.rot90(upright, -1, axes=(1, 2)))  # Lying on its side, as a phone stores it.
  source, target = str(tmp_path / "phone.mp4"), str(tmp_path / "out.mp4")
  clips.write_video(source, stored, FPS, clips.tone(0.5), rotation=90)  # Audio is muxed before the first frame.
  given = np.stack(transcode_unchanged(source, target))
  assert given.shape == (6, 64, 96, 3)
  assert np.abs(given.astype(int) - upright).mean() < 6.0  # Turned the right way (the other way: about 50).
  with av.open(target) as container:
    first = next(container.decode(video=0))
    assert first.rotation == 90 and (first.width, first.height) == (64, 96)
  gap = np.abs(clips.read_frames(target).astype(int) - clips.read_frames(source))
  assert gap.mean() < 3.0  # The same pixels back after one more encoding, in their stored orientation.


def test_an_hd_video_keeps_its_yuv_matrix_and_tags(tmp_path):
  source, target = str(tmp_path / "hd.mp4"), str(tmp_path / "out.mp4")
  clips.write_video(source, clips.panning_shot(skimage.data.coffee(), 4, 64, 96), FPS, bt709=True)
  transcode_unchanged(source, target)
  with av.open(source) as before, av.open(target) as after:
    tags = [[getattr(c.streams.video[0].codec_context, t) for t in video.COLOUR_TAGS] for c in (before, after)]
  assert tags[1] == tags[0] and tags[0][0] == 1  # BT.709's matrix (1), and its range, primaries and transfer.
  gap = np.abs(clips.read_frames(target).astype(int) - clips.read_frames(source))
  assert gap.mean() < 3.0


def test_steadied_colour_flickers_less_than_frame_by_frame_on_a_clip(bundled_generator, clip):
  config, generator, variables = bundled_generator
  real = clips.read_frames(clip)
  flicker, psnr = {}, {}
  for steadiness in (0.0, steadying.STEADINESS):
    colourer = predict.FrameColourer(generator, variables, **predict.batch_shape(config), steadiness=steadiness)
    coloured = np.stack([rgb for start in range(0, len(real), 8) for rgb in colourer(list(real[start : start + 8]))])
    meter = steadying.FlickerMeter()
    for frame in coloured:
      meter.add_rgb(frame)
    flicker[steadiness] = meter.value
    psnr[steadiness] = float(np.mean(metrics.psnr(coloured.astype(np.float32), real.astype(np.float32))))
  assert flicker[steadying.STEADINESS] < 0.8 * flicker[0.0]
  assert psnr[steadying.STEADINESS] > psnr[0.0] - 0.1


def test_a_full_range_webm_keeps_its_lightness_and_outputs_are_readable_like_others(tmp_path):
  source, target = str(tmp_path / "full.webm"), str(tmp_path / "out.webm")  # VP9, YUV in 0..255.
  frames = clips.panning_shot(skimage.data.astronaut(), 4, 64, 96)
  clips.write_video(source, frames, FPS, full_range=True)
  given = np.stack(transcode_unchanged(source, target))
  assert np.abs(color.lightness(given) - color.lightness(frames)).mean() < 1.5  # Read as full range, not stretched.
  with av.open(target) as container:
    assert container.streams.video[0].codec_context.color_range == 2
  gap = np.abs(color.lightness(clips.read_frames(target)) - color.lightness(frames))
  assert gap.mean() < 2.0
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask  # Not the 0600 of a temporary file.
