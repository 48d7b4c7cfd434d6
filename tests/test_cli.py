"""The command line: fast start, formats, and one-line errors without tracebacks."""

import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from lakehouse.cli.main import main

HEAVY = (
    "lance",
    "lancedb",
    "duckdb",
    "av",
    "dagster",
    "torch",
    "open_clip",
    "pyarrow",
    "polars",
    "mediapipe",
    "cv2",
    "sklearn",
)


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def test_import_and_help_do_not_load_heavy_libraries():
    code = (
        f"import sys, lakehouse, lakehouse.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    result = run("--help")
    assert result.returncode == 0 and "ingest" in result.stdout and "sql" in result.stdout


def cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def cli_ok(capsys, *args):
    main(list(args))
    return capsys.readouterr().out


@pytest.fixture
def ingested(tmp_path, synthetic_videos, capsys):
    folder = tmp_path / "cam"
    folder.mkdir()
    shutil.copy(synthetic_videos["ego"], folder / "a.mp4")
    shutil.copy(synthetic_videos["exo"], folder / "b.mp4")
    (folder / "labels.jsonl").write_text(
        json.dumps({"file": "a.mp4", "caption": "hands on a table", "viewpoint": "ego"}) + "\n"
    )
    root = str(tmp_path / "lh")
    out = cli_ok(
        capsys,
        "ingest",
        str(folder),
        "--root",
        root,
        "-a",
        str(folder / "labels.jsonl"),
        "--source",
        "cam",
        "--viewpoint",
        "exo",
    )
    assert "succeeded" in out and "check clips.unique_clip_id: passed" in out
    return root


def test_tables_and_sources(ingested, capsys):
    import lance

    from lakehouse import open as open_lakehouse

    out = cli_ok(capsys, "--root", ingested, "tables")
    lines = out.splitlines()
    assert lines[0].split() == ["table", "rows", "version", "published", "uri"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["videos"][1] == "2" and rows["clips"][1] == "2"
    # each table's latest version and the version readers see, as Lance and the record say
    published = open_lakehouse(ingested).publication()
    for name, (_, count, version, shown, uri) in rows.items():
        ds = lance.dataset(uri)
        assert (count, version) == (str(ds.count_rows()), str(ds.version)), name
        assert shown == str(published.get(name, "-")), name
    assert int(rows["clips"][2]) >= 2 and rows["clips"][3] == rows["clips"][2]
    assert "cam:" in cli_ok(capsys, "sources", "--root", ingested)


def test_sql_formats(ingested, capsys, tmp_path):
    query = "select clip_id, viewpoint, short_caption from clip_facts order by viewpoint"
    rows = json.loads(cli_ok(capsys, "sql", query, "--root", ingested, "--format", "json"))
    assert [(r["viewpoint"], r["short_caption"]) for r in rows] == [
        ("ego", "hands on a table"),
        ("exo", None),
    ]
    csv_text = cli_ok(capsys, "sql", query, "--root", ingested, "-f", "csv")
    assert csv_text.splitlines()[0] == "clip_id,viewpoint,short_caption"
    table_text = cli_ok(capsys, "sql", query, "--root", ingested)
    assert "(2 rows)" in table_text
    out = tmp_path / "clips.parquet"
    cli_ok(capsys, "sql", query, "--root", ingested, "-f", "parquet", "--out", str(out))
    assert pq.read_table(out).num_rows == 2
    sql_file = tmp_path / "q.sql"
    sql_file.write_text("select count(*) as n from clips where viewpoint = ?")
    assert json.loads(
        cli_ok(capsys, "sql", str(sql_file), "-p", "exo", "-f", "json", "--root", ingested)
    ) == [{"n": 1}]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["sql", "select * from read_csv('/etc/passwd')"], "Query refused"),
        (["sql", "select * from nope"], "nope"),
        (["sql", "select 1", "--format", "parquet"], "--out"),
        (["ingest", "/definitely/not/here"], "does not exist"),
        (["ingest", ".", "--source", "Bad Name!"], "Source name"),
        # click's usage errors too: one line naming the command's help, not a usage block
        (["sql"], "Missing argument 'QUERY'. (see 'lakehouse sql --help')"),
        (["sql", "select 1", "--format", "xml"], "'xml' is not one of 'table', 'csv'"),
        (["search", "x", "-k", "many"], "(see 'lakehouse search --help')"),
        (["subset", "nope"], "No such command 'nope'. (see 'lakehouse subset --help')"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, capsys, args, needle):
    code, _, err = cli(capsys, *args, "--root", str(tmp_path / "lh"))
    assert code == 2
    assert err.startswith("error: ") and needle in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_errors_in_a_real_process(tmp_path):
    result = run("sql", "COPY (select 1) TO '/tmp/x.csv'", "--root", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: Query refused")
    assert "Traceback" not in result.stderr
    result = run("sql", "select 1", "--format", "xml", "--root", str(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: Invalid value for '--format'")
    assert result.stderr.endswith("(see 'lakehouse sql --help')\n")
    assert result.stderr.count("\n") == 1
    # help is still click's, on stdout
    result = run("sql", "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: lakehouse sql [OPTIONS] QUERY\n")
    assert "--format [table|csv|json|parquet]" in result.stdout


def test_ingest_shows_progress_on_stderr(tmp_path, synthetic_videos):
    folder = tmp_path / "cam"
    folder.mkdir()
    for name, path in synthetic_videos.items():
        shutil.copy(path, folder / f"{name}.mp4")
    result = run("ingest", str(folder), "--root", str(tmp_path / "lh"))
    assert result.returncode == 0, result.stderr[-2000:]
    err = result.stderr.splitlines()
    assert err[0].startswith(f"Ingesting {folder} as source 'cam'")
    # per stage: a start line naming the work, then one line per item (3 < 10 items)
    videos = [line for line in err if " - videos - " in line and "/3 " in line]
    assert videos[0].endswith("0/3 probing 3 new file(s) of 3")
    assert [line.split(" - videos - ")[1].split()[0] for line in videos] == [
        "0/3",
        "1/3",
        "2/3",
        "3/3",
    ]
    keyframes = [line for line in err if " - keyframes - " in line and "/3 " in line]
    assert keyframes[0].endswith("0/3 keyframes for 3 video(s)") and len(keyframes) == 4
    # stdout stays the report alone, for scripts
    assert "probing" not in result.stdout and result.stdout.startswith("Dagster run ")
