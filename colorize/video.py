"""Video files for the colorize mode: frames out, coloured frames in, timing and audio kept.

Frames are decoded with PyAV (FFmpeg), handed in batches to a colouring function (the colorize
mode's `predict.FrameColourer`) and encoded again: the same container, frame count, frame times,
size and audio (its packets copied untouched). The new file is written under a temporary name and
renamed when complete, so a run that is stopped leaves no half-written video under the final name.
"""

import os

import av
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
_CRF = "18"  # x264's and VP9's constant quality: visually lossless for 8-bit video.


class BadVideo(Exception):
  """A video that cannot be colorized; the message says why, in a few words."""


def is_video(path: str) -> bool:
  return path.lower().endswith(VIDEO_EXTENSIONS)


def partial_path(target: str) -> str:
  """Where `target` is written until it is complete (same extension: the container is guessed from it)."""
  return f"{target}.partial{os.path.splitext(target)[1]}"


def _encoder(target: str, width: int, height: int) -> tuple:
  """(codec, pixel format, options) for the output container: VP9 for WebM, else H.264."""
  codec = "libvpx-vp9" if target.lower().endswith(".webm") else "libx264"
  if codec not in av.codecs_available:
    codec = "mpeg4"
  # 4:2:0 (what players expect) needs even sides; odd ones keep full-resolution colour.
  pixel_format = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
  options = {"crf": _CRF} if codec != "mpeg4" else {"qscale": "2"}
  return codec, pixel_format, options


def expected_frames(stream) -> int:
  """The stream's frame count from its header, or from its duration and rate (0: unknown)."""
  if stream.frames:
    return stream.frames
  if stream.duration and stream.average_rate:
    return round(float(stream.duration * stream.time_base * stream.average_rate))
  return 0


def quarter_turns(frame) -> int:
  """Counter-clockwise quarter turns that show `frame` upright (its display matrix: phone videos)."""
  return round((frame.rotation or 0) / 90) % 4


def _transcode(source: str, partial: str, colour, batch_size: int, progress) -> int:
  """Writes `source` with its frames replaced by colour(frames) to `partial`; the frame count."""
  with av.open(source) as container:
    if not container.streams.video:
      raise BadVideo("no video stream")
    video = container.streams.video[0]
    video.thread_type = "AUTO"  # Frame- and slice-threaded decoding.
    audio = list(container.streams.audio)
    width, height = video.codec_context.width, video.codec_context.height
    with av.open(partial, "w") as output:
      codec, pixel_format, options = _encoder(partial, width, height)
      out_video = output.add_stream(codec, rate=video.average_rate or 25, options=options)
      out_video.width, out_video.height, out_video.pix_fmt = width, height, pixel_format
      out_video.time_base = out_video.codec_context.time_base = video.time_base  # The input's frame times.
      out_audio = {stream.index: output.add_stream_from_template(stream) for stream in audio}
      pending, written, turns = [], 0, 0

      def encode(frames):
        """Colours the frames upright, and stores them as the input did, with its display rotation."""
        nonlocal written, turns
        if not written:
          turns = quarter_turns(frames[0])
          if turns:
            out_video.set_display_rotation(90 * turns)
        upright = [np.rot90(f.to_ndarray(format="rgb24"), turns) for f in frames]
        for original, rgb in zip(frames, colour(upright), strict=True):
          frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(rgb, -turns)), format="rgb24")
          frame.pts, frame.time_base = original.pts, original.time_base
          output.mux(out_video.encode(frame))
          written += 1
          progress.advance(written=True)

      for packet in container.demux(video, *audio):
        if packet.stream.type == "audio":
          if packet.dts is not None:  # The demuxer's final empty packet has none.
            packet.stream = out_audio[packet.stream.index]
            output.mux(packet)
          continue
        for frame in packet.decode():
          if (frame.width, frame.height) != (width, height):  # A size change mid-stream: the first size kept.
            frame = frame.reformat(width=width, height=height)
          pending.append(frame)
          if len(pending) == batch_size:
            encode(pending)
            pending = []
      if pending:
        encode(pending)
      output.mux(out_video.encode(None))
  return written


def frame_count(source: str) -> int:
  """The video's frame count from its header (0: unknown); BadVideo when it is not a video."""
  try:
    with av.open(source) as container:
      return expected_frames(container.streams.video[0]) if container.streams.video else 0
  except (av.FFmpegError, OSError) as error:
    raise BadVideo(f"not a video PyAV can read ({error})") from None


def transcode(source: str, target: str, colour, batch_size: int, progress) -> int:
  """Writes `source` to `target` (same container) with its frames replaced by colour(frames), in
  batches of `batch_size`; `progress.advance` per frame. The frame count; BadVideo when it cannot.
  Until complete the file is `partial_path(target)`, removed when anything goes wrong."""
  os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
  partial = partial_path(target)
  try:
    frames = _transcode(source, partial, colour, batch_size, progress)
    os.replace(partial, target)
  except (av.FFmpegError, OSError) as error:
    raise BadVideo(f"cannot transcode it ({error})") from None
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return frames
