"""One asset per subset file, built from the files themselves: adding ``sql/subsets/NAME.sql``
adds the asset ``NAME`` with no Python change. Its upstream edges are the tables and views its
SQL names (views are drawn as assets too, downstream of their tables), so the lineage runs from
the raw videos to every subset."""

import json
from typing import Any

import dagster as dg

from dagster_defs.metadata import duration_histogram, markdown_table
from dagster_defs.resources import LakehouseResource
from lakehouse.core.config import Config
from lakehouse.core.errors import InputError, LakehouseError
from lakehouse.query.session import read_views
from lakehouse.subsets.files import (
    SubsetDefinition,
    direct_dependencies,
    find_subsets,
    subset_dependencies,
)
from lakehouse.subsets.versions import SubsetVersion, materialize_subset

GROUP = "subsets"
VIEWS_GROUP = "views"


class SubsetRunConfig(dg.Config):
    """Values for the subset's ``@params`` as a JSON object, e.g. ``{"min_duration_s": 5}``."""

    params_json: str = "{}"


def view_specs(config: Config) -> list[dg.AssetSpec]:
    """The SQL views (sql/views) as assets computed on read, downstream of what they select."""
    views = read_views([config.sql_dirs["views"]])
    specs = []
    for name, sql in views.items():
        first = next((ln[2:].strip() for ln in sql.splitlines() if ln.startswith("--")), "")
        specs.append(
            dg.AssetSpec(
                name,
                deps=direct_dependencies(sql, views),
                group_name=VIEWS_GROUP,
                kinds={"duckdb", "sql"},
                description=f"DuckDB view (sql/views/{name}.sql). {first}",
                metadata={"sql": dg.MetadataValue.md(f"```sql\n{sql.strip()}\n```")},
            )
        )
    return specs


def subset_assets(config: Config) -> list[dg.AssetsDefinition]:
    views = read_views([config.sql_dirs["views"]])
    try:
        definitions = find_subsets(config)
    except InputError as exc:  # two files with one name: say so in the UI, keep loading
        return [_broken("subset_files", str(exc))]
    out = []
    for definition in definitions.values():
        try:
            deps = subset_dependencies(definition, views)
        except LakehouseError as exc:
            out.append(_broken(definition.name, str(exc)))
            continue
        out.append(_subset_asset(definition, deps))
    return out


def _subset_asset(definition: SubsetDefinition, deps: list[str]) -> dg.AssetsDefinition:
    name = definition.name

    @dg.asset(
        name=name,
        group_name=GROUP,
        deps=deps,
        kinds={"duckdb", "lance"},
        description=definition.description or f"Subset defined by {definition.path.name}.",
        code_version=definition.sql_hash[:16],
        metadata={
            "definition": dg.MetadataValue.path(str(definition.path)),
            "settings": dg.MetadataValue.json(definition.settings),
        },
    )
    def _asset(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource, config: SubsetRunConfig
    ) -> dg.MaterializeResult:
        lh = lakehouse.open()
        try:
            params = json.loads(config.params_json or "{}")
        except json.JSONDecodeError as exc:
            raise InputError(f"params_json is not a JSON object: {exc}") from None
        record = materialize_subset(lh, name, params, run_id=context.run_id)
        context.log.info(f"{record.key}: {record.row_count} clips, pinned as {record.pin_tag}")
        return dg.MaterializeResult(metadata=subset_metadata(lh, record))

    return _asset


def _broken(name: str, message: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, group_name=GROUP, description=f"Cannot be built: {message}")
    def _asset() -> None:
        raise InputError(message)

    return _asset


def subset_metadata(lh: Any, record: SubsetVersion) -> dict[str, Any]:
    preview = lh.sql(
        "select clip_id, viewpoint, round(duration_s, 2) as duration_s, short_caption "
        "from clip_facts where list_contains($ids, clip_id) order by clip_id limit 10",
        {"ids": record.clip_ids[:10]},
    ).to_pylist()
    columns = ["clip_id", "viewpoint", "duration_s", "short_caption"]
    facts = lh.sql(
        "select duration_s, coalesce(viewpoint, 'unknown') as viewpoint from clip_facts "
        "where list_contains($ids, clip_id)",
        {"ids": record.clip_ids},
    ).to_pylist()
    views: dict[str, int] = {}
    for row in facts:
        views[row["viewpoint"]] = views.get(row["viewpoint"], 0) + 1
    return {
        "subset_version": dg.MetadataValue.int(record.version),
        "dagster/row_count": dg.MetadataValue.int(record.row_count),
        "rows": dg.MetadataValue.int(record.row_count),
        "sql_hash": dg.MetadataValue.text(record.sql_hash),
        "clips_hash": dg.MetadataValue.text(record.clips_hash),
        "pinned_table_versions": dg.MetadataValue.json(record.table_versions),
        "pin_tag": dg.MetadataValue.text(record.pin_tag),
        "model_ids": dg.MetadataValue.json(record.model_ids),
        "params": dg.MetadataValue.json(record.params),
        "preview": dg.MetadataValue.md(markdown_table(preview, columns)),
        "duration_histogram": dg.MetadataValue.md(
            duration_histogram([r["duration_s"] for r in facts])
        ),
        "viewpoints": dg.MetadataValue.json(views),
    }
