"""JSON (not JSONL) annotation documents: streamed one array item at a time, in bounded memory."""

import json
import tracemalloc

import pytest

from lakehouse.core import quarantine as q
from lakehouse.ingest import annotation_files
from lakehouse.ingest.annotation_files import Record, read_records

CLIPS = [
    {"clip_id": "c1", "file": "dance.mp4", "start_s": 0, "end_s": 1.5, "caption": "a, b [c]"},
    {"clip_id": "c2", "file": "table.mp4", "start_s": 12345678901234, "end_s": -2.5e-7},
    {"clip_id": "c3", "caption": 'quote " and \\ backslash', "tags": [[], {}, [1, [2]]]},
    {"clip_id": "c4", "caption": "café → 日本 😀", "ok": True, "none": None},
]

NO_NAME = "Expecting property name enclosed in double quotes"


def _read(path) -> list[tuple[int, dict] | tuple[str, str]]:
    """The file's records as (index, values), its issues as (reason code, message)."""
    return [
        (item.line_number, item.values)
        if isinstance(item, Record)
        else (item.reason_code, item.message)
        for item in read_records(str(path), "json")
    ]


def _records(values: list[dict]) -> list[tuple[int, dict]]:
    return list(enumerate(values, start=1))


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Read 7 bytes at a time, so that items, keys, numbers and UTF-8 sequences straddle chunks."""
    monkeypatch.setattr(annotation_files, "JSON_CHUNK_BYTES", 7)


def test_json_array_yields_one_record_per_item(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(CLIPS))
    assert _read(path) == _records(CLIPS)


def test_json_empty_array_yields_nothing(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(" [ \n ] \n")
    assert _read(path) == []


def test_json_object_records_are_its_first_list_member(tmp_path):
    doc = {
        "version": 1,
        "meta": {"note": "not [a list], {really}", "nested": {"x": "],[", "y": {"z": "}"}}},
        "clips": CLIPS,
        "later": [{"clip_id": "ignored"}],
        "after": "kept out",
    }
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc, indent=2))
    assert _read(path) == _records(CLIPS)


def test_json_single_object_is_one_record(tmp_path):
    clip = {"clip_id": "c1", "file": "dance.mp4", "span": {"start": 0, "end": 2}}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(clip))
    assert _read(path) == [(1, clip)]


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("wrapped", [False, True])
def test_json_items_straddling_chunks_match_json_loads(tmp_path, tiny_chunks, indent, wrapped):
    doc = {"meta": {"a": "[,]"}, "clips": CLIPS * 3} if wrapped else CLIPS * 3
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc, indent=indent, ensure_ascii=indent is None), encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert _read(path) == _records(expected["clips"] if wrapped else expected)


@pytest.mark.parametrize("chunks", ["default", "tiny"])
def test_json_unicode_and_bom(tmp_path, monkeypatch, chunks):
    if chunks == "tiny":
        monkeypatch.setattr(annotation_files, "JSON_CHUNK_BYTES", 1)
    clips = [{"caption": "café 😀 日本語", "ключ": "значение"}, {"caption": "\u00e9\t\n"}]
    path = tmp_path / "a.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(clips, ensure_ascii=False).encode())
    assert _read(path) == _records(clips)


def test_json_truncated_file_keeps_records_before_the_cut(tmp_path, tiny_chunks):
    text = json.dumps(CLIPS, indent=2)
    cut = text.index('"c3"') + 2  # inside the third item's clip_id
    path = tmp_path / "a.json"
    path.write_text(text[:cut])
    with pytest.raises(json.JSONDecodeError) as whole:
        json.loads(text[:cut])
    assert whole.value.lineno > 10  # the error is well past the first chunks
    assert _read(path) == [
        *_records(CLIPS[:2]),
        (q.BAD_JSON, f"file is not valid JSON ({whole.value.msg} at line {whole.value.lineno})"),
    ]


def test_json_truncated_after_an_item(tmp_path, tiny_chunks):
    text = json.dumps(CLIPS[:2], indent=1)[:-2]  # "...}\n]" loses "\n]"
    path = tmp_path / "a.json"
    path.write_text(text)
    last_line = text.count("\n") + 1
    assert _read(path) == [
        *_records(CLIPS[:2]),
        (q.BAD_JSON, f"file is not valid JSON (Expecting ',' delimiter at line {last_line})"),
    ]


@pytest.mark.parametrize("chunks", ["default", "tiny"])
def test_json_invalid_utf8_mid_file_stops_after_the_records_before_it(
    tmp_path, monkeypatch, chunks
):
    if chunks == "tiny":
        monkeypatch.setattr(annotation_files, "JSON_CHUNK_BYTES", 7)
    good = json.dumps(CLIPS[:2]).encode()[:-1]  # without the closing "]"
    bad = b', {"clip_id": "c3", "caption": "caf\xe9"}, {"clip_id": "c4"}]'
    path = tmp_path / "a.json"
    path.write_bytes(good + bad)
    assert _read(path) == [
        *_records(CLIPS[:2]),
        (q.BAD_UTF8, "file is not valid UTF-8 (invalid continuation byte)"),
    ]


def test_json_cut_utf8_sequence_at_the_end_of_the_file(tmp_path, tiny_chunks):
    path = tmp_path / "a.json"
    path.write_bytes(json.dumps(CLIPS[:1]).encode()[:-1] + b', "\xe6\x97')
    assert _read(path) == [
        *_records(CLIPS[:1]),
        (q.BAD_UTF8, "file is not valid UTF-8 (unexpected end of data)"),
    ]


def test_json_non_object_items_and_lone_surrogates_are_row_issues(tmp_path, tiny_chunks):
    path = tmp_path / "a.json"
    path.write_text(
        '[{"clip_id": "c1"}, 5, "text", [1, 2], {"caption": "\\ud800"}, {"\\udfff": 1},'
        ' {"clip_id": "c7"}]'
    )
    assert _read(path) == [
        (1, {"clip_id": "c1"}),
        (q.BAD_ROW, "item 2 is not an object"),
        (q.BAD_ROW, "item 3 is not an object"),
        (q.BAD_ROW, "item 4 is not an object"),
        (q.BAD_UTF8, "item 5 holds a lone surrogate escape"),
        (q.BAD_UTF8, "item 6 holds a lone surrogate escape"),
        (7, {"clip_id": "c7"}),
    ]


@pytest.mark.parametrize(
    ("text", "records", "message"),
    [
        ('[{"a": 1}]\n\n x', 1, "Extra data at line 3"),
        ('[{"a": 1}] [{"b": 2}]', 1, "Extra data at line 1"),
        ('{"clips": [{"a": 1}]}\n]', 1, "Extra data at line 2"),
        ('[{"a": 1} {"b": 2}]', 1, "Expecting ',' delimiter at line 1"),
        ('[{"a": 1},\n]', 1, "Expecting value at line 2"),
        ('{"clips": [{"a": 1}], "more": [1, }', 1, "Expecting value at line 1"),
        ('{"meta": 1 "clips": []}', 0, "Expecting ',' delimiter at line 1"),
        ('{"meta": 1, clips: []}', 0, f"{NO_NAME} at line 1"),
        ("", 0, "Expecting value at line 1"),
        ("  \n", 0, "Expecting value at line 2"),
    ],
)
def test_json_syntax_errors_come_after_the_records_before_them(tmp_path, text, records, message):
    path = tmp_path / "a.json"
    path.write_text(text)
    read = _read(path)
    assert read[:-1] == _records([{"a": 1}])[:records]
    assert read[-1] == (q.BAD_JSON, f"file is not valid JSON ({message})")


def test_json_bare_scalar_is_not_records(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('"just a string"\n')
    assert _read(path) == [(q.BAD_ROW, "file is JSON but not an array or object")]


def test_json_nested_too_deeply_stops_the_file(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"a": 1}, ' + "[" * 100_000 + "]" * 100_000 + ', {"b": 2}]')
    assert _read(path) == [
        (1, {"a": 1}),
        (q.BAD_JSON, "file is JSON nested too deeply to read"),
    ]


def test_json_memory_stays_bounded_for_a_large_document(tmp_path):
    path = tmp_path / "big.json"
    caption = "a person walks across the room, picks up a cup [left hand] and drinks " * 4
    with path.open("w", encoding="utf-8") as out:
        out.write('{"version": 1, "clips": [\n')
        for i in range(140_000):
            clip = {"clip_id": f"c{i:07d}", "file": f"v{i % 97}.mp4", "start_s": i * 0.5}
            out.write(("," if i else "") + json.dumps({**clip, "caption": caption}) + "\n")
        out.write("]}\n")
    size = path.stat().st_size
    assert size > 45_000_000

    tracemalloc.start()
    try:
        count = sum(isinstance(item, Record) for item in read_records(str(path), "json"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 140_000
    assert peak < 20_000_000, f"peak {peak / 1e6:.1f} MB reading a {size / 1e6:.0f} MB file"
