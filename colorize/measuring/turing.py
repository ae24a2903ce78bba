"""The turing mode: a self-contained web page on which people try to tell real photos from colorized ones.

    python main.py --workdir=RUN --mode=turing --output=DIR [--turing_pairs=20] [--turing_seconds=0]

DIR/index.html holds everything (images as data URIs, inline CSS and script; no server, no network).
Each trial shows one validation image twice, real and colorized, in a seeded random order; the
viewer clicks the one they believe is real, optionally within a time limit. At the end the page
shows the fooled rate (the share of answered pairs where the colorized image was picked, 50% =
indistinguishable) and offers the answers as a JSON download. The answer key is in the page:
this measures honest viewers, not adversarial ones.
"""

import base64
import html
import io
import json
import os

import numpy as np
from absl import logging
from PIL import Image

from colorize.data import input_pipeline
from colorize.networks import inference
from colorize.runs import run_setup
from colorize.runs.run_setup import UsageError

PAGE_FILE = "index.html"


def png_data_uri(image: np.ndarray) -> str:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def make_trials(real: np.ndarray, generated: np.ndarray, seed: int) -> list:
  """One trial per image, in a seeded order, with the real image on a seeded side."""
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(real))
  real_on_left = rng.random(len(real)) < 0.5
  trials = []
  for trial, index in enumerate(order):
    pair = [png_data_uri(real[index]), png_data_uri(generated[index])]
    left, right = pair if real_on_left[index] else pair[::-1]
    real_side = "left" if real_on_left[index] else "right"
    trials.append({"id": trial, "image": int(index), "left": left, "right": right, "real": real_side})
  return trials


MAX_SHOWN = 320  # Pixels: an image is shown at the largest whole multiple of its size up to this.


def shown_scale(image_size: int) -> int:
  """Whole-number zoom of the images on the page: every pixel a sharp square, never a blur that
  a resampling filter would add to both images (and that would tell the real one apart)."""
  return max(1, MAX_SHOWN // image_size)


def page_html(trials: list, run: dict, seconds_per_pair: float) -> str:
  """The whole page: markup, style and script, with the trials embedded as JSON."""
  data = json.dumps({"run": run, "seconds_per_pair": seconds_per_pair, "trials": trials})
  data = data.replace("</", "<\\/")  # Keeps the JSON from closing the <script> element.
  limit = f"You have {seconds_per_pair:g} seconds for each pair." if seconds_per_pair > 0 else "Take your time."
  size, scale = run["image_size"], run["shown_scale"]
  shown = f"The images are {size}x{size} pixels" + (f", shown {scale} times larger." if scale > 1 else ".")
  replacements = {  # The data last: nothing in it is read as a placeholder.
    "{{LIMIT}}": html.escape(limit),
    "{{COUNT}}": str(len(trials)),
    "{{SHOWN}}": shown,
    "{{WIDTH}}": str(size * scale),
    "{{DATA}}": data,
  }
  page = _TEMPLATE
  for key, value in replacements.items():
    page = page.replace(key, value)
  return page


def write_page(config, workdir: str, output_dir: str, num_pairs=20, seconds_per_pair=0.0, overwrite=False) -> str:
  """Colorizes `num_pairs` validation images with the run's generator and writes DIR/index.html."""
  if not output_dir:
    raise UsageError("--mode=turing needs --output=DIR for the page.")
  path = os.path.join(output_dir, PAGE_FILE)
  if os.path.exists(path) and not overwrite:
    raise UsageError(f"{path} exists: choose another --output, or pass --overwrite.")
  if num_pairs < 1 or seconds_per_pair < 0:
    raise UsageError("--turing_pairs must be at least 1 and --turing_seconds at least 0.")
  generator, variables, step = inference.load_generator(config, workdir)
  real = input_pipeline.validation_images(config, num_pairs)
  generated = np.asarray(inference.colorize_images(generator, variables, real))
  # No path: the page is sent to other people. The run's folder name, its step and its images' size.
  run = {"run": run_setup.run_name(workdir), "step": step, "dataset": config.dataset}
  run |= {"image_size": config.image_size, "shown_scale": shown_scale(config.image_size)}
  os.makedirs(output_dir, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(page_html(make_trials(real, generated, config.seed), run, seconds_per_pair))
  logging.info("Turing test page with %d pairs (step %d): %s", len(real), step, path)
  return path


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Real or colorized?</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f4f2; color: #222; }
  main { max-width: 760px; margin: 0 auto; padding: 24px; text-align: center; }
  h1 { font-size: 1.6em; margin: 0.4em 0; }
  .pair { display: flex; gap: 16px; justify-content: center; margin: 20px 0; }
  .pair button { border: 3px solid transparent; padding: 0; background: none; cursor: pointer; }
  .pair button:hover, .pair button:focus { border-color: #2b6cb0; outline: none; }
  .pair img { width: {{WIDTH}}px; height: auto; display: block; image-rendering: pixelated; }
  .start, .download { font-size: 1.1em; padding: 10px 24px; border-radius: 6px; border: 0;
                      background: #2b6cb0; color: white; cursor: pointer; text-decoration: none; }
  .meta { color: #666; }
  #timer { font-variant-numeric: tabular-nums; }
  .score { font-size: 2.4em; margin: 0.3em 0; }
  table { margin: 16px auto; border-collapse: collapse; }
  td, th { padding: 2px 10px; border-bottom: 1px solid #ddd; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<main>
  <section id="intro">
    <h1>Real or colorized?</h1>
    <p>Each of the {{COUNT}} pairs shows the same photo twice: once in its real colours and once
    colorized by a neural network from its black-and-white version. Click the one you believe is
    <b>real</b>. {{LIMIT}} {{SHOWN}}</p>
    <button class="start" id="start">Start</button>
  </section>
  <section id="trial" hidden>
    <p class="meta">Pair <span id="position"></span> of {{COUNT}} <span id="timer"></span></p>
    <div class="pair">
      <button id="left" aria-label="the left image is real"><img alt="left image"></button>
      <button id="right" aria-label="the right image is real"><img alt="right image"></button>
    </div>
    <p class="meta">Which one is real? Click it (or press the left / right arrow key).</p>
  </section>
  <section id="result" hidden>
    <h1>Fooled rate</h1>
    <p class="score" id="fooled"></p>
    <p id="summary"></p>
    <a class="download" id="download" download="turing_answers.json">Download the answers (JSON)</a>
    <table id="answers">
      <thead><tr><th>pair</th><th>your choice</th><th>real was</th><th>seconds</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script id="turing-data" type="application/json">{{DATA}}</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("turing-data").textContent);
const answers = [];
let current = -1, shownAt = 0, timer = null;

function $(id) { return document.getElementById(id); }

function show(index) {
  current = index;
  const trial = DATA.trials[index];
  $("left").querySelector("img").src = trial.left;
  $("right").querySelector("img").src = trial.right;
  $("position").textContent = index + 1;
  shownAt = performance.now();
  clearInterval(timer);
  if (DATA.seconds_per_pair > 0) {
    const tick = () => {
      const left = DATA.seconds_per_pair - (performance.now() - shownAt) / 1000;
      if (left <= 0) { answer(null); return; }
      $("timer").textContent = "(" + left.toFixed(1) + " s left)";
    };
    tick();
    timer = setInterval(tick, 100);
  }
}

function answer(side) {
  if (current < 0 || current >= DATA.trials.length) return;
  const trial = DATA.trials[current];
  answers.push({
    pair: trial.id, image: trial.image, real: trial.real, choice: side,
    fooled: side === null ? null : side !== trial.real,
    seconds: Math.round(performance.now() - shownAt) / 1000,
  });
  if (current + 1 < DATA.trials.length) { show(current + 1); } else { finish(); }
}

function results() {
  const answered = answers.filter(a => a.choice !== null);
  const fooled = answered.filter(a => a.fooled).length;
  return {
    run: DATA.run, seconds_per_pair: DATA.seconds_per_pair, pairs: DATA.trials.length,
    answered: answered.length, timed_out: answers.length - answered.length, fooled: fooled,
    fooled_rate: answered.length ? fooled / answered.length : null,
    finished_at: new Date().toISOString(), answers: answers,
  };
}

function finish() {
  clearInterval(timer);
  current = DATA.trials.length;
  $("trial").hidden = true;
  $("result").hidden = false;
  const r = results();
  $("fooled").textContent = r.fooled_rate === null ? "no answers" : (100 * r.fooled_rate).toFixed(1) + "%";
  $("summary").textContent = "You picked the colorized photo as the real one in " + r.fooled + " of " +
    r.answered + " answered pairs" + (r.timed_out ? " (" + r.timed_out + " timed out)" : "") +
    ". 50% means you could not tell them apart.";
  const blob = new Blob([JSON.stringify(r, null, 2)], {type: "application/json"});
  $("download").href = URL.createObjectURL(blob);
  const rows = $("answers").querySelector("tbody");
  for (const a of r.answers) {
    const row = rows.insertRow();
    for (const value of [a.pair + 1, a.choice === null ? "timed out" : a.choice, a.real, a.seconds.toFixed(1)]) {
      row.insertCell().textContent = value;
    }
  }
}

$("start").addEventListener("click", () => { $("intro").hidden = true; $("trial").hidden = false; show(0); });
$("left").addEventListener("click", () => answer("left"));
$("right").addEventListener("click", () => answer("right"));
document.addEventListener("keydown", event => {
  if ($("trial").hidden) return;
  if (event.key === "ArrowLeft") answer("left");
  if (event.key === "ArrowRight") answer("right");
});
</script>
</body>
</html>
"""
