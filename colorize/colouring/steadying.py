"""Video colour over time: flicker measured, scene cuts found, a,b carried across frames where the scene stays.

A generator colours each frame on its own, so the colour of a wall can change from frame to
frame while its lightness does not: flicker. `FlickerMeter` measures it as the mean a,b distance
between consecutive frames over the pixels whose L* changed by less than 2 (static ones), the
same for a real colour video. `Steadier` lowers it: where a pixel's lightness stays, it keeps
most of the previous frame's a,b (an exponential moving average); where the lightness moves
(motion) it takes the new frame's colour, and at a scene cut it starts afresh.
"""

import numpy as np

from colorize import color

STATIC_LIGHTNESS = 2.0  # L* units: pixels that changed less between two frames count as static.
STEADINESS = 0.9  # The colorize mode's default: the previous colour's weight where L* stayed (docs/video.md).
GATE_LIGHTNESS = 12.0  # L* change (at the network's size) from which a pixel takes the new frame's colour alone.
CUT_HISTOGRAM_DISTANCE = 0.3  # Share of pixels whose L* bin must change for a scene cut.
_HISTOGRAM_BINS = 16


def lab_planes(rgb: np.ndarray) -> tuple:
  """uint8 RGB [H, W, 3] -> (L* [H, W], a*,b* [H, W, 2]), float32."""
  lab = color.rgb_to_lab(rgb.astype(np.float32) / 255.0, np)
  return lab[..., 0], lab[..., 1:]


class FlickerMeter:
  """The mean a,b distance between consecutive frames over static pixels, pooled over clips."""

  def __init__(self):
    self.total, self.count, self.previous = 0.0, 0, None

  def new_clip(self) -> None:
    """The next frame starts another clip: not compared with the last one."""
    self.previous = None

  def add(self, lightness: np.ndarray, ab: np.ndarray) -> None:
    if self.previous is not None:
      previous_lightness, previous_ab = self.previous
      static = np.abs(lightness - previous_lightness) < STATIC_LIGHTNESS
      distance = np.linalg.norm(ab - previous_ab, axis=-1)
      self.total += float(distance[static].sum())
      self.count += int(static.sum())
    self.previous = (lightness, ab)

  def add_rgb(self, rgb: np.ndarray) -> None:
    self.add(*lab_planes(rgb))

  @property
  def value(self) -> float:
    return self.total / max(self.count, 1)


def histogram_distance(lightness: np.ndarray, other: np.ndarray) -> float:
  """Half the L1 distance of the two frames' L* histograms: 0 for the same tones, 1 for none shared.
  A pan or a moving object keeps the histogram; a cut to another scene changes it."""
  bins = np.linspace(0.0, 100.0, _HISTOGRAM_BINS + 1)
  first, second = (np.histogram(plane, bins)[0] / plane.size for plane in (lightness, other))
  return 0.5 * float(np.abs(first - second).sum())


def is_cut(previous_lightness: np.ndarray, lightness: np.ndarray) -> bool:
  return histogram_distance(previous_lightness, lightness) > CUT_HISTOGRAM_DISTANCE


def check_steadiness(steadiness: float) -> None:
  if not 0.0 <= steadiness < 1.0:
    raise ValueError(f"steadiness={steadiness} is outside [0, 1): 0 colours each frame on its own.")


class Steadier:
  """a,b frame after frame, each pixel's colour an average over the frames where its L* stayed.

  `steadiness` in [0, 1) is the previous colour's weight for a pixel whose L* did not change; it
  falls linearly to 0 for a change of `gate` L* units or more. 0 colours every frame on its own.
  """

  def __init__(self, steadiness: float, gate: float):
    check_steadiness(steadiness)
    self.steadiness, self.gate, self.previous = steadiness, gate, None

  def __call__(self, lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """The steadied a,b [h, w, 2] of the next frame from its L* [h, w] and predicted a,b."""
    steadied = ab
    if self.steadiness and self.previous is not None:
      previous_lightness, previous_ab = self.previous
      if previous_lightness.shape == lightness.shape and not is_cut(previous_lightness, lightness):
        change = np.abs(lightness - previous_lightness)
        weight = self.steadiness * np.clip(1.0 - change / self.gate, 0.0, 1.0)
        steadied = ab + weight[..., None] * (previous_ab - ab)
    self.previous = (lightness, steadied)
    return steadied
