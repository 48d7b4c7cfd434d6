"""Evaluate a subset definition: run its query in a locked-down session (optionally against
pinned table versions and view texts), apply its semantic predicate and its sample, and return
the clips with everything they depended on (:class:`Evaluation`)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import InputError, QueryError
from lakehouse.query.session import Session
from lakehouse.subsets.files import SubsetDefinition, body, dependencies, references

if TYPE_CHECKING:
    from lakehouse.storage.store import Store


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


def evaluate(
    lh: Store,
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
