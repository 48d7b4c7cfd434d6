"""The lakehouse on object storage: a local S3-compatible server (moto, started and stopped
here) holds the root ``s3://lake/prefix``; the Dagster ingest job, SQL and search run against
it and give the same results as the same clips in a local root."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import TINY_CLIP, with_models
from test_ray import VOLATILE, few_preview_clips

from lakehouse.api import Lakehouse
from lakehouse.core.config import Config

boto3 = pytest.importorskip("boto3", reason="moto[server] is not installed (pip install '.[dev]')")
pytest.importorskip("moto", reason="moto[server] is not installed (pip install '.[dev]')")

BUCKET = "lake"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free loopback port, with one bucket; stopped at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.2)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def table_rows(lh: Lakehouse, name: str, key: str) -> list[dict]:
    table = lh.read(name)
    keep = [c for c in table.column_names if c not in VOLATILE and c != "keyframe_vectors"]
    rows = sorted(table.select(keep).to_pylist(), key=lambda r: r[key])
    for row in rows:  # vectors: compared to 6 decimals (same model, same inputs)
        if "vector" in row:
            row["vector"] = [round(x, 6) for x in row["vector"]]
    return rows


def test_pipeline_sql_and_search_on_s3_match_a_local_root(
    s3_endpoint, tmp_path, preview_dir, monkeypatch
):
    from dagster_defs.runner import run_ingest
    from lakehouse.ingest.sources import register_source

    endpoint, client = s3_endpoint
    folder, annotations = few_preview_clips(preview_dir, tmp_path / "clips")
    local = Lakehouse(with_models(Config.load(root=tmp_path / "local", env={}), **TINY_CLIP))
    local.ingest(folder, source="preview", annotations=[annotations])

    # the Dagster resource takes the credentials from the environment (dg.EnvVar)
    for name, value in {**KEYS, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    root = f"s3://{BUCKET}/prefix"
    cfg = with_models(
        Config.load(root=root, env={}, dagster_home=str(tmp_path / "dagster")), **TINY_CLIP
    )
    options = {
        "aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
        "aws_endpoint": endpoint,
        "aws_region": "us-east-1",
        "allow_http": "true",
    }
    remote = Lakehouse(
        with_models(Config.load(root=root, env={}, storage_options=options), **TINY_CLIP)
    )
    assert remote.table_names() == []
    register_source(remote, folder, name="preview", annotations=[annotations])
    assert run_ingest(cfg, "preview").success

    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="prefix/clips.lance/")
    assert listed.get("KeyCount", 0) > 0  # the tables are objects in the bucket
    assert not os.path.exists("s3:")  # nothing was written to a local folder named after it
    for name, key in [
        ("videos", "video_id"),
        ("clips", "clip_id"),
        ("annotations", "annotation_id"),
        ("keyframes", "keyframe_id"),
        ("clip_embeddings", "embedding_id"),
        ("text_embeddings", "embedding_id"),
    ]:
        assert table_rows(remote, name, key) == table_rows(local, name, key), name

    query = (
        "select clip_id, viewpoint, duration_s, short_caption, annotation_count, keyframe_count "
        "from clip_facts where duration_s > ? order by clip_id"
    )
    got = remote.sql(query, [1.0]).to_pylist()
    assert got == local.sql(query, [1.0]).to_pylist() and len(got) == 4
    for mode in ("caption", "text", "hybrid"):
        args = {"k": 3, "mode": mode, "where": "viewpoint = ?", "params": ["ego"]}
        mine = remote.search("a person places a container on a shelf", **args)
        theirs = local.search("a person places a container on a shelf", **args)
        assert mine.column("clip_id").to_pylist() == theirs.column("clip_id").to_pylist(), mode
        assert set(mine.column("viewpoint").to_pylist()) == {"ego"}
