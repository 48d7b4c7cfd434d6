"""Property-based tests (Hypothesis): generated inputs against the walls and parsers.

Each test states one property and lets Hypothesis search for a counterexample; the profiles
(``ci`` by default, ``deep`` for long runs) are registered in ``tests/conftest.py`` and every
test scales its example count from the profile's ``max_examples`` (:func:`examples`).

1. **Generated SQL from DuckDB's own function lists** (``test_generated_table_function_calls``,
   ``test_generated_scalar_function_calls``). The names come from ``duckdb_functions()`` of a
   plain DuckDB connection (table functions and table macros; scalar functions, macros and
   aggregates, plus the guard's refused ones), called with arguments of the parameter types
   DuckDB lists for them (so most calls bind and run) that name files, URLs, settings and
   environment variables (``'/etc/passwd'``, ``'~'``, ``'home_directory'``, a path the query
   would write…), nested calls and scalar subqueries over table calls, spelled in
   upper case, quoted or schema-qualified, nested in CTEs, subqueries, joins, ``EXPLAIN``,
   ``DESCRIBE``, ``CALL`` and ``PRAGMA``, and run in one locked-down :class:`Session`. Property:
   a query calling a table function outside ``guard.ALLOWED_TABLE_FUNCTIONS`` is refused
   (``QueryRefusedError``) before it runs; whatever runs, and every error message, shows nothing
   read from a file, a setting or the environment: not the home folder, nothing under ``/etc/``
   the query did not spell itself (``lower('/etc/passwd')`` echoes its argument, which is no
   read), not the lakehouse root's parent folder, not the value of an environment variable set
   for the test, not a line of ``/etc/passwd`` nor the content of a secret file whose path the
   query names (the session's own temporary folder ``session.tmp`` is the one folder allowed);
   no file appears where a query tries to write; errors are one line, of the query error types
   only; and the session answers as before after every query.
2. **Byte flips, truncations and splices of a real preview clip**
   (``test_mutated_clips_are_ingested_or_quarantined``, slow). The smallest HumanNet preview clip
   is damaged (bytes XOR-ed at positions, cut at a length, a chunk of another clip spliced in;
   at times no edit at all) and ingested beside an intact copy of another clip (``lh.ingest``,
   no Dagster, tight worker limits). Property: no crash; the intact clip always lands in
   ``videos`` with its clips; the damaged one lands in ``videos`` or in ``quarantine`` with a
   reason code of :mod:`lakehouse.core.quarantine`, never neither.
3. **Generated ``--where`` predicates** (``test_generated_where_predicates``). Comparisons,
   ``AND``/``OR``/``NOT``, ``IN``, ``BETWEEN``, ``IS NULL``, ``LIKE``, function calls, casts, and
   garbage tokens (quotes, semicolons, comments, parentheses) over ``clip_facts`` columns of a
   small built lakehouse whose values include nulls, quotes, ``%``/``_``, unicode and mixed case,
   and whose vector tables carry scalar indexes over part of their rows. Property:
   ``compile_where`` raises a :class:`LakehouseError` with a one-line message, or returns a
   filter that selects exactly the clips DuckDB selects with ``select clip_id from clip_facts
   where (…)``: a Lance expression, run on each published vector table with the model term as
   search runs it, gives the SQL result restricted to the clips with vectors in that table (and
   Lance's row count, which search plans by, agrees with its scan); a set of clip ids equals
   the SQL result.
4. **Generated subset files** (``test_generated_subset_files``). Header lines (``-- @params``,
   ``@semantic``, ``@sample``, ``@seed``, ``@balance_by``, unknown keys) with right, wrong and
   garbage TOML values, description lines, valid/invalid/empty bodies, under good and bad file
   names. Property: ``parse_subset`` returns a :class:`SubsetDefinition` whose settings have the
   documented types (what evaluation will read), or raises ``InputError`` with a one-line
   message naming the file; never another exception.
5. **Generated configuration files** (``test_generated_configuration_files``). TOML documents of
   the known sections and keys of :class:`Config` with values of the right and wrong types,
   unknown keys, nested garbage, a ``[lakehouse]`` wrapper, and bytes that are not UTF-8.
   Property: ``Config.load`` returns a :class:`Config` whose every setting has its declared type
   (an ``int`` where a ``float`` goes is that float), or raises ``ConfigError`` with a one-line
   message; never another exception.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
import types
import typing
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from lakehouse.api import Lakehouse
from lakehouse.core import quarantine, schemas
from lakehouse.core.config import Config
from lakehouse.core.errors import (
    ConfigError,
    InputError,
    LakehouseError,
    QueryError,
    QueryRefusedError,
    QueryTimeoutError,
)
from lakehouse.query.guard import ALLOWED_TABLE_FUNCTIONS, REFUSED_FUNCTIONS, REFUSED_RELATIONS
from lakehouse.query.session import Session
from lakehouse.search.filters import compile_where
from lakehouse.search.indexes import refresh_indexes
from lakehouse.subsets.files import NAME, SETTINGS, SubsetDefinition, body, parse_subset


def examples(share: float, minimum: int = 4) -> int:
    """This test's example count: ``share`` of the profile's ``max_examples``."""
    return max(minimum, round(settings.default.max_examples * share))


FIXTURES_REUSED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, f"{type(exc).__name__} not one line: {message!r}"
    return message


# == 1. generated SQL from DuckDB's own function lists ========================================

with duckdb.connect() as _con:
    _FUNCTIONS = _con.execute(
        "select function_name, function_type, parameter_types from duckdb_functions()"
    ).fetchall()
_KINDS: dict[str, set[str]] = {}
# each function's signatures (DuckDB's parameter types), to draw arguments it can bind
SIGNATURES: dict[str, list[tuple[str | None, ...]]] = {}
for _name, _kind, _types in _FUNCTIONS:
    if re.fullmatch(r"[a-z_][a-z0-9_]*", _name):  # operators (``+``, ``~~``) are no calls
        _KINDS.setdefault(_kind, set()).add(_name)
        SIGNATURES.setdefault(_name, []).append(tuple(_types or ()))
TABLE_FUNCTIONS = sorted(_KINDS.get("table", set()) | _KINDS.get("table_macro", set()))
SCALAR_FUNCTIONS = sorted(
    _KINDS.get("scalar", set())
    | _KINDS.get("macro", set())
    | _KINDS.get("aggregate", set())
    | REFUSED_FUNCTIONS  # getenv() is the DuckDB shell's, not in this list
)
PRAGMAS = sorted(_KINDS.get("pragma", set()))
SECRET_VALUE = "lakehouse-test-secret-7f3a9c"  # the test's environment variable's value
SECRET_TOKEN = "secret-file-token-51d2e8"  # the content of a file the queries name
PASSWD_LINE = (
    Path("/etc/passwd").read_text().splitlines()[0] if Path("/etc/passwd").is_file() else ""
)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclasses.dataclass
class Walls:
    """The session every generated query runs in, and what it must never show."""

    session: Session
    canary: Path  # a folder queries try to write into: it stays empty
    secret_file: Path  # a file whose content queries try to read
    markers: tuple[str, ...]  # text that can only come from a read

    def literals(self) -> dict[str, list[str]]:
        """SQL literals by the kind of parameter they fit (``any``: all of them)."""
        text = [
            "'/etc/passwd'",
            "'/etc/'",
            "'/etc/*'",
            "'file:///etc/passwd'",
            _quoted(str(self.secret_file)),
            _quoted(str(self.canary / "out.csv")),
            _quoted(str(self.canary / "out.parquet")),
            "'/tmp/x'",
            "'https://example.com/x'",
            "'s3://bucket/x'",
            "'~'",
            "'~/x'",
            "'home_directory'",
            "'temp_directory'",
            "'secret_directory'",
            "'extension_directory'",
            "'HOME'",
            "'LAKEHOUSE_TEST_SECRET'",
            "'$HOME'",
            "'*'",
            "'x'",
            "''",
        ]
        kinds = {
            "text": text,
            "int": ["1", "0", "-1", "2"],
            "number": ["1.5", "0", "1"],
            "bool": ["true", "false"],
            "time": ["DATE '2020-01-01'", "TIMESTAMP '2020-01-01 00:00:00'", "TIME '01:02:03'"],
            "interval": ["INTERVAL 1 DAY"],
            "list": ["['/etc/passwd', '~']", f"[{_quoted(str(self.secret_file))}]", "[1, 2]", "[]"],
            "struct": ["{'path': '/etc/passwd'}"],
            "map": ["MAP {'path': '/etc/passwd'}"],
            "null": ["NULL"],
        }
        kinds["any"] = [literal for values in kinds.values() for literal in values]
        return kinds


def _kind_of(parameter: str | None) -> str:
    """Which literals fit a DuckDB parameter type."""
    name = (parameter or "ANY").upper()
    if name.endswith("]"):
        return "list"
    if name in ("VARCHAR", "JSON", "BLOB", "VARIANT"):
        return "text"
    if "INT" in name:
        return "int"
    if name in ("DOUBLE", "FLOAT", "DECIMAL"):
        return "number"
    if name == "BOOLEAN":
        return "bool"
    if name.startswith(("DATE", "TIME")):
        return "time"
    if name == "INTERVAL":
        return "interval"
    if name.startswith("STRUCT"):
        return "struct"
    if name.startswith("MAP"):
        return "map"
    return "any"


@pytest.fixture
def walls(lh, tmp_path_factory, monkeypatch) -> typing.Iterator[Walls]:
    lh.upsert("sources", [{"source": "a", "uri": "/a", "annotation_files": []}])
    monkeypatch.setenv("LAKEHOUSE_TEST_SECRET", SECRET_VALUE)
    canary = tmp_path_factory.mktemp("canary")  # outside the lakehouse root's parent
    secret_file = tmp_path_factory.mktemp("secret") / "secret.txt"
    secret_file.write_text(f"{SECRET_TOKEN}\n")
    markers = (
        os.path.expanduser("~"),
        os.path.dirname(lh.root),
        SECRET_VALUE,
        SECRET_TOKEN,
        *([PASSWD_LINE] if PASSWD_LINE else []),
    )
    with Session(lh) as session:
        yield Walls(session, canary, secret_file, markers)


def _shown(table: pa.Table) -> str:
    """Every value of a result as text (columns Python cannot hold are printed by Arrow)."""
    try:
        return str(table.to_pylist())
    except (OverflowError, ValueError, pa.ArrowException):
        return " ".join(
            str(table.schema.field(i)) + table.column(i).to_string(window=10**6)
            for i in range(table.num_columns)
        )


def _spelled(name: str, style: int) -> str:
    """A function name as a query may spell it."""
    return [
        name,
        name.upper(),
        f'"{name}"',
        f"main.{name}",
        f"system.main.{name}",
        f'"{name.title()}"',
    ][style]


@st.composite
def _arguments(draw, name: str, depth: int, tables: list[str], literals) -> str:
    """Arguments for ``name``: mostly of one of its signatures (so that it binds and runs),
    else zero to three of anything; some are scalar calls or scalar subqueries over table
    calls themselves."""
    signatures = SIGNATURES.get(name)
    if signatures and draw(st.integers(0, 3)):
        kinds = [_kind_of(t) for t in draw(st.sampled_from(signatures))]
    else:
        kinds = ["any"] * draw(st.integers(0, 3))
    out = []
    for kind in kinds:
        choice = draw(st.integers(0, 9)) if depth > 0 else 0
        if choice <= 7:
            out.append(draw(st.sampled_from(literals[kind])))
        elif choice == 8:
            out.append(draw(_scalar_call(depth - 1, tables, literals)))
        else:
            out.append(f"(select * from {draw(_table_call(depth - 1, tables, literals))} limit 1)")
    return ", ".join(out)


@st.composite
def _scalar_call(draw, depth: int, tables: list[str], literals) -> str:
    name = draw(st.sampled_from(SCALAR_FUNCTIONS))
    spelled = _spelled(name, draw(st.integers(0, 5)))
    return f"{spelled}({draw(_arguments(name, depth, tables, literals))})"


@st.composite
def _table_call(draw, depth: int, tables: list[str], literals) -> str:
    """A table function call; its name is appended to ``tables``."""
    name = draw(
        st.one_of(
            st.sampled_from(TABLE_FUNCTIONS), st.sampled_from(sorted(ALLOWED_TABLE_FUNCTIONS))
        )
    )
    tables.append(name)
    spelled = _spelled(name, draw(st.integers(0, 5)))
    args = draw(_arguments(name, depth, tables, literals))
    if draw(st.integers(0, 3)) == 0 and name not in ALLOWED_TABLE_FUNCTIONS:
        named = draw(st.sampled_from(["header = true", "format = 'csv'", "filename = true"]))
        args = f"{args}, {named}" if args else named
    return f"{spelled}({args})"


TABLE_TEMPLATES = [
    "select * from {t}",
    "from {t}",
    "select * from {t} as x",
    "with t as (select * from {t}) select * from t",
    "with a as (select 1 as one), b as (select * from {t}) select * from a, b",
    "select * from (select * from {t}) as s",
    "select (select count(*) from {t}) as n",
    "select * from sources where exists (select 1 from {t})",
    "select * from range(1) as r join {t} on true",
    "select * from range(1) as r, lateral (select * from {t}) as l",
    "select * from sources union all by name select * from {t}",
    "explain select * from {t}",
    "explain analyze select * from {t}",
    "describe select * from {t}",
    "summarize select * from {t}",
    "select count(*) as n from clip_facts where clip_id in (select * from {t})",
    "call {t}",
]
SCALAR_TEMPLATES = [
    "select {s} as v",
    "select {s} as v from sources",
    "select {s} as v from range(1)",
    "with t as (select {s} as v) select * from t",
    "select * from (select {s} as v) as s",
    "select count(*) as n from clip_facts where {s} is not null",
    "select * from sources where {s} is null",
    "select source, {s} as v from sources group by all",
    "select (select {s}) as v",
    "explain select {s} as v",
]


@st.composite
def _generated_query(draw, walls: Walls, kind: str) -> tuple[str, list[str]]:
    """A query and the table functions it calls."""
    literals = walls.literals()
    tables: list[str] = []
    if kind == "table":
        pick = draw(st.integers(0, 19))
        if pick == 0:  # a PRAGMA statement: refused whatever it names
            pragma = f"pragma {draw(st.sampled_from(PRAGMAS))}"
            return pragma, [pragma]
        if pick == 1:  # a built-in view of settings or logs, named like a table
            relation = draw(st.sampled_from(sorted(REFUSED_RELATIONS)))
            tables.append(relation)
            return f"select * from {_spelled(relation, draw(st.integers(0, 5)))}", tables
        template = draw(st.sampled_from(TABLE_TEMPLATES))
        call = draw(_table_call(1, tables, literals))
        return template.format(t=call), tables
    template = draw(st.sampled_from(SCALAR_TEMPLATES))
    return template.format(s=draw(_scalar_call(2, tables, literals))), tables


def _leaked(walls: Walls, text: str, query: str) -> list[str]:
    """The markers of a read in ``text``, the session's own folder aside. What the query spelled
    itself may come back (``lower('/etc/passwd')`` reads nothing): ``/etc/`` counts only when
    the query names nothing under ``etc``."""
    outside = text.replace(walls.session.tmp, "")
    found = [m for m in walls.markers if m and m in outside and m not in query]
    if "/etc/" in outside and "etc" not in query.lower():
        found.append("/etc/")
    return found


def _run_generated(walls: Walls, query: str, tables: list[str]) -> None:
    note(query)
    session = walls.session
    disallowed = [t for t in tables if t not in ALLOWED_TABLE_FUNCTIONS]
    try:
        result = session.query(query, timeout_s=10)
    except QueryRefusedError as exc:
        shown = one_line(exc)
        event("refused")
    except (QueryError, QueryTimeoutError) as exc:
        shown = one_line(exc)
        event(type(exc).__name__)
        assert not disallowed, f"{disallowed} not refused but failed: {shown}"
    else:
        assert not disallowed, f"{disallowed} ran: {query}"
        shown = _shown(result)
        event("ran")
    assert not _leaked(walls, shown, query), (query, shown[:2000])
    assert not os.listdir(walls.canary), f"{query} wrote {os.listdir(walls.canary)}"
    # the session is as it was
    assert session.query("select count(*) as n from sources").to_pylist() == [{"n": 1}]
    assert session.query("select count(*) as n from clip_facts").to_pylist() == [{"n": 0}]


@settings(max_examples=examples(2.5), suppress_health_check=FIXTURES_REUSED)
@given(data=st.data())
def test_generated_table_function_calls(walls, data):
    query, tables = data.draw(_generated_query(walls, "table"), label="query")
    _run_generated(walls, query, tables)


@settings(max_examples=examples(2.5), suppress_health_check=FIXTURES_REUSED)
@given(data=st.data())
def test_generated_scalar_function_calls(walls, data):
    query, tables = data.draw(_generated_query(walls, "scalar"), label="query")
    _run_generated(walls, query, tables)


def test_the_function_lists_are_duckdbs_own():
    """The generators above draw from what this DuckDB really has (a renamed or dropped list
    would leave the properties testing nothing)."""
    assert {"read_text", "read_csv", "glob", "duckdb_settings", "query"} <= set(TABLE_FUNCTIONS)
    assert {"current_setting", "lower", "string_agg"} <= set(SCALAR_FUNCTIONS)
    assert len(TABLE_FUNCTIONS) > 50 and len(SCALAR_FUNCTIONS) > 500


# == 2. byte flips, truncations and splices of a real preview clip ============================

QUARANTINE_REASONS = {
    value for key, value in vars(quarantine).items() if key.isupper() and isinstance(value, str)
}


@pytest.fixture(scope="module")
def preview_clips(preview_dir) -> tuple[bytes, bytes]:
    """The smallest preview clip (to damage) and the next smallest (kept intact)."""
    clips = sorted(preview_dir.rglob("*.mp4"), key=lambda p: (p.stat().st_size, p.name))
    assert len(clips) >= 2
    return clips[0].read_bytes(), clips[1].read_bytes()


@st.composite
def _mutations(draw, size: int, other_size: int) -> list[tuple]:
    """Up to three edits: XOR a byte, cut the file, splice in a chunk of the other clip.
    Positions favour the first and last 4 KiB, where the container's boxes lie."""
    position = st.one_of(
        st.integers(0, min(4095, size - 1)),
        st.integers(max(0, size - 4096), size - 1),
        st.integers(0, size - 1),
    )
    edit = st.one_of(
        st.tuples(st.just("flip"), position, st.integers(1, 255)),
        st.tuples(st.just("truncate"), st.one_of(position, st.integers(0, 64))),
        st.tuples(
            st.just("splice"),
            position,
            st.integers(0, other_size - 1),
            st.integers(1, 4096),
            st.booleans(),  # overwrite (True) or insert
        ),
    )
    return draw(st.lists(edit, max_size=3))  # none: the clip intact


def _mutate(data: bytes, other: bytes, edits: list[tuple]) -> bytes:
    out = bytearray(data)
    for edit in edits:
        if edit[0] == "flip" and out:
            out[edit[1] % len(out)] ^= edit[2]
        elif edit[0] == "truncate":
            del out[edit[1] :]
        elif edit[0] == "splice":
            _, at, start, length, overwrite = edit
            chunk = other[start : start + length]
            out[at : at + (len(chunk) if overwrite else 0)] = chunk
    return bytes(out)


@pytest.mark.slow
@settings(max_examples=examples(0.08), suppress_health_check=FIXTURES_REUSED)
@given(data=st.data())
def test_mutated_clips_are_ingested_or_quarantined(config, tmp_path, preview_clips, data):
    original, sibling = preview_clips
    edits = data.draw(_mutations(len(original), len(sibling)), label="edits")
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    (folder / "corpus").mkdir()
    (folder / "corpus" / "mutated.mp4").write_bytes(_mutate(original, sibling, edits))
    (folder / "corpus" / "intact.mp4").write_bytes(sibling)
    limits = dataclasses.replace(
        config.ingest, probe_timeout_s=20, probe_max_timeout_s=20, worker_memory_mb=1500
    )
    lh = Lakehouse(dataclasses.replace(config, ingest=limits).with_root(folder / "lakehouse"))

    lh.ingest(folder / "corpus", source="fuzz")  # never raises

    videos = lh.sql("select video_id, relpath, aliases from videos").to_pylist()
    quarantined = lh.sql("select input_uri, stage, reason_code from quarantine").to_pylist()
    note(f"videos={videos} quarantine={quarantined}")

    def named(row, name):
        return row["relpath"] == name or any(a.endswith(name) for a in row["aliases"] or [])

    intact = [v for v in videos if named(v, "intact.mp4")]
    assert len(intact) == 1, "the intact clip was not ingested"
    clips = lh.sql("select count(*) as n from clips where video_id = ?", [intact[0]["video_id"]])
    assert clips.to_pylist()[0]["n"] >= 1, "the intact clip has no clips"
    assert not [q for q in quarantined if q["input_uri"].endswith("intact.mp4")]
    assert {q["reason_code"] for q in quarantined} <= QUARANTINE_REASONS
    ingested = any(named(v, "mutated.mp4") for v in videos)
    refused = [q for q in quarantined if q["input_uri"].endswith("mutated.mp4")]
    event(
        "ingested" if ingested else f"quarantined: {refused[0]['reason_code']}" if refused else "?"
    )
    assert ingested or refused, "the damaged clip is neither in videos nor in quarantine"
    if ingested:  # a file the videos stage took is not one it refused
        assert not [q for q in refused if q["stage"] in ("discover", "videos")], refused


# == 3. generated --where predicates ===========================================================

VIEWPOINTS = ["ego", "exo", None, "Ego", "o'brien"]
SOURCES = ["a", "b", "c d"]
DURATIONS = [None, 0.0, 2.0, 4.5, 10.0, 100.25, 3.0]
TAXA = ["Sports", "Daily Life", None, "100%", "a_b", "ünï", ""]
QUALITY = [None, 0.0, 0.5, 1.0]
CAPTIONS = [
    "a person dancing",
    "someone's cooking",
    "50% off",
    "under_score",
    "",
    None,
    "ÆØÅ",
    "tab\there",
    "back\\slash",
    "Dancing",
]
MODEL_ID = "test:model:sha256-000000000000"
CLIP_COUNT = 40


def _clip_rows() -> list[dict]:
    """Clips whose columns take awkward values: nulls, quotes, % and _, unicode, mixed case."""
    rows = []
    for i in range(CLIP_COUNT):
        duration, start = DURATIONS[i % len(DURATIONS)], float(i % 4)
        rows.append(
            {
                "clip_id": f"v{i % 7:02d}-{i:04d}",
                "video_id": f"v{i % 7:02d}",
                "source": SOURCES[i % 3],
                "uri": f"/videos/{i}.mp4",
                "probe_status": "ok" if i % 6 else "not_probed",
                "start_s": start,
                "end_s": None if duration is None else start + duration,
                "duration_s": duration,
                "start_frame": i * 10,
                "end_frame": i * 10 + 50,
                "fps": [25.0, 30.0, None][i % 3],
                "viewpoint": VIEWPOINTS[i % 5],
                "segmentation": "annotation",
                "external_id": f"ext_{i}",
                "taxonomy_l1": TAXA[i % 7],
                "taxonomy_l2": TAXA[(i * 3) % 7],
                "taxonomy_l3": TAXA[(i * 5) % 7],
                "quality_score": QUALITY[i % 4],
                "annotation_count": i % 3,
                "short_caption": CAPTIONS[i % len(CAPTIONS)],
                "long_caption": CAPTIONS[(i + 3) % len(CAPTIONS)],
                "width": [640, 1920, None][i % 3],
                "height": [480, 1080, None][i % 3],
                "has_audio": [True, False, None][i % 3],
            }
        )
    return rows


def _vector_rows(clips: list[dict], table: str, dim: int, rng: np.random.Generator) -> list[dict]:
    """Vectors for most clips (some have none), with the clip's metadata as the pipeline copies
    it; the caption table holds one or two rows per clip."""
    out = []
    for clip in clips:
        n = int(clip["clip_id"][-4:])
        if (table == schemas.TEXT_TABLE and n % 5 == 4) or (
            table == schemas.CLIP_TABLE and n % 3 == 0
        ):
            continue
        fields = ["short_caption", "long_caption"][: 1 + n % 2]
        for field in fields if table == schemas.TEXT_TABLE else [None]:
            vector = rng.normal(size=dim).astype("float32")
            row = {
                "embedding_id": f"{table}-{clip['clip_id']}-{field}",
                "clip_id": clip["clip_id"],
                "model_id": MODEL_ID,
                "vector": (vector / np.linalg.norm(vector)).tolist(),
                **{name: clip[name] for name in schemas.SEARCH_METADATA_NAMES},
            }
            if table == schemas.TEXT_TABLE:
                row |= {"field": field, "text": clip[field] or "-", "text_hash": "h"}
            else:
                row |= {"keyframe_ids": [], "keyframe_vectors": []}
            out.append(row)
    return out


@pytest.fixture(scope="module")
def where_lakehouse(tmp_path_factory) -> Lakehouse:
    """A small lakehouse: clips, caption and visual vector tables with scalar indexes over the
    first three quarters of their rows (the last quarter is scanned unindexed)."""
    lh = Lakehouse(Config.load(root=tmp_path_factory.mktemp("where") / "lakehouse", env={}))
    rng, dim = np.random.default_rng(0), 4
    table_schemas = {
        schemas.TEXT_TABLE: schemas.text_embeddings_schema(dim),
        schemas.CLIP_TABLE: schemas.clip_embeddings_schema(dim),
    }
    rows = _clip_rows()
    for part in (rows[: CLIP_COUNT * 3 // 4], rows[CLIP_COUNT * 3 // 4 :]):
        lh.upsert("clips", part)
        for table, schema in table_schemas.items():
            lh.upsert(table, _vector_rows(part, table, dim, rng), schema=schema)
        if part[0] is rows[0]:
            refresh_indexes(lh)
    return lh


NUMBER_COLUMNS = [
    "duration_s",
    "start_s",
    "end_s",
    "quality_score",
    "fps",
    "annotation_count",
    "keyframe_count",
    "width",
    "height",
    "start_frame",
]
TEXT_COLUMNS = [
    "viewpoint",
    "source",
    "taxonomy_l1",
    "taxonomy_l2",
    "taxonomy_l3",
    "short_caption",
    "long_caption",
    "clip_id",
    "video_id",
    "uri",
    "external_id",
    "probe_status",
    "resolved_viewpoint",
]
BOOL_COLUMNS = ["has_audio", "text_truncated", "is_cluster_representative"]
NUMBERS = ["0", "1", "2", "2.0", "4.5", "-1", "100.25", "1e3", "0.1", "1e400", "-0.0", "'4'"]
TEXTS = [
    "'ego'",
    "'exo'",
    "'Ego'",
    "'o''brien'",
    "'Sports'",
    "'100%'",
    "'a_b'",
    "'ünï'",
    "''",
    "'a person dancing'",
    "'c d'",
    "'v00-0000'",
    "'x'",
    "'back\\slash'",
    "E'eg\\x6f'",
    "$$ego$$",
]
PATTERNS = ["'%'", "'e%'", "'%o'", "'_go'", "'%\\_%'", "'a_b'", "'%\\%%'", "''", "'%''%'", "'EGO'"]
COMPARISONS = ["=", "==", "<>", "!=", "<", ">", "<=", ">="]
GARBAGE = [";", "'", '"', ")", "(", "--", "/*", "*/", "$$", "\\", "?", "::", ",", "[", "`"]
GARBAGE += ["union select 1", "select", "from clips", "or 1=1 --", "e'", "%", "NOT", "and"]


@st.composite
def _atom(draw) -> str:
    pick = draw(st.integers(0, 19))
    column = draw(
        st.sampled_from(NUMBER_COLUMNS if pick < 10 else TEXT_COLUMNS if pick < 19 else ["nope"])
    )
    typed = NUMBERS if column in NUMBER_COLUMNS else TEXTS
    literal = st.one_of(
        st.sampled_from(typed),
        st.sampled_from(typed),
        st.sampled_from([*NUMBERS, *TEXTS, "NULL", "true"]),
    )
    shape = draw(st.integers(0, 11))
    negated = "not " if draw(st.booleans()) else ""
    if shape <= 2:
        left, right = column, draw(literal)
        if shape == 2:
            left, right = right, left
        return f"{left} {draw(st.sampled_from(COMPARISONS))} {right}"
    if shape == 3:
        values = ", ".join(draw(st.lists(literal, min_size=1, max_size=4)))
        return f"{column} {negated}in ({values})"
    if shape == 4:
        return f"{column} {negated}between {draw(literal)} and {draw(literal)}"
    if shape == 5:
        return f"{column} is {negated}null"
    if shape == 6:
        like = draw(st.sampled_from(["like", "ilike"]))
        return f"{column} {negated}{like} {draw(st.sampled_from(PATTERNS))}"
    if shape == 7:
        function = draw(st.sampled_from(["lower", "upper", "length", "abs", "round", "trim"]))
        return f"{function}({column}) {draw(st.sampled_from(COMPARISONS))} {draw(literal)}"
    if shape == 8:
        target = draw(st.sampled_from(["int", "varchar", "double", "bigint"]))
        cast = draw(st.sampled_from([f"cast({column} as {target})", f"{column}::{target}"]))
        return f"{cast} {draw(st.sampled_from(COMPARISONS))} {draw(literal)}"
    if shape == 9:
        return f"coalesce({column}, {draw(literal)}) = {draw(literal)}"
    if shape == 10:
        return f"{negated}{draw(st.sampled_from(BOOL_COLUMNS))}"
    return draw(st.sampled_from(["true", "false", "null", "1 = 1", "1", "viewpoint = ?"]))


_PREDICATES = st.recursive(
    _atom(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" and ", " or ", " AND ", " Or "]), inner).map("".join),
        inner.map(lambda p: f"not ({p})"),
        inner.map(lambda p: f"({p})"),
    ),
    max_leaves=5,
)


@st.composite
def _where(draw) -> str:
    predicate = draw(_PREDICATES)
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 2]))):  # garbage, at times
        at = draw(st.integers(0, len(predicate)))
        predicate = f"{predicate[:at]} {draw(st.sampled_from(GARBAGE))} {predicate[at:]}"
    return predicate


def _with_vectors(lh: Lakehouse, table: str, expression: str | None = None) -> set[str]:
    """The clips of the published vector ``table`` whose rows pass ``expression``; Lance's count
    of those rows (what search plans by) agrees with the scan."""
    ds = lh.published_dataset(table)
    rows = ds.to_table(columns=["clip_id"], filter=expression)
    assert ds.count_rows(expression) == rows.num_rows, (table, expression)
    return set(rows.column("clip_id").to_pylist())


@settings(max_examples=examples(1.5), suppress_health_check=FIXTURES_REUSED)
@given(where=_where())
def test_generated_where_predicates(where_lakehouse, where):
    lh = where_lakehouse
    try:
        flt = compile_where(lh, where)
    except LakehouseError as exc:
        one_line(exc)
        event(f"refused: {type(exc).__name__}")
        return
    selected = lh.sql(f"select clip_id from clip_facts where ({where})").column("clip_id")
    expected = set(selected.to_pylist())
    if flt.expression is not None:
        event("Lance expression")
        assert flt.clip_ids is None
        for table in (schemas.TEXT_TABLE, schemas.CLIP_TABLE):
            got = _with_vectors(lh, table, flt.lance(MODEL_ID))  # as search filters the table
            want = expected & _with_vectors(lh, table)
            assert got == want, (table, sorted(got - want), sorted(want - got))
    else:
        event("DuckDB clip ids")
        assert flt.clip_ids == expected


# == 4. generated subset files =================================================================


def _toml(value) -> str:
    """A Python value as a TOML value (inline tables for dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-3, 100),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["caption", "visual", "source", "viewpoint", "Bad Name", "30"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(["text", "mode", "min_score", "top_k"]), st.text(max_size=6)),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=6,
)
_SEMANTIC = st.fixed_dictionaries(
    {"text": st.one_of(st.text(max_size=20), st.text(max_size=20), _SCALARS)},
    optional={
        "mode": st.one_of(st.sampled_from(["caption", "visual", "caption", "hybrid"]), _SCALARS),
        "min_score": st.one_of(st.floats(-1, 1), st.floats(-1, 1), _SCALARS),
        "top_k": st.one_of(st.integers(-2, 50), st.integers(0, 50), _SCALARS),
        "extra": _SCALARS,
    },
)
_SETTING_VALUES = {  # mostly the right type, at times anything
    "params": st.one_of(
        st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), _SCALARS, max_size=3),
        _VALUES,
    ),
    "semantic": st.one_of(_SEMANTIC, _SEMANTIC, _VALUES),
    "sample": st.one_of(st.integers(-2, 1000), st.integers(0, 50), _SCALARS),
    "seed": st.one_of(st.integers(-2, 2**40), st.integers(0, 50), _SCALARS),
    "balance_by": st.one_of(st.sampled_from(["source", "viewpoint", "Bad Name", ""]), _SCALARS),
}


@st.composite
def _header_line(draw) -> str:
    shape = draw(st.integers(0, 11))
    if shape <= 5 or shape >= 10:  # a setting with a TOML value
        key = draw(st.sampled_from(sorted(SETTINGS)))
        value = _toml(draw(_SETTING_VALUES[key]))
    elif shape == 6:  # an unknown setting, or a garbage value
        key = draw(st.sampled_from([*sorted(SETTINGS), "limit", "sampl", "x"]))
        value = draw(st.text(max_size=20))
    elif shape == 7:
        return draw(st.sampled_from(["--", "-- one row per clip", "", "--@", "-- @: 1"]))
    elif shape == 8:
        return "-- " + draw(st.text(max_size=30))
    else:
        return "-- {name}: the dbt-style opening line"
    spacing = draw(st.sampled_from(["-- @{k}: {v}", "--@{k}:{v}", "--   @{k} :  {v}  "]))
    return spacing.format(k=key, v=value)


BODIES = [
    "select clip_id from clip_facts where duration_s > $min_duration_s",
    "select clip_id from clip_facts;",
    "select clip_id, source from clip_facts order by clip_id",
    "selec clip_id frm clip_facts",
    "",
    ";",
    " ;; \n",
    "-- only a comment",
    "select 1; select 2",
    "with x as (select * from read_text('/etc/passwd')) select * from x",
]


@st.composite
def _subset_file(draw) -> tuple[str, str]:
    bad = st.one_of(
        st.text(alphabet="abcXYZ019_-. ü\t\n", max_size=12),
        st.sampled_from(["a" * 64, "1abc", "Abc", "clip-facts", "_x", "ego.v2"]),
    )
    good = st.from_regex(r"[a-z][a-z0-9_]{0,62}", fullmatch=True)
    name = draw(good if draw(st.integers(0, 4)) else bad)
    lines = draw(st.lists(_header_line(), max_size=5))
    text = "\n".join([*lines, draw(st.one_of(st.sampled_from(BODIES), st.text(max_size=40)))])
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return name, text.replace("{name}", name).replace("\n", newline)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@settings(max_examples=examples(4.0), suppress_health_check=FIXTURES_REUSED)
@given(case=_subset_file())
def test_generated_subset_files(tmp_path, case):
    name, text = case
    path = tmp_path / f"{name}.sql"
    try:
        definition = parse_subset(path, text)
    except InputError as exc:
        message = one_line(exc)
        assert repr(path.stem)[1:-1] in message, message  # the file, control characters escaped
        event("InputError")
        return
    event("parsed")
    # what evaluation reads (lakehouse.subsets.evaluate) has the documented type
    assert isinstance(definition, SubsetDefinition)
    assert definition.name == path.stem and NAME.match(definition.name)
    assert body(definition.sql).strip()
    settings_ = definition.settings
    assert set(settings_) <= SETTINGS
    assert isinstance(definition.params, dict)
    for key in ("sample", "seed"):
        assert key not in settings_ or _is_count(settings_[key]), (key, settings_[key])
    if "balance_by" in settings_:
        assert isinstance(settings_["balance_by"], str) and NAME.match(settings_["balance_by"])
        assert "sample" in settings_
    semantic = definition.semantic
    if semantic is not None:
        assert isinstance(semantic.get("text"), str)
        assert semantic.get("mode", "caption") in ("caption", "visual")
        assert "min_score" in semantic or "top_k" in semantic
        score = semantic.get("min_score", 0.0)
        assert isinstance(score, int | float) and not isinstance(score, bool), semantic
        assert "top_k" not in semantic or _is_count(semantic["top_k"]), semantic


# == 5. generated configuration files ==========================================================

CONFIG_TYPES = typing.get_type_hints(Config)  # each setting's declared type
SECTION_CLASSES = {name: t for name, t in CONFIG_TYPES.items() if dataclasses.is_dataclass(t)}
UNIONS = (typing.Union, types.UnionType)


def _right_value(kind) -> st.SearchStrategy:
    """Values of the declared type ``kind`` of a setting, as TOML can spell them."""
    if typing.get_origin(kind) in UNIONS:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    origin = typing.get_origin(kind)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(-5, 10**6)
    if kind is float:
        return st.one_of(st.floats(-1e6, 1e6), st.integers(-5, 1000), st.floats())
    if kind is str:
        return st.one_of(st.sampled_from(["local", "ray", "auto", "video", "x"]), st.text())
    if origin is tuple:
        return st.lists(st.text(max_size=10), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)
    raise AssertionError(kind)


@st.composite
def _section(draw, cls) -> dict:
    hints = typing.get_type_hints(cls)
    names = draw(st.lists(st.sampled_from(sorted(hints)), max_size=5, unique=True))
    out = {}
    for name in names:
        right = draw(st.integers(0, 7))  # seven in eight of the right type
        out[name] = draw(_right_value(hints[name]) if right else _VALUES)
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.sampled_from(["workerz", "a\nb", "x y", ""]))] = draw(_SCALARS)
    return out


ROOTS = ["lakehouse", "", "~/lh", "~nosuchuser/lh", "s3://bucket/lh", "file:///tmp/lh", "a\x00b"]


@st.composite
def _config_document(draw) -> bytes:
    shape = draw(st.integers(0, 19))
    if shape == 0:
        return draw(st.binary(max_size=60))
    if shape == 1:
        return draw(st.text(max_size=60)).encode()
    document: dict = {}
    for name in draw(st.lists(st.sampled_from(sorted(CONFIG_TYPES)), max_size=6, unique=True)):
        if name in SECTION_CLASSES and draw(st.integers(0, 5)):
            document[name] = draw(_section(SECTION_CLASSES[name]))
        elif name == "root" and draw(st.booleans()):
            document[name] = draw(st.sampled_from(ROOTS))
        elif name in SECTION_CLASSES or not draw(st.integers(0, 3)):
            document[name] = draw(_VALUES)  # the wrong type, most likely
        else:
            document[name] = draw(_right_value(CONFIG_TYPES[name]))
    if draw(st.integers(0, 9)) == 0:
        document[draw(st.sampled_from(["rooot", "lakehouse", "x y"]))] = draw(_VALUES)
    if draw(st.integers(0, 4)) == 0:
        document = {"lakehouse": document}
    scalars = [
        f"{_toml_key(k)} = {_toml(v)}" for k, v in document.items() if not isinstance(v, dict)
    ]
    tables = [
        f"[{_toml_key(k)}]\n" + "\n".join(f"{_toml_key(n)} = {_toml(x)}" for n, x in v.items())
        for k, v in document.items()
        if isinstance(v, dict)
    ]
    return "\n".join([*scalars, *tables, ""]).encode()


def _has_type(value, kind) -> bool:
    if typing.get_origin(kind) in UNIONS:
        return any(_has_type(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if typing.get_origin(kind) is tuple:
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if typing.get_origin(kind) is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    if kind in (int, float):
        return type(value) is kind
    return isinstance(value, kind)


@settings(max_examples=examples(4.0), suppress_health_check=FIXTURES_REUSED)
@given(document=_config_document())
def test_generated_configuration_files(tmp_path, document):
    path = tmp_path / "lakehouse.toml"
    path.write_bytes(document)
    note(document.decode("utf-8", "backslashreplace"))
    try:
        config = Config.load(config_file=path, env={})
    except ConfigError as exc:
        one_line(exc)
        event("ConfigError")
        return
    event("loaded")
    assert isinstance(config, Config)
    for name, kind in CONFIG_TYPES.items():
        value = getattr(config, name)
        if name in SECTION_CLASSES:
            assert isinstance(value, SECTION_CLASSES[name]), (name, value)
            for field, field_kind in typing.get_type_hints(kind).items():
                setting = getattr(value, field)
                assert _has_type(setting, field_kind), (f"{name}.{field}", setting)
        else:
            assert _has_type(value, kind), (name, value)
