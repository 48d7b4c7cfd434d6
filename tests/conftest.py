"""Shared fixtures: a fresh lakehouse per test, the real HumanNet preview, generated videos."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from lakehouse.api import Lakehouse
from lakehouse.core.config import Config
from lakehouse.media import synth
from lakehouse.media.synth import Scene

PROJECT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LAKEHOUSE_SHARED_DIR", PROJECT.parent / "shared"))
PREVIEW = SHARED / "data" / "humannet-preview"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Configuration for a fresh lakehouse under ``tmp_path`` (small worker pool)."""
    return Config.load(root=tmp_path / "lakehouse", env={})


@pytest.fixture
def lh(config: Config) -> Lakehouse:
    return Lakehouse(config)


@pytest.fixture(scope="session")
def preview_dir() -> Path:
    if not (PREVIEW / "annotations.jsonl").is_file():
        pytest.skip(f"real HumanNet preview data not found at {PREVIEW} (../shared is absent)")
    return PREVIEW


@pytest.fixture(scope="session")
def preview_records(preview_dir: Path) -> dict[str, dict]:
    lines = (preview_dir / "annotations.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["clip_id"]: r for r in map(json.loads, filter(None, lines))}


@pytest.fixture(scope="session")
def preview_lakehouse(tmp_path_factory: pytest.TempPathFactory, preview_dir: Path) -> Lakehouse:
    """The preview ingested once (library path) for read-only tests."""
    root = tmp_path_factory.mktemp("preview") / "lakehouse"
    lh = Lakehouse(Config.load(root=root, env={}))
    lh.ingest(preview_dir, source="humannet", annotations=[preview_dir / "annotations.jsonl"])
    return lh


@pytest.fixture(scope="session")
def synthetic_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few small generated videos with known properties."""
    folder = tmp_path_factory.mktemp("synthetic")
    videos = {
        "ego": folder / "ego_tabletop.mp4",
        "exo": folder / "exo_dance.mp4",
        "cuts": folder / "three_scenes.mp4",
    }
    synth.write_video(videos["ego"], [Scene("ego", 3, 0)], seed=1)
    synth.write_video(videos["exo"], [Scene("exo", 4, 3, "dance")], seed=2, fps=25)
    synth.write_video(
        videos["cuts"],
        [Scene("exo", 3, 0, "walk"), Scene("ego", 4, 2), Scene("exo", 3, 3, "dance")],
        seed=3,
    )
    return videos


def with_models(config: Config, **settings) -> Config:
    """A copy of ``config`` with some model settings changed."""
    import dataclasses

    return dataclasses.replace(config, models=dataclasses.replace(config.models, **settings))


def svg_of(markdown: str):
    """The SVG document inside a markdown image with a ``data:image/svg+xml,`` URI, parsed."""
    import re
    import urllib.parse
    import xml.etree.ElementTree as ET

    match = re.fullmatch(r"!\[[^\]]*\]\(<data:image/svg\+xml,([^>]*)>\)", markdown.strip())
    assert match, f"not a markdown SVG image: {markdown[:80]}"
    return ET.fromstring(urllib.parse.unquote(match.group(1)))


TINY_CLIP = {"clip_arch": "lakehouse-tiny-test", "clip_pretrained": "random-init-test-only"}


@pytest.fixture
def tiny_clip_config(config: Config) -> Config:
    """The randomly initialised test CLIP (its model id says TEST ONLY) and the real MiniLM."""
    return with_models(config, **TINY_CLIP)


@pytest.fixture
def filters(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The filters Lance scans receive (the spy calls the real scanner)."""
    import lance

    seen: list[str] = []
    scanner = lance.LanceDataset.scanner

    def spy(self, *args, **kwargs):
        seen.append(str(kwargs.get("filter")))
        return scanner(self, *args, **kwargs)

    monkeypatch.setattr(lance.LanceDataset, "scanner", spy)
    return seen


# -- Hypothesis profiles (tests/test_properties.py) -------------------------------------------
# ``ci`` is the default (``make test``): derandomized, so a run is reproducible, and sized so the
# property tests stay within about a minute and a half here. ``deep`` explores many more,
# fresh examples each run (``pytest --hypothesis-profile=deep`` or ``HYPOTHESIS_PROFILE=deep``).
# Neither keeps an example database, and Hypothesis's other files (its constants and unicode
# caches, the patches it writes for failing examples) go to a folder outside the working tree.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / f"hypothesis-{os.getuid()}")
)
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile(
    "ci", max_examples=100, derandomize=True, database=None, deadline=None, print_blob=True
)
hypothesis_settings.register_profile(
    "deep", max_examples=1000, derandomize=False, database=None, deadline=None, print_blob=True
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
