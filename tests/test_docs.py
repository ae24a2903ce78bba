"""README.md and docs/: every relative link and anchor resolves, and the README stays short."""

import glob
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "weights/README.md"]
PAGES += sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set:
  """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-', repeats numbered."""
  seen, found = {}, set()
  text = re.sub(r"```.*?```", "", markdown, flags=re.S)
  for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
    seen[slug] = seen.get(slug, 0) + 1
  return found


def links(markdown: str) -> list:
  text = re.sub(r"```.*?```", "", markdown, flags=re.S)
  return [a or b for a, b in LINK.findall(text)]


def test_anchors_follow_githubs_rules():
  assert anchors("# A b\n## Quality: colour, worth keeping!\n## A b\n```\n# not a heading\n```") == {
    "a-b",
    "quality-colour-worth-keeping",
    "a-b-1",
  }


def broken_links(page: str) -> list:
  with open(os.path.join(REPO, page)) as f:
    markdown = f.read()
  broken = []
  for target in links(markdown):
    if re.match(r"[a-z]+:", target):  # https:, mailto: ...: not checked offline.
      continue
    path, _, anchor = target.partition("#")
    resolved = os.path.normpath(os.path.join(REPO, os.path.dirname(page), path)) if path else os.path.join(REPO, page)
    if not os.path.exists(resolved):
      broken.append(f"{target} (no file {os.path.relpath(resolved, REPO)})")
    elif anchor and resolved.endswith(".md") and anchor not in anchors(open(resolved).read()):
      broken.append(f"{target} (no heading #{anchor} in {os.path.relpath(resolved, REPO)})")
  return broken


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_and_anchor_resolves(page):
  assert broken_links(page) == []


def test_the_checker_catches_a_broken_file_and_a_broken_anchor(tmp_path, monkeypatch):
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "a.md").write_text("# Here\n")
  (tmp_path / "README.md").write_text("[ok](docs/a.md#here) [gone](docs/b.md) [moved](docs/a.md#there) [self](#nope)")
  monkeypatch.setattr(sys.modules[__name__], "REPO", str(tmp_path))
  assert broken_links("README.md") == [
    "docs/b.md (no file docs/b.md)",
    "docs/a.md#there (no heading #there in docs/a.md)",
    "#nope (no heading #nope in README.md)",
  ]


def test_the_readme_is_a_front_page_not_a_manual():
  with open(os.path.join(REPO, "README.md")) as f:
    assert len(f.read()) < 15_000
