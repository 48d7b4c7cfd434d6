"""`lakehouse demo` end to end: generated corpus → Dagster → tables, quarantine and SQL output."""

from lakehouse.cli import main


def test_demo_runs_and_is_idempotent(tmp_path, capsys):
    args = ["demo", "--root", str(tmp_path / "lh"), "--corpus", str(tmp_path / "corpus")]
    main(args)
    out = capsys.readouterr().out
    assert "succeeded" in out
    for reason in ("empty_file", "not_a_video", "decode_error", "bad_json", "inverted_span"):
        assert reason in out, reason
    assert "scene_cut" in out and "fixed_window" in out and "not_probed" in out
    assert "Tightening screws with a screwdriver" in out

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
