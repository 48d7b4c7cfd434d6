"""`lakehouse demo` end to end: generated corpus → Dagster → tables, quarantine and SQL output."""

from lakehouse.cli import main


def test_demo_runs_and_is_idempotent(tmp_path, capsys):
    args = ["demo", "--root", str(tmp_path / "lh"), "--corpus", str(tmp_path / "corpus")]
    args += ["--exports", str(tmp_path / "exports")]
    main(args)
    out = capsys.readouterr().out
    assert "succeeded" in out
    for reason in ("empty_file", "not_a_video", "decode_error", "bad_json", "inverted_span"):
        assert reason in out, reason
    assert "scene_cut" in out and "fixed_window" in out and "not_probed" in out
    assert "Tightening screws with a screwdriver" in out
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
    main(args)
    capsys.readouterr()
    assert lh.versions() == versions
