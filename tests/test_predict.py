"""Colorize mode: every input kind, every bad file, full resolution, nothing overwritten."""

import io
import os

import numpy as np
import pytest
import skimage.data
from PIL import Image
from PIL import ImageCms
from skimage import color as skcolor

from colorize.colouring import full_size
from colorize.colouring import predict
from colorize.data import photos
from colorize.runs import run_setup
from tests.conftest import run_main
from tests.conftest import tiny_config


@pytest.fixture
def run_dir(trained_run):
  return trained_run


def photo(height=60, width=90):
  """A real 8-bit colour photo (scikit-image's astronaut), resized."""
  return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.BILINEAR))


def colorize(run_dir, input_path, output_dir, **kwargs):
  return predict.run(tiny_config(), run_dir, input_pattern=str(input_path), output_dir=str(output_dir), **kwargs)


def lightness_gap(a, b):
  return np.abs(skcolor.rgb2lab(a[..., :3])[..., 0] - skcolor.rgb2lab(b[..., :3])[..., 0]).mean()


def save(image, path, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, **kwargs)
  return path


def srgb_profile():
  return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def input_kinds(folder):
  """One file per format and mode a user may have; name -> (path, expected output size, has alpha)."""
  rgb = Image.fromarray(photo())
  rgba = rgb.copy()
  rgba.putalpha(Image.fromarray(np.tile(np.arange(90, dtype=np.uint8) * 2, (60, 1))))
  palette = rgb.convert("P", palette=Image.ADAPTIVE, colors=32)
  palette.info["transparency"] = 0
  sixteen = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)  # mode I;16
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display upright.
  kinds = {
    "gray.png": (rgb.convert("L"), {}, (60, 90), False),
    "rgb.jpg": (rgb, {"quality": 95}, (60, 90), False),
    "rgba.png": (rgba, {}, (60, 90), True),
    "la.png": (rgba.convert("LA"), {}, (60, 90), True),
    "palette.png": (palette, {}, (60, 90), True),
    "cmyk.jpg": (rgb.convert("CMYK"), {}, (60, 90), False),
    "sixteen_bit.png": (sixteen, {}, (60, 90), False),
    "rotated_exif.jpg": (rgb, {"exif": exif.tobytes()}, (90, 60), False),
    "icc.jpg": (rgb, {"icc_profile": srgb_profile()}, (60, 90), False),
    "anim.gif": (rgb.convert("P"), {"save_all": True, "append_images": [rgb.rotate(90).convert("P")]}, (60, 90), False),
    "photo.webp": (rgb, {}, (60, 90), False),
    "photo.tiff": (rgb, {}, (60, 90), False),
    "photo.bmp": (rgb, {}, (60, 90), False),
    "ünïcödé 写真.png": (rgb, {}, (60, 90), False),
  }
  return {
    name: (save(image, os.path.join(folder, name), **kw), size, alpha)
    for name, (image, kw, size, alpha) in kinds.items()
  }


def lightness(rgb):
  return skcolor.rgb2lab(rgb[..., :3])[..., 0]


def upright_source(name):
  """What each input kind of `input_kinds` shows a viewer, as uint8 RGB."""
  rgb = photo()
  gray = np.asarray(Image.fromarray(rgb).convert("L").convert("RGB"))
  return {
    "gray.png": gray,
    "la.png": gray,
    "sixteen_bit.png": gray,
    "rotated_exif.jpg": np.rot90(rgb, k=-1),  # EXIF orientation 6: turned 90 degrees clockwise.
    "anim.gif": np.asarray(Image.fromarray(rgb).convert("P").convert("RGB")),  # The first frame.
    "palette.png": np.asarray(Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=32).convert("RGB")),
  }.get(name, rgb)


def test_every_input_kind_gives_an_output_of_its_size(run_dir, tmp_path):
  kinds = input_kinds(str(tmp_path / "in"))
  assert colorize(run_dir, tmp_path / "in", tmp_path / "out") == 0
  shared = {"photo.webp", "photo.tiff", "photo.bmp"}  # One name, three formats: three outputs.
  assert len(os.listdir(tmp_path / "out")) == len(kinds)
  for name, (_, size, alpha) in kinds.items():
    result = Image.open(tmp_path / "out" / ((name if name in shared else os.path.splitext(name)[0]) + ".png"))
    assert result.size[::-1] == size, name
    assert result.mode == ("RGBA" if alpha else "RGB"), name
    # Lightness per pixel against the upright source: a wrong rotation (90 vs 270 degrees), CMYK
    # inversion, 16-bit scaling or GIF frame gives mean gaps of 10-50; lossy formats stay below 2.
    gap = np.abs(lightness(np.asarray(result)) - lightness(upright_source(name)))
    assert gap.mean() < 2.5, (name, gap.mean())


def test_output_keeps_the_input_lightness_and_alpha(run_dir, tmp_path):
  source = photo(123, 157)  # Not a multiple of anything: the generator sees a resized copy.
  alpha = np.tile(np.arange(157, dtype=np.uint8), (123, 1))
  save(Image.fromarray(np.dstack([source, alpha])), str(tmp_path / "in" / "a.png"))
  assert colorize(run_dir, tmp_path / "in" / "a.png", tmp_path / "out") == 0
  result = np.asarray(Image.open(tmp_path / "out" / "a.png"))
  assert result.shape == (123, 157, 4)
  assert lightness_gap(result, source) < 1.0
  np.testing.assert_array_equal(result[..., 3], alpha)


def resized(plane, height, width):
  return np.asarray(Image.fromarray(plane, "F").resize((width, height), Image.BILINEAR))


@pytest.mark.filterwarnings("ignore:Conversion from CIE-LAB")  # scikit-image clips z, as we do.
def test_a_tall_photo_gets_its_own_lightness_and_the_generators_colour_in_every_row(run_dir, tmp_path):
  """Over 512 rows, so full-resolution colour runs in several row chunks; checked pixel by pixel
  against an independent recomputation: the input's L*, the generator's own a,b at network size
  (applied here directly), upsampled bilinearly, converted by scikit-image."""
  from colorize import color
  from colorize.networks import inference

  source = photo(600, 70)
  save(Image.fromarray(source), str(tmp_path / "in" / "tall.png"))
  assert colorize(run_dir, tmp_path / "in", tmp_path / "out") == 0
  result = np.asarray(Image.open(tmp_path / "out" / "tall.png"))

  config = tiny_config()
  generator, variables, _ = inference.load_generator(config, run_dir)
  source_lightness = skcolor.rgb2lab(source)[..., 0].astype(np.float32)
  height, width = full_size.network_shape(600, 70, config.image_size, 2**config.model.depth)
  small = resized(source_lightness, height, width)
  gray = np.asarray(color.normalize_lightness(small), np.float32)[None, ..., None]
  ab_small = np.asarray(color.denormalize_lab(generator.apply(variables, gray, train=False)))[0, ..., 1:]
  assert np.abs(ab_small).mean() > 2.0  # Colour worth checking: zeroed a,b would not pass below.
  ab = np.stack([resized(ab_small[..., i], 600, 70) for i in (0, 1)], axis=-1)
  expected = np.round(skcolor.lab2rgb(np.dstack([source_lightness, ab])) * 255)
  gap = np.abs(result.astype(float) - expected)
  assert gap.max() <= 2, (gap.max(), np.unravel_index(gap.argmax(), gap.shape))  # Rounding only.
  assert result.shape == source.shape


def test_jpeg_output_on_request(run_dir, tmp_path):
  save(Image.fromarray(photo()), str(tmp_path / "in" / "a.png"))
  assert colorize(run_dir, tmp_path / "in", tmp_path / "out", image_format="jpeg") == 0
  assert Image.open(tmp_path / "out" / "a.jpg").format == "JPEG"


def bad_files(folder):
  """name -> words the one-line error must contain."""
  os.makedirs(folder, exist_ok=True)
  good = io.BytesIO()
  Image.fromarray(photo()).save(good, "JPEG")
  files = {
    "empty.jpg": (b"", "empty file"),
    "truncated.jpg": (good.getvalue()[: len(good.getvalue()) // 2], "truncated or corrupt"),
    "text.jpg": (b"this is not a photo\n", "not an image"),
    "tiny.png": (None, "too small"),
    "bomb.png": (None, "image too large"),
  }
  Image.new("RGB", (1, 1), (200, 10, 10)).save(os.path.join(folder, "tiny.png"))
  Image.new("RGB", (3000, 3000), (10, 200, 10)).save(os.path.join(folder, "bomb.png"))
  for name, (content, _) in files.items():
    if content is not None:
      with open(os.path.join(folder, name), "wb") as f:
        f.write(content)
  return {name: words for name, (_, words) in files.items()}


def test_each_bad_file_gets_one_line_and_the_rest_are_colorized(run_dir, tmp_path, capsys, monkeypatch):
  folder = tmp_path / "in"
  expected = bad_files(str(folder))
  save(Image.fromarray(photo()), str(folder / "good.png"))
  save(Image.fromarray(photo()), str(folder / "locked.png"))
  real_open = Image.open

  def open_refusing_locked(path, *args, **kwargs):  # Tests run as root, where chmod 000 still reads.
    if str(path).endswith("locked.png"):
      raise PermissionError(13, "Permission denied")
    return real_open(path, *args, **kwargs)

  monkeypatch.setattr(Image, "open", open_refusing_locked)
  expected["locked.png"] = "permission denied"
  status = colorize(run_dir, folder, tmp_path / "out", max_pixels=4_000_000)
  err = capsys.readouterr().err
  assert status == 1
  assert sorted(os.listdir(tmp_path / "out")) == ["good.png"]
  failures = [line for line in err.splitlines() if line.startswith("FAILED")]
  assert len(failures) == len(expected)
  for name, words in expected.items():
    (line,) = [f for f in failures if name in f]
    assert words in line, line
  assert "1 colorized, 0 skipped, 6 failed" in err


def test_existing_outputs_are_kept_unless_overwrite(run_dir, tmp_path, capsys):
  save(Image.fromarray(photo()), str(tmp_path / "in" / "a.png"))
  out = tmp_path / "out"
  os.makedirs(out)
  (out / "a.png").write_bytes(b"user's file")
  assert colorize(run_dir, tmp_path / "in", out) == 0
  assert (out / "a.png").read_bytes() == b"user's file"
  assert "exists" in capsys.readouterr().err
  assert colorize(run_dir, tmp_path / "in", out, overwrite=True) == 0
  assert Image.open(out / "a.png").size == (90, 60)


def test_an_input_is_never_its_own_output(run_dir, tmp_path):
  path = save(Image.fromarray(photo()), str(tmp_path / "a.png"))
  before = open(path, "rb").read()
  assert colorize(run_dir, path, tmp_path, overwrite=True) == 0
  assert open(path, "rb").read() == before


def test_folder_glob_and_recursive_inputs(tmp_path):
  for name in ("a.jpg", "b.png", "notes.txt", "sub/c.jpg"):
    os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
    (tmp_path / name).write_bytes(b"x")
  names = lambda found: [n for _, n in found]  # noqa: E731
  assert names(photos.find_photos(str(tmp_path))) == ["a.jpg", "b.png"]
  assert names(photos.find_photos(str(tmp_path), recursive=True)) == ["a.jpg", "b.png", os.path.join("sub", "c.jpg")]
  assert names(photos.find_photos(str(tmp_path / "*.jpg"))) == ["a.jpg"]
  assert names(photos.find_photos(str(tmp_path / "b.png"))) == ["b.png"]


def test_usage_errors(run_dir, tmp_path):
  save(Image.fromarray(photo()), str(tmp_path / "in" / "a.png"))
  (tmp_path / "file").write_text("")
  with pytest.raises(run_setup.UsageError, match="cannot create --output"):
    colorize(run_dir, tmp_path / "in", tmp_path / "file" / "out")
  (tmp_path / "empty").mkdir()
  with pytest.raises(run_setup.UsageError, match="no photos"):
    colorize(run_dir, tmp_path / "empty", tmp_path / "out")
  with pytest.raises(run_setup.UsageError, match="no photos"):
    colorize(run_dir, tmp_path / "in" / "*.jpg", tmp_path / "out")  # A glob that matches nothing.
  with pytest.raises(run_setup.UsageError, match=r"--output=.*file\b is a file, not a folder"):
    colorize(run_dir, tmp_path / "in", tmp_path / "file")


def test_an_output_folder_is_not_left_behind_when_every_input_failed(run_dir, tmp_path, capsys):
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "broken.jpg").write_bytes(b"not a photo")
  assert colorize(run_dir, tmp_path / "in", tmp_path / "out") == 1
  assert not (tmp_path / "out").exists()
  err = capsys.readouterr().err
  assert "Colorizing 1 photo with" in err and "video" not in err  # Only what there is, in its number.
  (tmp_path / "kept").mkdir()  # A folder that was there stays, empty or not.
  assert colorize(run_dir, tmp_path / "in", tmp_path / "kept") == 1 and (tmp_path / "kept").is_dir()


def test_network_shape_keeps_the_aspect_in_multiples():
  assert full_size.network_shape(600, 800, 256, 32) == (256, 352)
  assert full_size.network_shape(4000, 6000, 64, 16) == (64, 96)
  assert full_size.network_shape(100, 10_000, 64, 16) == (64, 256)  # Panoramas are capped at 4:1.


def test_command_line_exit_statuses(run_dir, tmp_path):
  save(Image.fromarray(photo()), str(tmp_path / "in" / "a.png"))
  (tmp_path / "in" / "b.jpg").write_bytes(b"")
  base = [f"--workdir={run_dir}", "--mode=colorize"]
  mixed = run_main(*base, f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}")
  assert mixed.returncode == 1, mixed.stderr[-2000:]
  assert os.listdir(tmp_path / "out") == ["a.png"]
  usage = run_main(*base, f"--input={tmp_path / 'in'}")
  assert usage.returncode == 2 and "--output" in usage.stderr


def test_integer_photos_are_scaled_by_their_files_depth_not_by_their_pixels(tmp_path):
  Image.fromarray(np.full((16, 16), 199, np.int32), "I").save(tmp_path / "dark.tif")  # 199 of 2**31: black.
  dark = photos.load_photo(str(tmp_path / "dark.tif"), "", max_pixels=10**6)
  assert dark.bits == 32 and dark.rgb.max() == 0
  Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(tmp_path / "white.pgm")  # Read as mode 'I' too.
  white = photos.load_photo(str(tmp_path / "white.pgm"), "", max_pixels=10**6)
  assert Image.open(tmp_path / "white.pgm").mode == "I" and white.bits == 16 and white.rgb.min() == 255


def test_sixteen_bit_and_colour_inputs_are_noted_once_each(run_dir, tmp_path, capsys):
  gray = np.asarray(Image.fromarray(photo()).convert("L"))
  save(Image.fromarray(gray.astype(np.uint16) * 257), str(tmp_path / "in" / "deep.png"))
  save(Image.fromarray(photo()), str(tmp_path / "in" / "colour.jpg"), quality=90)
  save(Image.fromarray(gray).convert("RGB"), str(tmp_path / "in" / "gray.jpg"), quality=90)
  assert colorize(run_dir, tmp_path / "in", tmp_path / "out") == 0
  notes = sorted(line for line in capsys.readouterr().err.splitlines() if line.startswith("NOTE"))
  assert notes == [
    f"NOTE {tmp_path / 'in' / 'colour.jpg'}: already in colour: its colours are replaced (only its lightness is kept)",
    f"NOTE {tmp_path / 'in' / 'deep.png'}: 16-bit input, written with 8 bits per channel",
  ]


def test_a_missing_input_is_named_as_missing(run_dir, tmp_path):
  with pytest.raises(run_setup.UsageError, match=r"--input=.*nope does not exist"):
    colorize(run_dir, tmp_path / "nope", tmp_path / "out")
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
  "rawmode,mode,samples",
  [
    ("I;16BS", "I", (16, True)),
    ("I;32S", "I", (32, True)),
    ("RGB;16B", "RGB", (16, False)),
    ("BGR;16", "RGB", (8, False)),
  ],
)
def test_the_files_depth_comes_from_the_decoders_raw_mode(rawmode, mode, samples):
  # Big-endian signed TIFFs ('I;16BS') are signed; a 16-bit BMP ('BGR;16') packs 5-6 bits a channel.
  class Opened:
    tile = [type("Tile", (), {"args": (rawmode, 0, 1)})()]

  Opened.mode = mode
  assert photos.file_samples(Opened()) == samples


def test_a_postscript_file_never_reaches_ghostscript(tmp_path, monkeypatch):
  """EPS is rendered by running `gs`: whatever its name, such a file is not opened as a photo, by the
  colorize mode, the app (both `load_photo`) or folder training (`readable_photos`)."""
  from PIL import EpsImagePlugin

  from colorize.data import sources

  spy_log = tmp_path / "gs-ran"
  spy = tmp_path / "bin" / "gs"
  spy.parent.mkdir()
  spy.write_text(f'#!/bin/sh\necho "$@" >> {spy_log}\n')
  spy.chmod(0o755)
  monkeypatch.setenv("PATH", f"{spy.parent}{os.pathsep}{os.environ['PATH']}")
  monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # Looked up again: the spy, if anything asks.
  for name in ("drawing.eps", "holiday.jpg"):
    Image.fromarray(photo()).save(tmp_path / name, "EPS")
    with pytest.raises(photos.BadPhoto) as raised:
      photos.load_photo(str(tmp_path / name), "")
    assert not spy_log.exists(), f"Ghostscript ran for {name}: {spy_log.read_text()}"
    assert "not an image in a photo format" in str(raised.value)
  good = tmp_path / "good.png"
  Image.fromarray(photo()).save(good)
  assert sources.readable_photos([str(tmp_path / "holiday.jpg"), str(good)]) == ([str(good)], 1)
  assert not spy_log.exists()
