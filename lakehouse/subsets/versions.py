"""Materialize, reproduce and compare subsets (see :mod:`lakehouse.subsets.files` for the files).

Materializing evaluates the subset (:mod:`lakehouse.subsets.evaluate`: its query in a
locked-down DuckDB session, its semantic predicate and sample) and records a new version: the
``subsets`` table gets one row (name, SQL text and hash, settings, parameters, the version of
every table the query read, the view texts, the model ids behind any semantic predicate, row
count) and ``subset_clips`` one row per clip.
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

Materializing takes no lock, on a local root either: the claim is what keeps two writers apart.
A writer whose claim merge started from a version without the other's claim gets a retryable
conflict (the key's unenforced-primary-key metadata) and its retry finds the number taken; a
writer that reads the numbers after another one claimed counts the pending claim. Everything
after the claim is scoped to the writer's own version (its members' sync, its
``subset-<name>-v<version>`` tags, its record), so two materializations never touch each other's
rows (``tests/test_locks.py`` races two of them at both points).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import InputError, LakehouseError
from lakehouse.core.schemas import SUBSET_CLIPS_TABLE, SUBSETS_TABLE
from lakehouse.models.resolve import resolve_clip, resolve_text
from lakehouse.storage.filters import in_list, sql_literal
from lakehouse.subsets.evaluate import Evaluation, evaluate
from lakehouse.subsets.files import canonical, find_subsets, get_subset, parse_subset

if TYPE_CHECKING:
    from collections.abc import Mapping

    from lakehouse.storage.store import Store

SUBSETS = SUBSETS_TABLE
SUBSET_CLIPS = SUBSET_CLIPS_TABLE
COMPLETE = "clips_hash IS NOT NULL"  # a pending claim has no clips hash yet


class SubsetNotFoundError(LakehouseError, LookupError):
    """No materialized version of a subset (or not that version)."""


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


# -- materialize / reproduce / diff ------------------------------------------------------------


def materialize_subset(
    lh: Store,
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
    version = claim_version(lh, name, run_id)
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


def claim_version(lh: Store, name: str, run_id: str | None) -> int:
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


def _versions_of_run(lh: Store, name: str, run_id: str, *, complete: bool) -> list[int]:
    state = COMPLETE if complete else f"NOT ({COMPLETE})"
    rows = lh.read(
        SUBSETS,
        columns=["version"],
        filter=f"name = {sql_literal(name)} AND run_id = {sql_literal(run_id)} AND {state}",
    )
    return rows.column("version").to_pylist()


def _pin(lh: Store, table: str, version: int, tag: str) -> None:
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


def latest_version(lh: Store, name: str) -> int:
    versions = lh.read(
        SUBSETS, columns=["version"], filter=f"name = {sql_literal(name)} AND {COMPLETE}"
    )
    values = versions.column("version").to_pylist()
    return max(values) if values else 0


def get_version(lh: Store, name: str, version: int | None = None) -> SubsetVersion:
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


def list_subsets(lh: Store) -> list[dict[str, Any]]:
    """Every subset file and every materialized subset, with its latest version."""
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


def versions_of(lh: Store, name: str) -> list[dict[str, Any]]:
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
    clips: dict[str, dict[str, Any]] = field(default_factory=dict)  # describe_clips of the rest

    @property
    def identical(self) -> bool:
        return self.clip_ids == self.record.clip_ids

    @property
    def missing(self) -> list[str]:
        return sorted(set(self.record.clip_ids) - set(self.clip_ids))

    @property
    def extra(self) -> list[str]:
        return sorted(set(self.clip_ids) - set(self.record.clip_ids))


def reproduce_subset(lh: Store, name: str, version: int | None = None) -> Reproduction:
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
    reproduction = Reproduction(record, evaluation.clip_ids)
    reproduction.clips = describe_clips(lh, reproduction.missing + reproduction.extra, record)
    return reproduction


def _path(record: SubsetVersion) -> Any:
    from pathlib import Path

    return Path(record.definition_path or f"{record.name}.sql").with_name(f"{record.name}.sql")


def _pinned_version(lh: Store, table: str, version: int, tag: str) -> int:
    if not version:
        return 0
    ds = lh.dataset(table)
    tags = ds.tags.list() if ds is not None else {}
    if tag in tags and tags[tag]["version"] != version:
        raise LakehouseError(f"Tag {tag} on {table} was moved; the pin of {tag} is broken.")
    return version


def _configured_model_ids(lh: Store, kinds: Mapping[str, str]) -> dict[str, str | None]:
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
    clips: dict[str, dict[str, Any]] = field(default_factory=dict)  # describe_clips of both


def diff_subset(lh: Store, name: str, a: int, b: int) -> SubsetDiff:
    """Clips added and removed going from version ``a`` to version ``b``."""
    first, second = get_version(lh, name, a), get_version(lh, name, b)
    old, new = set(first.clip_ids), set(second.clip_ids)
    added, removed = sorted(new - old), sorted(old - new)
    return SubsetDiff(
        name,
        a,
        b,
        added,
        removed,
        len(old & new),
        describe_clips(lh, added, second) | describe_clips(lh, removed, first),
    )


def describe_clips(
    lh: Store, clip_ids: list[str], record: SubsetVersion | None = None
) -> dict[str, dict[str, Any]]:
    """The user's own id (``external_id``) and the short caption of each clip, as a subset version
    saw them (the ``clips`` version it pinned) or, without one, as readers see them now."""
    if not clip_ids:
        return {}
    version = record.table_versions.get("clips") if record is not None else None
    if version == 0:
        return {}
    ds = lh.dataset("clips", version=version) if version else lh.published_dataset("clips")
    if ds is None:
        return {}
    rows = ds.to_table(
        columns=["clip_id", "external_id", "short_caption"], filter=in_list("clip_id", clip_ids)
    ).to_pylist()
    return {r["clip_id"]: r for r in rows}


def subset_clips(lh: Store, record: SubsetVersion) -> Any:
    """The ``subset_clips`` rows of one version, in order (an Arrow table)."""
    table = lh.read(
        SUBSET_CLIPS,
        filter=f"name = {sql_literal(record.name)} AND version = {int(record.version)}",
    )
    return table.sort_by("position")


__all__ = [
    "Reproduction",
    "SubsetDiff",
    "SubsetNotFoundError",
    "SubsetVersion",
    "diff_subset",
    "get_version",
    "latest_version",
    "list_subsets",
    "materialize_subset",
    "reproduce_subset",
    "versions_of",
]
