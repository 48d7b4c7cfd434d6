"""Scenario 2: a writer killed with SIGKILL at random points leaves every table readable and
consistent, the next run completes the work, and a commit that landed just before the crash is
recognized on retry instead of being applied twice.

The kill points are drawn from a seeded generator, so each trial stops the writer somewhere
else: the ingest anywhere over its run time measured on the same machine (while probing, between
commits, inside a commit), the commit loop a few milliseconds into a round it announces (inside
its commits for sure, whatever the machine's speed)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lakehouse.api import Lakehouse
from lakehouse.core import schemas
from lakehouse.publication.publish import verify
from lakehouse.storage.sync import VOLATILE_COLUMNS
from lakehouse.subsets.versions import claim_version, get_version, materialize_subset

PROCS = Path(__file__).resolve().parent / "procs.py"
TRIALS = int(os.environ.get("LAKEHOUSE_CRASH_TRIALS", "20"))
TABLES = ("sources", "videos", "annotations", "clips", "keyframes", "quarantine")


def start(command: str, **args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROCS), command, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its probe workers die with it
    )


def run(command: str, **args) -> dict:
    process = start(command, **args)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def kill_after(process: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL the process group after ``seconds``; False if it had finished already."""
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def kill_at_round(process: subprocess.Popen, target: int, delay_s: float) -> bool:
    """SIGKILL the process group ``delay_s`` after it announces round ``target`` (it prints
    ``round N`` before each round's commits); False if it finished before that round."""
    for line in process.stdout:
        if line.strip() == f"round {target}":
            time.sleep(delay_s)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
    process.wait()
    return False


def contents(lh: Lakehouse, table: str) -> dict[str, dict]:
    """Key → the row's non-volatile columns; asserts the table validates and keys are unique."""
    ds = lh.dataset(table)
    if ds is None:
        return {}
    ds.validate()
    data = ds.to_table()
    key = schemas.primary_key(ds.schema)
    keys = data.column(key).to_pylist()
    assert len(keys) == len(set(keys)), f"{table}: duplicate keys after a crash"
    columns = [c for c in data.column_names if c not in VOLATILE_COLUMNS]
    return {row[key]: row for row in data.select(columns).to_pylist()}


def assert_consistent(lh: Lakehouse) -> None:
    for table in lh.table_names():
        contents(lh, table)
        lh.sql(f"select count(*) from {table}")  # readers open it too
    published = {t: lh.published_version(t) for t in lh.table_names()}
    published = {t: v for t, v in published.items() if v is not None}
    if published:  # what readers see passed the blocking checks
        assert all(o.passed for o in verify(lh, published))


@pytest.fixture
def corpus(tmp_path, synthetic_videos):
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(synthetic_videos["cuts"], folder / "three_scenes.mp4")
    shutil.copy(synthetic_videos["ego"], folder / "tabletop.mp4")
    (folder / "labels.csv").write_text(
        "video,start,end,caption,view\ntabletop.mp4,0.5,2.5,hands reach for a cup,ego\n"
    )
    return folder


@pytest.mark.slow
def test_ingest_killed_at_random_points_recovers_exactly(tmp_path, corpus):
    args = {"folder": str(corpus), "source": "cam", "labels": [str(corpus / "labels.csv")]}
    began = time.monotonic()
    run("ingest", root=str(tmp_path / "reference"), **args)
    full_run_s = time.monotonic() - began
    reference = Lakehouse(_config(tmp_path / "reference"))
    expected = {t: contents(reference, t) for t in TABLES}
    assert expected["clips"] and expected["keyframes"]

    rng = random.Random(int(os.environ.get("LAKEHOUSE_CRASH_SEED", "6")))
    kills = runs = recoveries = 0
    root = tmp_path / "crashing"
    lh = Lakehouse(_config(root))
    while kills < TRIALS:
        runs += 1
        assert runs < 6 * TRIALS, "the ingest kept finishing before it could be killed"
        fresh, began = not root.exists(), time.monotonic()
        process = start("ingest", root=str(root), **args)
        if kill_after(process, rng.uniform(0.2, full_run_s)):
            kills += 1
            assert_consistent(lh)  # every table readable, valid, unique keys; published = checked
            if kills % 4:
                continue  # crash the next run of this lakehouse too
            process = start("ingest", root=str(root), **args)  # this one completes the work
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        if fresh:  # a whole run, timed again: the kill window follows the machine's load
            full_run_s = min(full_run_s, time.monotonic() - began)
        for table in TABLES:  # what an uninterrupted run leaves, exactly
            found = contents(lh, table)
            assert found.keys() == expected[table].keys(), (kills, table)
            assert found == expected[table], (kills, table)
        assert_consistent(lh)
        recoveries += 1
        shutil.rmtree(root)  # the next chain starts from nothing
    print(
        f"ingest: {kills} of {runs} runs killed at random points, {recoveries} recoveries "
        f"checked; a full run {full_run_s:.1f} s"
    )


@pytest.mark.slow
def test_writer_killed_inside_its_commits_recovers_exactly(tmp_path):
    """The writer is killed inside its commit loop for sure: once it announces a round (drawn
    from a seeded generator, after its first commit), a few milliseconds in, so each kill lands
    somewhere else in that round's inserts, syncs and deletes, whatever the machine's speed."""
    args = {"rounds": 30, "keys": 25}
    run("commit_loop", root=str(tmp_path / "reference"), **args)
    expected = contents(Lakehouse(_config(tmp_path / "reference")), "sources")
    rng = random.Random(2)
    root = tmp_path / "crashing"
    for trial in range(TRIALS):  # the same lakehouse, crashed again and again
        before = _version(root)
        process = start("commit_loop", root=str(root), announce=True, **args)
        assert kill_at_round(process, rng.randrange(args["rounds"] - 1), rng.uniform(0, 0.05))
        assert _version(root) > before, trial  # it had committed: killed inside its commits
        assert_consistent(Lakehouse(_config(root)))
    run("commit_loop", root=str(root), **args)
    assert contents(Lakehouse(_config(root)), "sources") == expected
    print(f"commits: {TRIALS} runs killed inside their commits, {len(expected)} rows")


def _version(root: Path) -> int:
    ds = Lakehouse(_config(root)).dataset("sources")
    return ds.version if ds is not None else 0


# -- a commit that landed before the crash is recognized ----------------------------------


def test_a_subset_version_recorded_before_a_crash_is_not_recorded_again(lh, corpus, tmp_path):
    lh.ingest(corpus, source="cam", annotations=[corpus / "labels.csv"])
    folder = tmp_path / "subsets"
    folder.mkdir()
    (folder / "every_clip.sql").write_text("-- Every clip.\nselect clip_id from clips\n")
    process = start(
        "materialize_then_die",
        root=lh.root,
        subset_dir=str(folder),
        name="every_clip",
        run_id="run-1",
    )
    out, _ = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert json.loads(out.splitlines()[0]) == {"version": 1}
    user = Lakehouse(_config(lh.root, subset_dirs=[str(folder)]))
    retried = materialize_subset(user, "every_clip", run_id="run-1")  # the run's retry
    assert retried.version == 1
    assert user.count("subsets") == 1
    assert user.count("subset_clips") == user.count("clips")
    assert materialize_subset(user, "every_clip", run_id="run-2").version == 2


def test_a_claim_left_by_a_crash_is_resumed_by_the_same_run(lh, corpus, tmp_path):
    lh.ingest(corpus, source="cam", annotations=[corpus / "labels.csv"])
    folder = tmp_path / "subsets"
    folder.mkdir()
    (folder / "every_clip.sql").write_text("-- Every clip.\nselect clip_id from clips\n")
    user = Lakehouse(_config(lh.root, subset_dirs=[str(folder)]))
    assert claim_version(user, "every_clip", "run-1") == 1  # the run died after its claim
    user.upsert(  # …and after writing a member that its retry will not produce
        "subset_clips",
        [{"subset_clip_id": "every_clip@1:stale", "name": "every_clip", "version": 1}],
    )
    with pytest.raises(Exception, match="has not been materialized"):
        get_version(user, "every_clip")  # a pending claim is invisible to readers
    record = materialize_subset(user, "every_clip", run_id="run-1")
    assert record.version == 1
    assert sorted(get_version(user, "every_clip", 1).clip_ids) == sorted(
        user.read("clips").column("clip_id").to_pylist()
    )
    assert user.count("subset_clips", "clip_id IS NULL") == 0
    # another run racing for the next number skips a claim it does not own
    assert claim_version(user, "every_clip", "run-9") == 2


def test_a_stage_committed_before_a_crash_commits_nothing_on_retry(lh, corpus):
    process = start(
        "videos_stage_then_die", root=lh.root, folder=str(corpus), source="cam", run_id="r1"
    )
    out, _ = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    landed = json.loads(out.splitlines()[0])["videos_version"]
    assert lh.dataset("videos").version == landed
    results = lh.ingest(corpus, source="cam", annotations=[corpus / "labels.csv"], run_id="r1")
    videos = results[0]
    assert videos.stage == "videos" and not videos.write.changed  # recognized, not re-applied
    assert videos.details["probed"] == 0  # not even read again
    assert lh.dataset("videos").version == landed
    assert lh.count("videos") == 2 and lh.count("clips") > 0


def _config(root, **overrides):
    from lakehouse.core.config import Config

    return Config.load(root=root, env={}, **overrides)
