import os
import shutil

import pytest

from lakehouse.core import quarantine as q
from lakehouse.core.errors import InputError, InputNotFoundError
from lakehouse.core.paths import local_path
from lakehouse.media.discover import discover, sniff_container


def _reasons(found):
    return {os.path.basename(i.input_uri): i.reason_code for i in found.issues}


def test_content_decides_not_extension(tmp_path, synthetic_videos):
    shutil.copy(synthetic_videos["ego"], tmp_path / "really_an_mp4.avi")
    shutil.copy(synthetic_videos["ego"], tmp_path / "no_extension")
    (tmp_path / "notes.mp4").write_text("just text")
    (tmp_path / "README.md").write_text("not a video, not reported")
    found = discover(tmp_path)
    names = sorted(c.relpath for c in found.candidates)
    assert names == ["no_extension", "really_an_mp4.avi"]
    assert _reasons(found) == {"notes.mp4": q.NOT_A_VIDEO}


def test_same_file_under_two_names_is_one_candidate(tmp_path, synthetic_videos):
    shutil.copy(synthetic_videos["ego"], tmp_path / "a.mp4")
    os.link(tmp_path / "a.mp4", tmp_path / "hardlink.mp4")
    os.symlink(tmp_path / "a.mp4", tmp_path / "symlink.mp4")
    found = discover(tmp_path)
    assert len(found.candidates) == 1
    assert sorted(found.candidates[0].aliases) == ["hardlink.mp4", "symlink.mp4"]


def test_symlink_loops_dangling_links_and_fifos_do_not_hang(tmp_path, synthetic_videos):
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(synthetic_videos["exo"], sub / "good.mp4")
    os.symlink(tmp_path, sub / "loop_to_parent")  # directory loop
    os.symlink(tmp_path / "self.mp4", tmp_path / "self.mp4")  # file loop
    os.symlink(tmp_path / "gone.mp4", tmp_path / "dangling.mp4")
    os.mkfifo(tmp_path / "pipe.mp4")
    found = discover(tmp_path)
    assert [c.relpath for c in found.candidates] == ["sub/good.mp4"]
    assert _reasons(found) == {
        "self.mp4": q.SYMLINK_LOOP,
        "dangling.mp4": q.DANGLING_SYMLINK,
        "pipe.mp4": q.NOT_REGULAR_FILE,
    }


def test_non_utf8_names_are_found_and_stored_losslessly(tmp_path, synthetic_videos):
    """A file (or folder) whose name is not UTF-8 is a video like any other: its path opens as
    the file system gives it, and the tables store a URI that gives back the exact bytes."""
    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp4")
    folder = os.path.join(os.fsencode(tmp_path), b"d\xffir")
    os.mkdir(folder)
    shutil.copy(synthetic_videos["ego"], bad)
    shutil.copy(synthetic_videos["exo"], os.path.join(folder, b"100%.mp4"))
    shutil.copy(synthetic_videos["cuts"], tmp_path / "fine.mp4")
    found = discover(tmp_path)
    assert found.issues == []
    by_name = {c.name: c for c in found.candidates}
    assert set(by_name) == {"caf%E9.mp4", "d%FFir/100%25.mp4", "fine.mp4"}
    fine = by_name["fine.mp4"]
    assert fine.uri == fine.path == str(tmp_path / "fine.mp4")  # a UTF-8 name stays as it is
    for name in ("caf%E9.mp4", "d%FFir/100%25.mp4"):
        cand = by_name[name]
        assert cand.uri.startswith("file://") and cand.uri.encode("utf-8")  # storable
        assert os.fsencode(local_path(cand.uri)) == os.fsencode(cand.path)  # the exact bytes
        with open(local_path(cand.uri), "rb") as handle:
            assert handle.read(12)[4:8] == b"ftyp"
    assert os.fsencode(by_name["caf%E9.mp4"].path) == bad


def test_empty_files_and_errors(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "empty.txt").write_bytes(b"")
    assert _reasons(discover(tmp_path)) == {"empty.mp4": q.EMPTY_FILE}
    with pytest.raises(InputNotFoundError):
        discover(tmp_path / "missing")
    with pytest.raises(InputError):
        discover(tmp_path / "empty.mp4")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x00\x00\x00\x20ftypisom" + b"\0" * 20, "isobmff"),
        (b"\x1a\x45\xdf\xa3" + b"\0" * 20, "matroska"),
        (b"RIFF\0\0\0\0AVI LIST", "avi"),
        (b"OggS" + b"\0" * 20, "ogg"),
        (b"hello world, this is text", None),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, None),
    ],
)
def test_sniff_container(head, kind):
    assert sniff_container(head) == kind
