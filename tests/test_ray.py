"""The heavy per-item stages on Ray (``compute.backend = "ray"``): a local Ray cluster started
and stopped here runs probe, keyframes and CLIP embeddings of real preview clips through the
Dagster ingest job, and the tables match an in-process run of the same clips."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

import numpy as np
import pytest
from conftest import TINY_CLIP, with_models

from lakehouse.api import Lakehouse
from lakehouse.core.config import ComputeSettings, Config
from lakehouse.media.compute import run_tasks

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")

VOLATILE = {"run_id", "probed_at", "embedded_at", "quarantined_at", "registered_at", "updated_at"}


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-CPU local Ray cluster for this module, shut down at its end."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 1024 * 1024,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}},
    )
    yield
    ray.shutdown()


def ray_config(config: Config) -> Config:
    return dataclasses.replace(config, compute=ComputeSettings(backend="ray"))


def test_tasks_run_on_ray_workers_and_failures_are_per_task(ray_cluster, config):
    cfg = ray_config(config)
    tasks = [(i, None) for i in range(4)]
    outcomes = list(run_tasks(cfg, "worker_tasks:whereabouts", tasks, timeout_s=60))
    assert sorted(o.key for o in outcomes) == [0, 1, 2, 3]
    for o in outcomes:
        pid, task_id = o.value
        assert pid != os.getpid() and task_id  # a Ray worker process ran it, as a Ray task
    mixed = {"ok": ("echo", "hi"), "bad": ("fail", "boom"), "slow": ("sleep", 60)}
    got = {}
    for key, (func, payload) in mixed.items():
        for o in run_tasks(cfg, f"worker_tasks:{func}", [(key, payload)], timeout_s=5):
            got[o.key] = o
    assert got["ok"].ok and got["ok"].value == "hi"
    assert got["bad"].error_code == "exception" and "boom" in got["bad"].message
    assert got["slow"].error_code == "timeout"


def test_a_task_gets_the_time_its_item_needs_up_to_the_ceiling(ray_cluster, config):
    # a running Ray task cannot ask for more time: timeout_for says each one's limit up front
    # (one task at a time, so none waits for a CPU while its clock runs)
    cfg = ray_config(config)
    wanted = {2.0: 8.0, 2.5: None, 30.0: 1000.0}
    got = {}
    for key, seconds in (("earned", 2.0), ("plain", 2.5), ("greedy", 30.0)):
        (got[key],) = run_tasks(
            cfg,
            "worker_tasks:sleep",
            [(key, seconds)],
            timeout_s=1.0,
            max_timeout_s=4,
            timeout_for=wanted.get,
        )
    assert got["earned"].ok  # 2 s of work under the 8 s it asked for (capped at 4)
    assert got["plain"].error_code == "timeout"  # asked nothing: the base limit
    assert "1 s per-file time limit" in got["plain"].message
    assert got["greedy"].error_code == "timeout"  # asked for 1000 s, got the 4 s ceiling
    assert "4 s per-file time limit" in got["greedy"].message


def few_preview_clips(preview_dir, folder, n_each=2):
    """A folder with a few real preview clips (ego and exo) and their annotation lines."""
    lines = (preview_dir / "annotations.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    picked = [r for r in records if r["viewpoint"] == "ego"][:n_each]
    picked += [r for r in records if r["viewpoint"] == "exo"][:n_each]
    (folder / "clips").mkdir(parents=True)
    for r in picked:
        shutil.copy(preview_dir / r["file"], folder / r["file"])
    annotations = folder / "annotations.jsonl"
    annotations.write_text("".join(json.dumps(r) + "\n" for r in picked), encoding="utf-8")
    return folder, annotations


def rows(lh: Lakehouse, name: str, key: str) -> list[dict]:
    table = lh.read(name)
    keep = [c for c in table.column_names if c not in VOLATILE]
    return sorted(table.select(keep).to_pylist(), key=lambda r: r[key])


def test_ingest_assets_on_ray_write_the_same_tables(ray_cluster, tmp_path, preview_dir):
    from dagster_defs.runner import run_ingest
    from lakehouse.ingest.sources import register_source

    folder, annotations = few_preview_clips(preview_dir, tmp_path / "clips")
    base = with_models(Config.load(root=tmp_path / "local", env={}), **TINY_CLIP)
    local = Lakehouse(base)
    local.ingest(folder, source="preview", annotations=[annotations])

    cfg = ray_config(base.with_root(tmp_path / "on_ray"))
    cfg = dataclasses.replace(cfg, dagster_home=str(tmp_path / "dagster"))
    on_ray = Lakehouse(cfg)
    register_source(on_ray, folder, name="preview", annotations=[annotations])
    report = run_ingest(cfg, "preview")
    assert report.success

    assert local.count("videos") == 4 and local.count("keyframes") > 4
    for name, key in [
        ("videos", "video_id"),
        ("clips", "clip_id"),
        ("annotations", "annotation_id"),
        ("keyframes", "keyframe_id"),
        ("quarantine", "quarantine_id"),
    ]:
        assert rows(on_ray, name, key) == rows(local, name, key), name
    mine, theirs = (
        rows(on_ray, "clip_embeddings", "embedding_id"),
        rows(local, "clip_embeddings", "embedding_id"),
    )
    assert len(mine) == len(theirs) == 4
    for a, b in zip(mine, theirs, strict=True):
        va, vb = np.asarray(a.pop("vector")), np.asarray(b.pop("vector"))
        ka, kb = np.asarray(a.pop("keyframe_vectors")), np.asarray(b.pop("keyframe_vectors"))
        assert a == b
        # same model and inputs; float sums may differ in the last bits across thread counts
        assert np.allclose(va, vb, atol=1e-5) and np.allclose(ka, kb, atol=1e-5)
