"""Scenario 10: exports stay inside --out and are atomic, even when the exporting process is
killed with SIGKILL at a random point."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lakehouse.core.errors import InputError
from lakehouse.subsets.export import confined_path

PROCS = Path(__file__).resolve().parent / "procs.py"


@pytest.fixture(scope="module")
def exportable(tmp_path_factory, synthetic_videos):
    from lakehouse.api import Lakehouse
    from lakehouse.core.config import Config

    base = tmp_path_factory.mktemp("export")
    folder = base / "videos"
    folder.mkdir()
    for name, video in synthetic_videos.items():
        shutil.copy(video, folder / f"{name}.mp4")
    subsets = base / "subsets"
    subsets.mkdir()
    (subsets / "every_clip.sql").write_text("-- Every clip.\nselect clip_id from clips\n")
    lh = Lakehouse(Config.load(root=base / "lakehouse", env={}, subset_dirs=[str(subsets)]))
    lh.ingest(folder, source="cam")
    lh.materialize_subset("every_clip")
    return {"lh": lh, "subsets": subsets, "base": base, "clips": lh.count("clips")}


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "a/../../escape",
        "/tmp/abs",
        "//host/share",
        "nul\x00byte",
        "back\\slash",
        "C:evil",
        "~/x/../../..",
    ],
)
def test_hostile_export_names_are_refused(exportable, tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(InputError):
        exportable["lh"].export_subset("every_clip", fmt="parquet", out=str(out), prefix=name)
    with pytest.raises(InputError):
        confined_path(out, name)
    assert not list(tmp_path.glob("escape*")) and not Path("/tmp/abs.parquet").exists()


def test_out_folders_that_cannot_hold_an_export_are_clear_errors(exportable, tmp_path):
    lh = exportable["lh"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (str(a_file), str(a_file / "below"), "nul\x00out"):
        with pytest.raises(InputError):
            lh.export_subset("every_clip", fmt="jsonl", out=out)
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "shards").symlink_to(outside)  # a folder inside --out that leads out of it
    with pytest.raises(InputError, match="symlink"):
        lh.export_subset("every_clip", fmt="parquet", out=str(out), prefix="shards/x")
    assert not list(outside.iterdir())


def test_the_cli_refuses_a_hostile_name_in_one_line(exportable, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "subset",
            "export",
            "every_clip",
            "--format",
            "parquet",
            "--out",
            str(tmp_path / "out"),
            "--name",
            "../../escape",
            "--root",
            exportable["lh"].root,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "LAKEHOUSE_CONFIG"},
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: Export name")


def _complete(out: Path, clips: int) -> None:
    """Every file with a final name is whole; temporary files are hidden; the index comes last."""
    for path in out.iterdir():
        if path.name.startswith(".tmp-"):
            continue  # a SIGKILL leaves its temporary file: hidden, never a final name
        if path.suffix == ".tar":
            with tarfile.open(path) as tar:
                members = tar.getmembers()
                assert len(members) == 2 and all(tar.extractfile(m).read() for m in members)
        elif path.suffix == ".json":
            index = json.loads(path.read_text())
            assert index["samples"] == clips
            assert all((out / shard).is_file() for shard in index["shards"])
        elif path.suffix == ".parquet":
            assert pq.read_table(path).num_rows == clips
        else:
            raise AssertionError(f"unexpected file {path}")


@pytest.mark.slow
def test_exports_killed_at_random_points_leave_no_complete_looking_file(exportable, tmp_path):
    args = {
        "root": exportable["lh"].root,
        "subset_dir": str(exportable["subsets"]),
        "name": "every_clip",
    }

    def export(fmt: str, out: Path) -> subprocess.Popen:
        job = json.dumps({**args, "fmt": fmt, "out": str(out)})
        return subprocess.Popen(
            [sys.executable, str(PROCS), "export", job],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    began = time.monotonic()
    assert export("webdataset", tmp_path / "timing").wait() == 0
    full_s = time.monotonic() - began
    rng = random.Random(10)
    kills = trials = 0
    while kills < 6:
        trials += 1
        assert trials < 30, "the export kept finishing before it could be killed"
        fmt = "webdataset" if trials % 3 else "parquet"
        out = tmp_path / f"out{trials}"
        process = export(fmt, out)
        try:
            process.wait(timeout=rng.uniform(0.3, full_s))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
        if out.exists():
            _complete(out, exportable["clips"])
