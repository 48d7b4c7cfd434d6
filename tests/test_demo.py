"""`lakehouse demo` end to end: generated corpus → Dagster → tables, quarantine and SQL output."""

from lakehouse.cli.demo import CSV_ROWS, EGO_CLIPS, SEARCH_QUERY
from lakehouse.cli.main import main
from lakehouse.core.config import Config
from lakehouse.models.resolve import resolve_clip


def test_demo_runs_and_is_idempotent(tmp_path, capsys):
    args = ["demo", "--root", str(tmp_path / "lh"), "--corpus", str(tmp_path / "corpus")]
    args += ["--exports", str(tmp_path / "exports")]
    main(args)
    out = capsys.readouterr().out
    assert "succeeded" in out
    checks = out.split("succeeded; checks: ")[1].splitlines()[0]
    assert "FAILED" not in checks
    assert "text_embedding_coverage passed" in checks  # MiniLM is here
    if not resolve_clip(Config.load(env={}).models, check_online=False).available:
        # no CLIP weights here: the checks that need the model are skipped, not failed
        assert "clip_embedding_coverage skipped (model unavailable)" in checks
        assert "clip_vectors_have_model_width_and_unit_norm skipped (model unavailable)" in checks
    for reason in ("empty_file", "not_a_video", "decode_error", "bad_json", "inverted_span"):
        assert reason in out, reason
    assert "scene_cut" in out and "fixed_window" in out and "not_probed" in out
    assert "Tightening screws with a screwdriver" in out
    # semantic search by caption: three hits, the drill first for "… working with a power tool"
    header = f"Semantic search (lakehouse search {SEARCH_QUERY!r} --mode caption -k 3):\n"
    assert header in out
    section = out.split(header)[1].split("A semantic predicate inside SQL:")[0]
    assert "unavailable" not in section
    lines = [line.strip() for line in section.strip().splitlines()]
    assert lines[0].split() == ["score", "viewpoint", "short_caption"] and lines[-1] == "(3 rows)"
    assert "A person grips a power drill" in lines[2]
    captions = {caption[:40] for *_, caption in EGO_CLIPS} | {row[4][:40] for row in CSV_ROWS}
    assert all(any(c in line for c in captions) for line in lines[2:-1])
    # the subset, from its file to an export: the tool-use clips, and only ego clips
    assert "version 1:" in out and "identical" in out
    assert "Using a hand drill" in out.split("Subset sql/subsets")[1]
    assert (tmp_path / "exports" / "egocentric_tool_use_over_30s-v1-000000.tar").is_file()
    assert (tmp_path / "exports" / "egocentric_tool_use_over_30s-v1.json").is_file()

    from lakehouse import open as open_lakehouse

    lh = open_lakehouse(tmp_path / "lh")
    counts = {t.name: t.rows for t in lh.info()}
    assert counts["videos"] == 9 and counts["quarantine"] == 6
    assert lh.sql("select count(*) as n from clip_facts where viewpoint = 'ego'").to_pylist() == [
        {"n": 4}
    ]
    versions = lh.versions()
    # A probe stopped by a per-file limit is retried by the next run (docs/tables.md), which
    # then records what the file really does: FFmpeg once hung for the whole 120 s limit on the
    # damaged file here (a `timeout`, then `decode_error`). Such a run is followed by one more
    # before the re-run that must change nothing.
    transient = "reason_code in ('timeout', 'memory_limit', 'worker_crashed')"
    if lh.sql(f"select count(*) as n from quarantine where {transient}").to_pylist()[0]["n"]:
        main(args)
        capsys.readouterr()
        versions = lh.versions()
    main(args)
    capsys.readouterr()
    assert lh.versions() == versions
