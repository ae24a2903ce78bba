"""The Turing test page: its answer key against the real images, and a real headless browser
(Debian's chromium + chromium-driver) for the page itself."""

import base64
import io
import json
import os
import re
import time

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.support.ui import WebDriverWait

from colorize.data import input_pipeline
from colorize.measuring import turing
from colorize.networks import inference
from colorize.runs import run_setup
from tests.conftest import tiny_config


def embedded_data(page_path) -> dict:
  text = open(page_path, encoding="utf-8").read()
  return json.loads(re.search(r'<script id="turing-data" type="application/json">(.*?)</script>', text, re.S).group(1))


def test_page_is_self_contained_and_scores_the_viewer(trained_run, tmp_path, browser):
  page = turing.write_page(tiny_config(), trained_run, str(tmp_path / "page"), num_pairs=4)
  text = open(page, encoding="utf-8").read()
  assert not re.search(r"""(src|href)=["'](?!data:)|<link|@import|url\(|https?://""", text)  # Nothing to fetch.
  assert str(tmp_path) not in text and trained_run not in text and "/tmp" not in text  # A page to send: no paths.
  assert embedded_data(page)["run"]["run"] == os.path.basename(trained_run)
  # 16 px images at a stated whole-number scale (20x: 320 px), pixels kept sharp, not resampled.
  assert "width: 320px" in text and "image-rendering: pixelated" in text
  assert "The images are 16x16 pixels, shown 20 times larger." in text
  trials = embedded_data(page)["trials"]
  assert len(trials) == 4 and {t["real"] for t in trials} <= {"left", "right"}

  browser.get("file://" + page)
  browser.find_element("id", "start").click()
  other = {"left": "right", "right": "left"}
  for i, trial in enumerate(trials):  # Fooled by the first three pairs, not by the last.
    pick = other[trial["real"]] if i < 3 else trial["real"]
    browser.find_element("id", pick).click()
  assert browser.find_element("id", "fooled").text == "75.0%"
  assert "3 of 4 answered pairs" in browser.find_element("id", "summary").text

  browser.find_element("id", "download").click()
  saved = browser.downloads / "turing_answers.json"
  WebDriverWait(browser, 10).until(lambda _: saved.exists() and saved.stat().st_size > 0)
  answers = json.loads(saved.read_text())
  assert (answers["answered"], answers["fooled"], answers["fooled_rate"]) == (4, 3, 0.75)
  assert [a["real"] for a in answers["answers"]] == [t["real"] for t in trials]
  assert answers["run"]["step"] == 2


def test_time_limit_moves_on_and_counts_unanswered_pairs(trained_run, tmp_path, browser):
  page = turing.write_page(tiny_config(), trained_run, str(tmp_path / "page"), num_pairs=2, seconds_per_pair=0.3)
  browser.get("file://" + page)
  assert "0.3 seconds for each pair" in browser.find_element("id", "intro").text
  browser.find_element("id", "start").click()
  time.sleep(0.1)
  assert "s left" in browser.find_element("id", "timer").text
  WebDriverWait(browser, 10).until(lambda b: b.find_element("id", "result").is_displayed())
  assert browser.find_element("id", "fooled").text == "no answers"
  assert browser.execute_script("return results().timed_out") == 2


def test_an_existing_page_is_kept(trained_run, tmp_path):
  turing.write_page(tiny_config(), trained_run, str(tmp_path), num_pairs=1)
  with pytest.raises(run_setup.UsageError, match="--overwrite"):
    turing.write_page(tiny_config(), trained_run, str(tmp_path), num_pairs=1)


def decoded(data_uri: str) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))))


def test_the_side_marked_real_holds_the_real_image_and_the_other_the_generators(trained_run, tmp_path):
  config = tiny_config()
  trials = embedded_data(turing.write_page(config, trained_run, str(tmp_path), num_pairs=4))["trials"]
  real = input_pipeline.validation_images(config, 4)
  generator, variables, _ = inference.load_generator(config, trained_run)
  generated = np.asarray(inference.colorize_images(generator, variables, real))
  for trial in trials:
    fake_side = "left" if trial["real"] == "right" else "right"
    np.testing.assert_array_equal(decoded(trial[trial["real"]]), real[trial["image"]])
    np.testing.assert_array_equal(decoded(trial[fake_side]), generated[trial["image"]])
  assert len({t["real"] for t in trials}) == 2 or len(trials) < 4  # Both sides are used
