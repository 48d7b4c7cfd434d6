"""Materialize, reproduce and compare subsets (see :mod:`lakehouse.subset_files` for the files).

Materializing runs the subset's query in a locked-down DuckDB session, applies its semantic
predicate and sample, and records a new version: the ``subsets`` table gets one row (name, SQL
text and hash, settings, parameters, the version of every table the query read, the view texts,
the model ids behind any semantic predicate, row count) and ``subset_clips`` one row per clip.
Each table version read is tagged ``subset-<name>-v<version>`` in its Lance dataset, so cleanup
cannot remove it and :func:`reproduce_subset` re-runs the recorded SQL against exactly those
versions, months later, after the tables have moved on.

Version numbers are claimed, not just counted: the next number is taken by inserting a pending
``subsets`` row (``clips_hash`` null) through an insert-only merge on its primary key, so of two
writers racing for ``NAME@N`` exactly one gets it and the other moves on to ``N+1`` — on an
object store too, where no file lock exists. The member rows follow, then the completed row,
which is the commit marker readers go by (pending rows are invisible to them). A retry of the
same run (``run_id``) finds its completed version and returns it, or resumes its pending claim,
so a commit that landed before a crash is never recorded twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.errors import InputError, LakehouseError, QueryError
from lakehouse.locks import lakehouse_lock
from lakehouse.sql import Session
from lakehouse.store import sql_literal
from lakehouse.subset_files import (
    SubsetDefinition,
    body,
    canonical,
    dependencies,
    get_subset,
    parse_subset,
    references,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from lakehouse.store import Lakehouse

SUBSETS = "subsets"
SUBSET_CLIPS = "subset_clips"
COMPLETE = "clips_hash IS NOT NULL"  # a pending claim has no clips hash yet


class SubsetNotFoundError(LakehouseError, LookupError):
    """No materialized version of a subset (or not that version)."""


@dataclass
class Evaluation:
    """What one run of a subset query produced, and everything it depended on."""

    clip_ids: list[str]
    scores: dict[str, float]
    strata: dict[str, str]
    table_versions: dict[str, int]
    views: dict[str, str]
    model_ids: dict[str, str]
    params: dict[str, Any]
    candidates: int

    @property
    def clips_hash(self) -> str:
        return hashlib.sha256("\n".join(self.clip_ids).encode()).hexdigest()


@dataclass
class SubsetVersion:
    """One materialized version of a subset, as recorded in the ``subsets`` table."""

    name: str
    version: int
    description: str
    definition_path: str
    sql_text: str
    sql_hash: str
    settings: dict[str, Any]
    params: dict[str, Any]
    table_versions: dict[str, int]
    views: dict[str, str]
    model_ids: dict[str, str]
    pin_tag: str
    row_count: int
    clips_hash: str
    created_at: dt.datetime
    run_id: str | None
    clip_ids: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "rows": self.row_count,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "sql_hash": self.sql_hash[:12],
            "tables": self.table_versions,
            "models": self.model_ids,
            "params": self.params,
            "pin_tag": self.pin_tag,
        }


# -- evaluating a definition -----------------------------------------------------------------


def evaluate(
    lh: Lakehouse,
    definition: SubsetDefinition,
    params: Mapping[str, Any] | None = None,
    *,
    versions: Mapping[str, int] | None = None,
    views: Mapping[str, str] | None = None,
) -> Evaluation:
    """Run a subset definition (optionally against pinned table versions and view texts)."""
    values = _bind(definition, params or {})
    query, bound = _query(definition, values)
    with Session(lh, versions=versions, view_sql=views) as session:
        view_names, tables = dependencies(query, session.view_sql)
        unknown = [t for t in tables if t not in session.tables]
        if unknown:
            raise QueryError(
                f"Subset {definition.name} reads {', '.join(unknown)}, which is not a table or "
                f"view of this lakehouse (tables: {', '.join(session.tables)}; views: "
                f"{', '.join(session.view_sql)})."
            )
        try:
            result = session.query(query, bound)
        except QueryError as exc:
            raise QueryError(f"Subset {definition.name}: {exc}") from None
        table_versions = {t: session.versions.get(t, 0) for t in tables}
        model_ids = dict(session.semantic.model_ids)
        used_views = {v: session.view_sql[v] for v in view_names}
    rows = _rows(definition, result)
    candidates = len(rows)
    rows = _sample(definition, rows)
    rows.sort(key=lambda r: r["clip_id"])
    return Evaluation(
        clip_ids=[r["clip_id"] for r in rows],
        scores={r["clip_id"]: r["semantic_score"] for r in rows if "semantic_score" in r},
        strata={r["clip_id"]: r["stratum"] for r in rows if r.get("stratum") is not None},
        table_versions=table_versions,
        views=used_views,
        model_ids=model_ids,
        params=values,
        candidates=candidates,
    )


def _bind(definition: SubsetDefinition, overrides: Mapping[str, Any]) -> dict[str, Any]:
    declared = definition.params
    unknown = set(overrides) - set(declared)
    if unknown:
        raise InputError(
            f"Subset {definition.name} has no parameter {', '.join(sorted(unknown))}; declare it "
            f"in the file's @params (declared: {', '.join(sorted(declared)) or 'none'})."
        )
    values = {**declared, **{k: _coerce(v, declared[k]) for k, v in overrides.items()}}
    used = references(definition.sql)[1]
    missing = sorted(used - set(values))
    if missing:
        raise InputError(
            f"Subset {definition.name} uses ${', $'.join(missing)} without a value; give it a "
            "default in @params."
        )
    return {k: values[k] for k in sorted(values)}


def _coerce(value: Any, default: Any) -> Any:
    """A value given on the command line takes the type of the declared default."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            return value.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise InputError(f"Parameter value {value!r} is not a {type(default).__name__}.") from None
    return value


def _query(definition: SubsetDefinition, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    used = references(definition.sql)[1]
    bound = {k: v for k, v in values.items() if k in used}
    semantic = definition.semantic
    if not semantic:
        return body(definition.sql), bound
    function = "visual_similarity" if semantic.get("mode") == "visual" else "caption_similarity"
    bound["subset_semantic_text"] = semantic["text"]
    conditions, tail = ["semantic_score is not null"], ""
    if "min_score" in semantic:
        conditions.append("semantic_score >= $subset_semantic_min")
        bound["subset_semantic_min"] = float(semantic["min_score"])
    if "top_k" in semantic:
        tail = " order by semantic_score desc, clip_id limit $subset_semantic_top_k"
        bound["subset_semantic_top_k"] = int(semantic["top_k"])
    query = (
        f"with subset_body as (\n{body(definition.sql)}\n),\n"
        "subset_scored as (select *, "
        f"{function}(clip_id, $subset_semantic_text) as semantic_score from subset_body)\n"
        f"select * from subset_scored where {' and '.join(conditions)}{tail}"
    )
    return query, bound


def _rows(definition: SubsetDefinition, result: Any) -> list[dict[str, Any]]:
    if "clip_id" not in result.column_names:
        raise QueryError(
            f"Subset {definition.name} must return a clip_id column (one row per clip); it "
            f"returns {', '.join(result.column_names)}."
        )
    balance = definition.settings.get("balance_by")
    if balance and balance not in result.column_names:
        raise QueryError(
            f"Subset {definition.name} balances by {balance}, which its query does not return; "
            "add it to the select list."
        )
    columns = ["clip_id"] + [c for c in ("semantic_score", balance) if c]
    rows = result.select([c for c in columns if c in result.column_names]).to_pylist()
    ids = [r["clip_id"] for r in rows]
    if any(i is None for i in ids):
        raise QueryError(f"Subset {definition.name} returned a row with a null clip_id.")
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise QueryError(
            f"Subset {definition.name} must return one row per clip; {', '.join(dupes)} appear "
            "more than once (add DISTINCT or group by clip_id)."
        )
    for row in rows:
        if balance:
            value = row.pop(balance)
            row["stratum"] = None if value is None else str(value)
    return rows


def _sample(definition: SubsetDefinition, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A fixed-size sample, spread evenly over the ``balance_by`` values, chosen by a seeded hash
    of the clip id: the same inputs give the same sample on every run and machine."""
    size = definition.settings.get("sample")
    if size is None or size >= len(rows):
        return rows
    seed = definition.settings.get("seed", 0)

    def rank(row: dict[str, Any]) -> str:
        return hashlib.sha256(f"{seed}:{row['clip_id']}".encode()).hexdigest()

    strata: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        strata[row.get("stratum") or ""].append(row)
    groups = {k: sorted(v, key=rank) for k, v in sorted(strata.items())}
    # water-filling: every stratum gets an equal share; small ones give their spare to the rest
    quota = dict.fromkeys(groups, 0)
    left = size
    while left > 0:
        open_ = [k for k in groups if quota[k] < len(groups[k])]
        share, extra = divmod(left, len(open_))
        for i, key in enumerate(sorted(open_, key=lambda k: rank({"clip_id": k}))):
            add = min(share + (1 if i < extra else 0), len(groups[key]) - quota[key])
            quota[key] += add
            left -= add
    return [row for key, group in groups.items() for row in group[: quota[key]]]


# -- materialize / reproduce / diff ------------------------------------------------------------


def materialize_subset(
    lh: Lakehouse,
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = None,
) -> SubsetVersion:
    """Evaluate the subset file ``name`` and record it as the next version, its inputs pinned.

    With a ``run_id`` (Dagster passes its run's), a retry of a run whose version was already
    recorded returns that version instead of recording a second one."""
    definition = get_subset(lh.config, name)
    if run_id:
        done = _versions_of_run(lh, name, run_id, complete=True)
        if done:
            return get_version(lh, name, max(done))
    evaluation = evaluate(lh, definition, params)
    with lakehouse_lock(lh, SUBSETS):
        version = _claim_version(lh, name, run_id)
        tag = f"subset-{name}-v{version}"
        for table, table_version in evaluation.table_versions.items():
            if table_version:
                _pin(lh, table, table_version, tag)
        record = SubsetVersion(
            name=name,
            version=version,
            description=definition.description,
            definition_path=str(definition.path),
            sql_text=definition.sql,
            sql_hash=definition.sql_hash,
            settings=definition.settings,
            params=evaluation.params,
            table_versions=evaluation.table_versions,
            views=evaluation.views,
            model_ids=evaluation.model_ids,
            pin_tag=tag,
            row_count=len(evaluation.clip_ids),
            clips_hash=evaluation.clips_hash,
            created_at=dt.datetime.now(dt.UTC),
            run_id=run_id,
            clip_ids=evaluation.clip_ids,
        )
        # the member rows first (exactly these: a resumed claim may have left others), then the
        # completed subsets row, the commit marker readers go by
        scope = f"name = {sql_literal(name)} AND version = {int(version)}"
        lh.sync(SUBSET_CLIPS, _member_rows(record, evaluation), scope=scope)
        lh.upsert(SUBSETS, [_record_row(record)])
    return record


def _claim_version(lh: Lakehouse, name: str, run_id: str | None) -> int:
    """Take the next free version number of ``name`` (or resume this run's pending claim)."""
    import uuid

    if run_id:
        pending = _versions_of_run(lh, name, run_id, complete=False)
        if pending:
            return max(pending)
    token = run_id or f"claim-{uuid.uuid4().hex}"
    rows = lh.read(SUBSETS, columns=["version"], filter=f"name = {sql_literal(name)}")
    version = max(rows.column("version").to_pylist(), default=0) + 1
    while True:
        claim = {
            "subset_version_id": f"{name}@{version}",
            "name": name,
            "version": version,
            "created_at": dt.datetime.now(dt.UTC),
            "run_id": token,
        }
        if lh.upsert(SUBSETS, [claim], update=False).inserted == 1:
            return version
        version += 1  # another writer claimed it first


def _versions_of_run(lh: Lakehouse, name: str, run_id: str, *, complete: bool) -> list[int]:
    state = COMPLETE if complete else f"NOT ({COMPLETE})"
    rows = lh.read(
        SUBSETS,
        columns=["version"],
        filter=f"name = {sql_literal(name)} AND run_id = {sql_literal(run_id)} AND {state}",
    )
    return rows.column("version").to_pylist()


def _pin(lh: Lakehouse, table: str, version: int, tag: str) -> None:
    ds = lh.dataset(table)
    if ds is None:
        return
    existing = ds.tags.list()
    if tag in existing:
        if existing[tag]["version"] != version:  # left by a crashed attempt: point it right
            ds.tags.update(tag, version)
        return
    ds.tags.create(tag, version)


def _member_rows(record: SubsetVersion, evaluation: Evaluation) -> list[dict[str, Any]]:
    return [
        {
            "subset_clip_id": f"{record.key}:{clip_id}",
            "name": record.name,
            "version": record.version,
            "position": i,
            "clip_id": clip_id,
            "semantic_score": evaluation.scores.get(clip_id),
            "stratum": evaluation.strata.get(clip_id),
        }
        for i, clip_id in enumerate(evaluation.clip_ids)
    ]


def _record_row(record: SubsetVersion) -> dict[str, Any]:
    return {
        "subset_version_id": record.key,
        "name": record.name,
        "version": record.version,
        "description": record.description,
        "definition_path": record.definition_path,
        "sql_text": record.sql_text,
        "sql_hash": record.sql_hash,
        "settings_json": canonical(record.settings),
        "params_json": canonical(record.params),
        "table_versions_json": canonical(record.table_versions),
        "views_json": canonical(record.views),
        "model_ids_json": canonical(record.model_ids),
        "pin_tag": record.pin_tag,
        "row_count": record.row_count,
        "clips_hash": record.clips_hash,
        "created_at": record.created_at,
        "run_id": record.run_id,
    }


def latest_version(lh: Lakehouse, name: str) -> int:
    versions = lh.read(
        SUBSETS, columns=["version"], filter=f"name = {sql_literal(name)} AND {COMPLETE}"
    )
    values = versions.column("version").to_pylist()
    return max(values) if values else 0


def get_version(lh: Lakehouse, name: str, version: int | None = None) -> SubsetVersion:
    """A recorded subset version (the latest by default), with its clip list."""
    latest = latest_version(lh, name)
    if latest == 0:
        raise SubsetNotFoundError(
            f"Subset {name} has not been materialized yet; run `lakehouse subset materialize "
            f"{name}`."
        )
    version = latest if version is None else version
    rows = lh.read(
        SUBSETS, filter=f"subset_version_id = {sql_literal(f'{name}@{version}')} AND {COMPLETE}"
    )
    if rows.num_rows == 0:
        raise SubsetNotFoundError(
            f"Subset {name} has no version {version}; its versions are 1 to {latest}."
        )
    record = _from_row(rows.to_pylist()[0])
    members = lh.read(
        SUBSET_CLIPS,
        columns=["position", "clip_id"],
        filter=f"name = {sql_literal(name)} AND version = {int(version)}",
    ).to_pylist()
    record.clip_ids = [m["clip_id"] for m in sorted(members, key=lambda m: m["position"])]
    return record


def _from_row(row: dict[str, Any]) -> SubsetVersion:
    return SubsetVersion(
        name=row["name"],
        version=row["version"],
        description=row["description"] or "",
        definition_path=row["definition_path"] or "",
        sql_text=row["sql_text"],
        sql_hash=row["sql_hash"],
        settings=json.loads(row["settings_json"]),
        params=json.loads(row["params_json"]),
        table_versions=json.loads(row["table_versions_json"]),
        views=json.loads(row["views_json"]),
        model_ids=json.loads(row["model_ids_json"]),
        pin_tag=row["pin_tag"],
        row_count=row["row_count"],
        clips_hash=row["clips_hash"],
        created_at=row["created_at"],
        run_id=row["run_id"],
    )


def list_subsets(lh: Lakehouse) -> list[dict[str, Any]]:
    """Every subset file and every materialized subset, with its latest version."""
    from lakehouse.subset_files import find_subsets

    files = find_subsets(lh.config)
    recorded: dict[str, list[dict[str, Any]]] = defaultdict(list)
    columns = ["name", "version", "row_count", "created_at", "sql_hash"]
    for row in lh.read(SUBSETS, columns=columns, filter=COMPLETE).to_pylist():
        recorded[row["name"]].append(row)
    out = []
    for name in sorted(set(files) | set(recorded)):
        latest = max(recorded[name], key=lambda r: r["version"]) if recorded[name] else None
        definition = files.get(name)
        out.append(
            {
                "name": name,
                "versions": len(recorded[name]),
                "latest": latest["version"] if latest else None,
                "rows": latest["row_count"] if latest else None,
                "materialized_at": latest["created_at"] if latest else None,
                "file_changed": bool(
                    latest and definition and definition.sql_hash != latest["sql_hash"]
                ),
                "description": definition.description if definition else "(file removed)",
            }
        )
    return out


def versions_of(lh: Lakehouse, name: str) -> list[dict[str, Any]]:
    rows = lh.read(
        SUBSETS,
        columns=["version", "row_count", "created_at", "sql_hash", "params_json", "clips_hash"],
        filter=f"name = {sql_literal(name)} AND {COMPLETE}",
    ).to_pylist()
    return sorted(rows, key=lambda r: r["version"])


@dataclass
class Reproduction:
    record: SubsetVersion
    clip_ids: list[str]

    @property
    def identical(self) -> bool:
        return self.clip_ids == self.record.clip_ids

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.record.clip_ids) - set(self.clip_ids))

    @property
    def extra(self) -> list[str]:
        return sorted(set(self.clip_ids) - set(self.record.clip_ids))


def reproduce_subset(lh: Lakehouse, name: str, version: int | None = None) -> Reproduction:
    """Re-run a recorded version's SQL, settings and parameters against its pinned tables."""
    record = get_version(lh, name, version)
    configured = _configured_model_ids(lh, record.model_ids)
    for kind, model_id in record.model_ids.items():
        if configured.get(kind) != model_id:
            raise InputError(
                f"Subset {record.key} ranked clips with the {kind} model {model_id}, but this "
                f"lakehouse is configured with {configured.get(kind) or 'none'}; configure that "
                "model (see `lakehouse models`) to reproduce it."
            )
    pins = {}
    for table, table_version in record.table_versions.items():
        pins[table] = _pinned_version(lh, table, table_version, record.pin_tag)
    definition = parse_subset(_path(record), record.sql_text)
    evaluation = evaluate(lh, definition, record.params, versions=pins, views=record.views)
    return Reproduction(record, evaluation.clip_ids)


def _path(record: SubsetVersion) -> Any:
    from pathlib import Path

    return Path(record.definition_path or f"{record.name}.sql").with_name(f"{record.name}.sql")


def _pinned_version(lh: Lakehouse, table: str, version: int, tag: str) -> int:
    if not version:
        return 0
    ds = lh.dataset(table)
    tags = ds.tags.list() if ds is not None else {}
    if tag in tags and tags[tag]["version"] != version:
        raise LakehouseError(f"Tag {tag} on {table} was moved; the pin of {tag} is broken.")
    return version


def _configured_model_ids(lh: Lakehouse, kinds: Mapping[str, str]) -> dict[str, str | None]:
    from lakehouse.models import resolve_clip, resolve_text

    out: dict[str, str | None] = {}
    for kind in kinds:
        resolver = resolve_clip if kind == "visual" else resolve_text
        out[kind] = resolver(lh.config.models, check_online=False).model_id
    return out


@dataclass
class SubsetDiff:
    name: str
    a: int
    b: int
    added: list[str]
    removed: list[str]
    kept: int


def diff_subset(lh: Lakehouse, name: str, a: int, b: int) -> SubsetDiff:
    """Clips added and removed going from version ``a`` to version ``b``."""
    old = set(get_version(lh, name, a).clip_ids)
    new = set(get_version(lh, name, b).clip_ids)
    return SubsetDiff(name, a, b, sorted(new - old), sorted(old - new), len(old & new))


def subset_clips(lh: Lakehouse, record: SubsetVersion) -> Any:
    """The ``subset_clips`` rows of one version, in order (an Arrow table)."""
    table = lh.read(
        SUBSET_CLIPS,
        filter=f"name = {sql_literal(record.name)} AND version = {int(record.version)}",
    )
    return table.sort_by("position")


__all__ = [
    "Evaluation",
    "Reproduction",
    "SubsetDiff",
    "SubsetNotFoundError",
    "SubsetVersion",
    "diff_subset",
    "evaluate",
    "get_version",
    "latest_version",
    "list_subsets",
    "materialize_subset",
    "reproduce_subset",
    "versions_of",
]
