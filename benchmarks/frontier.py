"""The vivid-and-right frontier: PSNR gain over gray against the colourfulness gap, one point per row
of the quality benchmark, each model's knob and saturation line drawn through its rows.

    python -m benchmarks.frontier --rows=runs/quality/rows.jsonl --out=docs/frontier.png

Rows named ROW@V<v> (vividness) and ROW@sat<s> (a,b scaled by s) are joined to ROW's own point in
order: a knob that stays above its model's saturation line buys colour more cheaply than a slider.
Needs only Pillow (no plotting library).
"""

import collections
import json
import re

from absl import app
from absl import flags
from PIL import Image
from PIL import ImageDraw

flags.DEFINE_list("rows", ["runs/quality/rows.jsonl"], "The quality benchmark's rows.jsonl files.")
flags.DEFINE_string("out", "docs/frontier.png", "The picture.")
flags.DEFINE_string("title", "", "A line above the plot (the photo set).")
flags.DEFINE_list("labels", [], "BASE=TEXT: the label of a row's curve (default: the row and the knob's name).")
flags.DEFINE_string("data", "", "The photo set to draw (part of the rows' `data`), when the files hold several.")
flags.DEFINE_list("only", [], "Rows (their names before '@') to draw; default all.")
FLAGS = flags.FLAGS

SIZE, MARGIN = (900, 620), (80, 40, 30, 70)  # Picture; margins left, top, right, bottom.
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]
CURVE = re.compile(r"^(?P<base>.+?)@(?P<kind>V|sat)(?P<value>[0-9.]+)$")


def read_rows(paths: list, data: str = "") -> list:
  """The rows of one photo set (one `data` and `eval_size`), the newest line of each name."""
  rows = {}
  for path in paths:
    with open(path) as f:
      for line in f:
        row = json.loads(line)
        row["row"] = row["row"].replace("@0hints", "")  # A hints model's automatic rows: the plot's subject.
        if "hints" in row and row["hints"]:
          continue  # Rows with colour points are another question (docs/hints.md).
        if data in row["data"]:
          rows[row["data"], row["eval_size"], row["row"]] = row  # The newest line of a name wins.
  sets = sorted({key[:2] for key in rows})
  if len(sets) > 1:
    raise SystemExit(f"the rows hold {len(sets)} photo sets ({', '.join(str(s) for s in sets)}): pick one with --data.")
  return list(rows.values())


def curves(rows: list) -> dict:
  """{(base name, 'V' or 'sat'): [rows in order of the knob]}, each starting at its base row when there is one."""
  by_name = {row["row"]: row for row in rows}
  found = collections.defaultdict(list)
  for row in rows:
    if match := CURVE.match(row["row"]):
      found[match["base"], match["kind"]].append((float(match["value"]), row))
  out = {}
  for (base, kind), points in found.items():
    start = [(0.0 if kind == "V" else 1.0, by_name[base])] if base in by_name else []
    out[base, kind] = [row for _, row in sorted(start + points, key=lambda p: p[0])]
  return out


def plot(rows: list, title: str, labels: dict | None = None) -> Image.Image:
  image = Image.new("RGB", SIZE, "white")
  draw = ImageDraw.Draw(image)
  left, top, right, bottom = MARGIN[0], MARGIN[1], SIZE[0] - MARGIN[2], SIZE[1] - MARGIN[3]
  xs, ys = [r["delta_colorfulness"] for r in rows], [r["psnr_vs_gray"] for r in rows]
  x_range = (0.0, max(xs) * 1.05)
  y_range = (min(min(ys), 0.0) - 0.2, max(ys) + 0.2)

  def at(row) -> tuple:
    x = left + (row["delta_colorfulness"] - x_range[0]) / (x_range[1] - x_range[0]) * (right - left)
    y = bottom - (row["psnr_vs_gray"] - y_range[0]) / (y_range[1] - y_range[0]) * (bottom - top)
    return x, y

  draw.rectangle((left, top, right, bottom), outline="black")
  for tick in range(0, int(x_range[1]) + 1, 5):
    x = at({"delta_colorfulness": tick, "psnr_vs_gray": y_range[0]})[0]
    draw.line((x, bottom, x, bottom + 5), fill="black")
    draw.text((x - 6, bottom + 8), str(tick), fill="black")
  step = 0.5 if y_range[1] - y_range[0] > 2 else 0.25
  tick = step * round(y_range[0] / step)
  while tick <= y_range[1]:
    y = at({"delta_colorfulness": 0, "psnr_vs_gray": tick})[1]
    if top <= y <= bottom:
      draw.line((left - 5, y, left, y), fill="black")
      draw.text((left - 45, y - 6), f"{tick:+.2f}", fill="black")
      if abs(tick) < 1e-9:
        draw.line((left, y, right, y), fill="#bbbbbb")
    tick += step
  draw.text((left, bottom + 30), "colourfulness gap to the real photos (lower: as colourful as they are)", fill="black")
  draw.text((8, top - 30), "PSNR gain over the gray input, dB (higher: more right)", fill="black")
  if title:
    draw.text((left + 300, 8), title, fill="black")
  on_curve = set()
  for i, ((base, kind), members) in enumerate(sorted(curves(rows).items())):
    colour = COLOURS[i % len(COLOURS)]
    points = [at(r) for r in members]
    draw.line(points, fill=colour, width=2 if kind == "V" else 1)
    for (x, y), row in zip(points, members, strict=True):
      draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
      on_curve.add(row["row"])
    x, y = points[-1]
    label = (labels or {}).get(base, f"{base} ({'vividness' if kind == 'V' else 'saturation x1-x2'})")
    draw.text((x + 5, y - 12), label, fill=colour)
  for row in rows:
    if row["row"] not in on_curve:
      x, y = at(row)
      draw.rectangle((x - 3, y - 3, x + 3, y + 3), outline="black")
      draw.text((x + 5, y + 2), row["row"], fill="black")
  return image


def main(argv):
  del argv
  rows = read_rows(FLAGS.rows, FLAGS.data)
  if FLAGS.only:
    rows = [r for r in rows if r["row"].split("@")[0] in FLAGS.only]
  labels = dict(label.split("=", 1) for label in FLAGS.labels)
  plot(rows, FLAGS.title, labels).save(FLAGS.out)
  print(f"{len(rows)} rows -> {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
