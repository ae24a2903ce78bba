"""The hint app, driven in headless Chromium through its own page, with the bundled model."""

import base64
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import skimage.data
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from colorize import color
from colorize.colouring import app
from colorize.runs import bundle

HINT_RGB = (30, 170, 60)  # A green the automatic colours of the photo's sky and stone are far from.


@pytest.fixture(scope="module")
def server():
  config = bundle.bundle_config(bundle.BUNDLED)
  assert config.model.hints, "the bundled model takes hints"
  server = app.make_server(config, bundle.BUNDLED, port=0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{server.server_address[1]}/"
  server.shutdown()
  server.server_close()


def shown_image(browser) -> np.ndarray:
  """The page's current result, read back through a canvas."""
  url = browser.execute_script(
    "const image = document.getElementById('result'); const canvas = document.createElement('canvas');"
    "canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;"
    "canvas.getContext('2d').drawImage(image, 0, 0); return canvas.toDataURL('image/png');"
  )
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def wait_for_points(browser, count: int) -> None:
  WebDriverWait(browser, 60).until(
    lambda b: (
      b.find_element(By.ID, "result").get_attribute("data-points") == str(count)
      and f"{count} point" in b.find_element(By.ID, "status").text
    )
  )


def ab_distance(image: np.ndarray, rgb) -> np.ndarray:
  """Per-pixel distance in a,b from `rgb`."""
  target = color.rgb_to_lab(np.asarray(rgb, np.float32) / 255.0, np)[1:]
  return np.linalg.norm(color.rgb_to_lab(image / 255.0, np)[..., 1:] - target, axis=-1)


def set_colour(browser, rgb) -> None:
  """Picks `rgb` in the page's colour picker, as a user does after a click (its 'input' event)."""
  browser.execute_script(
    "const c = document.getElementById('colour'); c.value = arguments[0]; c.dispatchEvent(new Event('input'));",
    "#" + bytes(rgb).hex(),
  )


@pytest.mark.slow
def test_a_point_clicked_on_the_page_colours_its_region_and_download_gives_full_size(server, browser, tmp_path):
  photo = Image.fromarray(skimage.data.coffee()).resize((1200, 800))  # Previews are 768 px wide.
  path = tmp_path / "coffee.jpg"
  photo.save(path, quality=95)
  browser.get(server)
  browser.find_element(By.ID, "file").send_keys(str(path))
  wait_for_points(browser, 0)
  automatic = shown_image(browser)
  assert automatic.shape == (512, 768, 3)
  image = browser.find_element(By.ID, "result")
  window = browser.execute_script("return [window.innerWidth, window.innerHeight];")
  # Fitted to the window: as wide as the page allows, or as tall.
  assert image.size["width"] >= window[0] - 61 or image.size["height"] >= window[1] - 151, (image.size, window)

  # A point at (300, 200) of the photo, clicked where the page shows it.
  scale = image.size["width"] / 1200

  def click_the_point():
    offset = (round(300.5 * scale) - image.size["width"] // 2, round(200.5 * scale) - image.size["height"] // 2)
    ActionChains(browser).move_to_element_with_offset(image, *offset).click().perform()

  click_the_point()
  wait_for_points(browser, 1)
  # The picker starts from the colour the model gives that place; the point is drawn as a ring.
  started = bytes.fromhex(browser.find_element(By.ID, "colour").get_attribute("value")[1:])
  point = browser.execute_script("return state.points[0];")
  preview_x, preview_y = int((point["x"] + 0.5) * 768 / 1200), int((point["y"] + 0.5) * 512 / 800)
  model_colour = automatic[preview_y, preview_x].astype(int)
  assert np.abs(model_colour - list(started)).max() <= 2, (point, list(started), model_colour)
  (dot,) = browser.find_elements(By.CSS_SELECTOR, ".dot")
  assert dot.value_of_css_property("background-color") in ("rgba(0, 0, 0, 0)", "transparent")
  set_colour(browser, HINT_RGB)
  WebDriverWait(browser, 60).until(lambda b: not np.array_equal(shown_image(b), automatic))
  time.sleep(1)  # The last refresh after the pick.
  hinted = shown_image(browser)
  near = (slice(118, 139), slice(182, 203))  # 10 preview pixels around (192, 128).
  before, after = ab_distance(automatic[near], HINT_RGB).mean(), ab_distance(hinted[near], HINT_RGB).mean()
  assert after < 0.5 * before, (before, after)
  # Well beyond its marker: the colour spreads over the region the point lies on.
  moved = np.linalg.norm(
    color.rgb_to_lab(hinted / 255.0, np)[..., 1:] - color.rgb_to_lab(automatic / 255.0, np)[..., 1:], axis=-1
  )
  far = moved.copy()
  far[128 - 40 : 128 + 41, 192 - 40 : 192 + 41] = 0  # Not counting 40 preview pixels around the point.
  assert (far > 5).sum() > 5000, (far > 5).sum()

  # Before / after: held, the button shows the automatic colours, then the point's again.
  before_button = browser.find_element(By.ID, "before")
  ActionChains(browser).click_and_hold(before_button).perform()
  WebDriverWait(browser, 10).until(lambda b: np.array_equal(shown_image(b), automatic))
  ActionChains(browser).release(before_button).perform()
  WebDriverWait(browser, 10).until(lambda b: np.array_equal(shown_image(b), hinted))

  # Undo brings the automatic colours back.
  browser.find_element(By.ID, "undo").click()
  wait_for_points(browser, 0)
  np.testing.assert_array_equal(shown_image(browser), automatic)

  # Download: the full-size photo with the point, the photo's own lightness kept.
  click_the_point()
  wait_for_points(browser, 1)
  set_colour(browser, HINT_RGB)
  WebDriverWait(browser, 60).until(lambda b: not np.array_equal(shown_image(b), automatic))
  time.sleep(1)
  browser.find_element(By.ID, "download").click()
  target = os.path.join(browser.downloads, "coffee-colorized.png")
  deadline = time.time() + 60
  while not os.path.exists(target) and time.time() < deadline:
    time.sleep(0.2)
  downloaded = np.asarray(Image.open(target).convert("RGB"))
  assert downloaded.shape == (800, 1200, 3)
  original = np.asarray(Image.open(path).convert("RGB"))
  assert np.abs(color.lightness(downloaded) - color.lightness(original)).mean() < 0.5
  assert ab_distance(downloaded[185:216, 285:316], HINT_RGB).mean() < 0.5 * before


def test_a_bad_request_is_a_message_on_the_page(server, browser, tmp_path):
  (tmp_path / "broken.jpg").write_bytes(b"not a photo")
  browser.get(server)
  browser.find_element(By.ID, "file").send_keys(str(tmp_path / "broken.jpg"))
  WebDriverWait(browser, 30).until(lambda b: "not an image" in b.find_element(By.ID, "status").text)
  assert "error" in browser.find_element(By.ID, "status").get_attribute("class")


def post(url: str, body: bytes, headers: dict | None = None, json_type: bool = True):
  """(status, JSON answer or bytes) of a POST as the app's page sends it (its header, JSON type)."""
  page_headers = {app.REQUEST_HEADER: "1"} | ({"Content-Type": "application/json"} if json_type else {})
  request = urllib.request.Request(url, data=body, method="POST", headers=page_headers | (headers or {}))
  try:
    with urllib.request.urlopen(request, timeout=30) as answer:
      return answer.status, answer.read()
  except urllib.error.HTTPError as error:
    return error.code, json.loads(error.read())


def still_serving(url: str) -> bool:
  with urllib.request.urlopen(url, timeout=30) as page:
    return page.status == 200


@pytest.mark.parametrize(
  "body, message",
  [
    (b"[]", "a /colorize request is"),
    (b'{"id": [1], "points": []}', "a /colorize request is"),
    (b'{"id": "x", "points": {}}', "a /colorize request is"),
    (b"\xff\xfe", "a bad request"),
    (b'{"id": "nobody", "points": []}', "no longer open on the server"),
  ],
)
def test_a_malformed_request_gets_a_message_and_the_server_goes_on(server, body, message):
  status, answer = post(server + "colorize", body)
  assert status == 400 and message in answer["error"]
  assert still_serving(server)
