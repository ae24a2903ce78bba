"""The Turing test page, driven in a real headless browser (Debian's chromium + chromium-driver)."""

import json
import os
import re
import shutil
import time

import pytest

from colorize import run_setup
from colorize import turing
from tests.conftest import tiny_config

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("COLORIZE_REQUIRE_BROWSER"):
  pytest.skip("needs chromium and chromium-driver (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
  downloads = tmp_path_factory.mktemp("downloads")
  options = Options()
  options.binary_location = CHROMIUM
  for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,760"):
    options.add_argument(argument)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
  driver.downloads = downloads
  yield driver
  driver.quit()


def embedded_data(page_path) -> dict:
  text = open(page_path, encoding="utf-8").read()
  return json.loads(re.search(r'<script id="turing-data" type="application/json">(.*?)</script>', text, re.S).group(1))


def test_page_is_self_contained_and_scores_the_viewer(trained_run, tmp_path, browser):
  page = turing.write_page(tiny_config(), trained_run, str(tmp_path / "page"), num_pairs=4)
  text = open(page, encoding="utf-8").read()
  assert not re.search(r"""(src|href)=["'](?!data:)|<link|@import|url\(|https?://""", text)  # Nothing to fetch.
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
