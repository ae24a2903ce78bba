"""Test clips made from still photos: shots that pan across a photo while a patch of another photo moves
over it, joined by cuts, with a tone for audio.

Used by the video tests and `benchmarks/video.py`, so nothing is downloaded: the "real colour
video" is the photos themselves, moving.
"""

import av
import numpy as np
from PIL import Image

AUDIO_RATE = 16000


def panning_shot(photo: np.ndarray, frames: int, height: int, width: int, vertical: bool = False) -> np.ndarray:
  """`frames` crops of height x width sliding evenly across `photo` (resized so the crop fits with room
  to move), left to right or top to bottom: a camera pan. uint8 [frames, height, width, 3]."""
  travel = max(frames - 1, 1)  # One pixel per frame at least.
  scale = max(
    (height + (travel if vertical else 0)) / photo.shape[0], (width + (0 if vertical else travel)) / photo.shape[1]
  )
  resized = np.asarray(
    Image.fromarray(photo).resize((round(photo.shape[1] * scale), round(photo.shape[0] * scale)), Image.BICUBIC)
  )
  room = (resized.shape[0] - height) if vertical else (resized.shape[1] - width)
  offsets = np.round(np.linspace(0, room, frames)).astype(int)
  crops = [resized[o : o + height, :width] if vertical else resized[:height, o : o + width] for o in offsets]
  return np.stack(crops)


def with_moving_patch(shot: np.ndarray, photo: np.ndarray) -> np.ndarray:
  """`shot` with a square from the middle of `photo` (a third of the frame's height) crossing it
  diagonally, 2-3 pixels a frame at 128 px: something that moves against the background."""
  frames, height, width = shot.shape[:3]
  side = max(4, height // 3)
  top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
  patch = photo[top : top + side, left : left + side]
  rows = np.round(np.linspace(0, height - side, frames)).astype(int)
  columns = np.round(np.linspace(width - side, 0, frames)).astype(int)
  out = shot.copy()
  for frame, row, column in zip(out, rows, columns, strict=True):
    frame[row : row + side, column : column + side] = patch
  return out


def panning_clip(photos: list, frames_per_shot: int, height: int, width: int) -> np.ndarray:
  """One shot per photo, panning across and down by turns, each with the next photo's patch moving
  over it, joined by hard cuts."""
  shots = [panning_shot(photo, frames_per_shot, height, width, vertical=i % 2 == 1) for i, photo in enumerate(photos)]
  return np.concatenate([with_moving_patch(shot, photos[(i + 1) % len(photos)]) for i, shot in enumerate(shots)])


def tone(seconds: float, hertz: float = 440.0) -> np.ndarray:
  """A mono sine, float32 [samples]."""
  t = np.arange(int(AUDIO_RATE * seconds)) / AUDIO_RATE
  return (0.3 * np.sin(2 * np.pi * hertz * t)).astype(np.float32)


def write_video(
  path: str,
  frames: np.ndarray,
  fps: int,
  audio: np.ndarray | None = None,
  crf: int = 18,
  rotation: int = 0,
  bt709: bool = False,
  full_range: bool = False,
) -> None:
  """uint8 RGB frames as H.264 (VP9 for .webm; and `audio` as AAC) in the container of `path`'s extension; `rotation`:
  the display matrix's counter-clockwise degrees (a phone's portrait video); `bt709`: HD's YUV
  matrix, tagged (else swscale's default, BT.601, untagged); `full_range`: YUV in 0..255, tagged
  (else 16..235)."""
  with av.open(path, "w") as container:
    codec = "libvpx-vp9" if path.endswith(".webm") else "libx264"
    video = container.add_stream(codec, rate=fps, options={"crf": str(crf), "b:v": "0"})
    video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    if rotation:
      video.set_display_rotation(rotation)
    if bt709:
      video.codec_context.colorspace = video.codec_context.color_primaries = video.codec_context.color_trc = 1
    sound = None
    if audio is not None:
      sound = container.add_stream("aac", rate=AUDIO_RATE)
      sound.layout = "mono"
    if full_range:
      video.codec_context.color_range = 2
    for rgb in frames:
      frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
      if bt709 or full_range:
        frame = frame.reformat(
          format="yuv420p", dst_colorspace="ITU709" if bt709 else None, dst_color_range="JPEG" if full_range else None
        )
      container.mux(video.encode(frame))
    if sound is not None:
      for start in range(0, len(audio), 1024):
        frame = av.AudioFrame.from_ndarray(audio[None, start : start + 1024], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        container.mux(sound.encode(frame))
      container.mux(sound.encode(None))
    container.mux(video.encode(None))


def read_frames(path: str) -> np.ndarray:
  """Every frame of the first video stream, uint8 RGB [frames, height, width, 3]."""
  with av.open(path) as container:
    return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
