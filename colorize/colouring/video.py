"""Video files for the colorize mode: frames out, coloured frames in, timing and audio kept.

Frames are decoded with PyAV (FFmpeg), handed in batches to a colouring function (the colorize
mode's `predict.FrameColourer`) and encoded again: the same container, frame count, frame times,
size, display rotation, colour tags and audio (its packets copied untouched). The new file is
written under a temporary name and renamed when complete, so a run that is stopped leaves no
half-written video under the final name.
"""

import os

import av
import numpy as np

from colorize import files

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
_CRF = "18"  # x264's and VP9's constant quality: visually lossless for 8-bit video.


class BadVideo(Exception):
  """A video that cannot be colorized; the message says why, in a few words."""


def is_video(path: str) -> bool:
  return path.lower().endswith(VIDEO_EXTENSIONS)


def _encoder(target: str, width: int, height: int) -> tuple:
  """(codec, pixel format, options) for the output container: VP9 for WebM, else H.264."""
  if target.lower().endswith(".webm"):
    codec, options = "libvpx-vp9", {"crf": _CRF, "b:v": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
  else:
    codec, options = "libx264", {"crf": _CRF}
  # 4:2:0 (what players expect) needs even sides; odd ones keep full-resolution colour (4:4:4,
  # which some browsers do not play for H.264).
  pixel_format = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
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


COLOUR_TAGS = ("colorspace", "color_range", "color_primaries", "color_trc")


def _first_frame(source: str):
  """The first decoded frame: its rotation and colour tags are needed before the output's header."""
  with av.open(source) as container:
    if not container.streams.video:
      raise BadVideo("no video stream")
    for frame in container.decode(video=0):
      return frame
  raise BadVideo("no frames in its video stream")


def _transcode(source: str, partial: str, colour, batch_size: int, progress) -> int:
  """Writes `source` with its frames replaced by colour(frames) to `partial`; the frame count."""
  first = _first_frame(source)
  turns = quarter_turns(first)
  with av.open(source) as container:
    video = container.streams.video[0]
    video.thread_type = "AUTO"  # Frame- and slice-threaded decoding.
    audio = list(container.streams.audio)
    width, height = video.codec_context.width, video.codec_context.height
    with av.open(partial, "w") as output:
      codec, pixel_format, options = _encoder(partial, width, height)
      out_video = output.add_stream(codec, rate=video.average_rate or 25, options=options)
      out_video.width, out_video.height, out_video.pix_fmt = width, height, pixel_format
      out_video.time_base = out_video.codec_context.time_base = video.time_base  # The input's frame times.
      for tag in COLOUR_TAGS:  # The input's YUV matrix and range, so players show the colours we computed.
        setattr(out_video.codec_context, tag, getattr(first, tag))
      if turns:
        out_video.set_display_rotation(90 * turns)  # Before anything is muxed: it goes in the header.
      out_audio = {stream.index: output.add_stream_from_template(stream) for stream in audio}
      frame_step = round(1 / (video.average_rate * video.time_base)) if video.average_rate else 1
      pending, written, last_pts = [], 0, None

      def encode(frames):
        """Colours the frames upright and stores them as the input did, with its colour tags and times."""
        nonlocal written, last_pts
        upright = [np.rot90(f.to_ndarray(format="rgb24"), turns) for f in frames]  # PyAV reads each frame's range.
        for original, rgb in zip(frames, colour(upright), strict=True):
          stored = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(rgb, -turns)), format="rgb24")
          frame = stored.reformat(
            format=pixel_format, dst_colorspace=first.colorspace, dst_color_range=first.color_range
          )
          frame.color_primaries, frame.color_trc = first.color_primaries, first.color_trc
          # A frame without a time (some AVI files) follows the previous one by a frame's duration.
          pts = original.pts if original.pts is not None else (last_pts + frame_step if last_pts is not None else 0)
          frame.pts, frame.time_base, last_pts = pts, video.time_base, pts
          output.mux(out_video.encode(frame))
          written += 1
          progress.advance(written=True)

      for packet in container.demux(video, *audio):
        if packet.stream.type == "audio":
          if packet.size:  # Not the demuxer's final empty packet.
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


def reason(error: Exception) -> str:
  """An FFmpeg or OS error in words: its message without the errno number or the path (the line names the file)."""
  return str(getattr(error, "strerror", None) or error)


def frame_count(source: str) -> int:
  """The video's frame count from its header (0: unknown); BadVideo when it is not a video."""
  try:
    with av.open(source) as container:
      return expected_frames(container.streams.video[0]) if container.streams.video else 0
  except (av.FFmpegError, OSError) as error:
    raise BadVideo(f"not a video PyAV can read ({reason(error)})") from None


def transcode(source: str, target: str, colour, batch_size: int, progress) -> int:
  """Writes `source` to `target` (same container) with its frames replaced by colour(frames), in
  batches of `batch_size`; `progress.advance` per frame. The frame count; BadVideo when it cannot.

  Until complete the video is a hidden file of a unique name beside `target` (the folder's own
  files untouched, and not taken as a video by a later run), removed when anything goes wrong."""
  partial = ""
  try:
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    partial = files.partial_beside(target, os.path.splitext(target)[1])  # The extension names the container.
    frames = _transcode(source, partial, colour, batch_size, progress)
    os.replace(partial, target)
  except (av.FFmpegError, OSError, ValueError) as error:
    raise BadVideo(f"cannot transcode it ({reason(error)})") from None
  finally:
    if partial:
      files.remove_if_there(partial)
  return frames
