"""Subset definitions: ``sql/subsets/NAME.sql`` files, their header settings and what they read.

A subset file is one query over the lakehouse tables and views returning one row per clip (a
``clip_id`` column). Its leading comment block is the header: plain comment lines are the
description; lines ``-- @key: value`` are settings, each value a TOML value::

    -- Egocentric clips longer than 30 s in which a hand tool is used.
    -- @params: {min_duration_s = 30}
    -- @semantic: {text = "a person using a hand tool", mode = "caption", min_score = 0.5}
    -- @sample: 100
    -- @balance_by: "source"
    -- @seed: 7
    select clip_id from clip_facts where viewpoint = 'ego' and duration_s > $min_duration_s

Settings: ``params`` (named ``$parameters`` of the body, with defaults a run may override),
``semantic`` (keep the rows whose caption/visual similarity to ``text`` is at least
``min_score``, and/or the ``top_k`` most similar), ``sample`` + ``seed`` (a fixed-size sample,
identical on every run with the same inputs), ``balance_by`` (a column: the sample is spread
evenly across its values). The folders are the project's ``sql/subsets`` plus
``subset_dirs`` from the configuration; the file name is the subset's name and its asset key.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.core import schemas
from lakehouse.core.errors import InputError
from lakehouse.core.schemas import CLIP_TABLE, DUPLICATES_TABLE, TEXT_TABLE
from lakehouse.query import parse

if TYPE_CHECKING:
    from lakehouse.core.config import Config

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SETTING = re.compile(r"^--\s*@([a-z_]+)\s*:\s*(.*)$")
SETTINGS = {"params", "semantic", "sample", "seed", "balance_by"}
SEMANTIC_KEYS = {"text", "mode", "min_score", "top_k"}
# semantic SQL functions and the tables they read (see lakehouse.query.semantic)
FUNCTION_TABLES = {
    "caption_similarity": (TEXT_TABLE,),
    "visual_similarity": (CLIP_TABLE,),
    "caption_hits": (TEXT_TABLE, "clips"),
    "visual_hits": (CLIP_TABLE, "clips"),
    "exclude_near_duplicates": (DUPLICATES_TABLE,),
}
# table macros whose first argument names the table or view they read
TABLE_ARGUMENT_FUNCTIONS = {"exclude_near_duplicates"}


@dataclass(frozen=True)
class SubsetDefinition:
    """One subset file, parsed."""

    name: str
    path: Path
    sql: str  # the whole file, header included (what is hashed and recorded)
    description: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def sql_hash(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.settings.get("params", {}))

    @property
    def semantic(self) -> dict[str, Any] | None:
        return self.settings.get("semantic")


def subset_dirs(config: Config) -> list[Path]:
    """Where subset files are looked for: the project's folder, then the configured ones."""
    return [config.sql_dirs["subsets"], *(Path(d) for d in config.subset_dirs)]


def reserved_names(config: Config) -> set[str]:
    """Names a subset cannot take: they are already tables, views or assets."""
    views = {p.stem for p in config.sql_dirs["views"].glob("*.sql")}
    return {*schemas.TABLES, *schemas.DYNAMIC_TABLES, *views, "search_index", "signals"}


def find_subsets(config: Config) -> dict[str, SubsetDefinition]:
    """Every subset file, by name; two files with one name are an error."""
    found: dict[str, SubsetDefinition] = {}
    reserved = reserved_names(config)
    for folder in subset_dirs(config):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.sql")):
            definition = parse_subset(path)
            if definition.name in reserved:
                raise InputError(
                    f"Subset file {path} is named like a table, view or asset; rename it "
                    f"(taken: {', '.join(sorted(reserved))})."
                )
            if definition.name in found:
                other = found[definition.name].path
                raise InputError(
                    f"Two subset files are named {definition.name}: {other} and {path}; "
                    "rename one (the file name is the subset's name)."
                )
            found[definition.name] = definition
    return found


def get_subset(config: Config, name: str) -> SubsetDefinition:
    subsets = find_subsets(config)
    if name not in subsets:
        known = ", ".join(sorted(subsets)) or "none"
        raise InputError(
            f"There is no subset file {name}.sql in {', '.join(map(str, subset_dirs(config)))} "
            f"(known: {known})."
        )
    return subsets[name]


def parse_subset(path: Path, text: str | None = None) -> SubsetDefinition:
    """Parse a subset file: name from the file name, description and settings from its header."""
    name, shown = path.stem, _shown(path)
    if not NAME.match(name):
        raise InputError(
            f"Subset file {shown} must be named in lowercase letters, digits and underscores "
            "(like egocentric_tool_use_over_30s.sql)."
        )
    text = path.read_text(encoding="utf-8") if text is None else text
    description: list[str] = []
    settings: dict[str, Any] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = SETTING.match(stripped)
        if match is None:
            description.append(stripped[2:].strip())
            continue
        key, raw = match.groups()
        if key not in SETTINGS:
            raise InputError(
                f"{shown}: unknown setting @{key}; known settings are "
                f"{', '.join('@' + s for s in sorted(SETTINGS))}."
            )
        try:
            settings[key] = tomllib.loads(f"value = {raw}")["value"]
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{shown}: @{key} is not a TOML value ({exc}).") from None
    if not body(text).strip():
        raise InputError(f"Subset file {shown} has no query; add a SELECT returning clip_id.")
    _check_settings(shown, settings)
    if description and description[0].startswith(f"{name}:"):
        description = description[1:]  # the dbt-style "name: one row per clip" opening line
    summary = " ".join(description).strip()
    return SubsetDefinition(name, path, text, summary, settings)


def _check_settings(shown: str, settings: dict[str, Any]) -> None:
    def bad(message: str) -> InputError:
        return InputError(f"{shown}: {message}")

    params = settings.get("params", {})
    if not isinstance(params, dict):
        raise bad("@params must be a table, like {min_duration_s = 30}.")
    semantic = settings.get("semantic")
    if semantic is not None:
        if not isinstance(semantic, dict) or not isinstance(semantic.get("text"), str):
            raise bad('@semantic needs at least a text, like {text = "using a hand tool"}.')
        unknown = set(semantic) - SEMANTIC_KEYS
        if unknown:
            raise bad(f"@semantic has unknown keys {sorted(unknown)}; use {sorted(SEMANTIC_KEYS)}.")
        if semantic.get("mode", "caption") not in ("caption", "visual"):
            raise bad('@semantic mode must be "caption" or "visual".')
        if "min_score" not in semantic and "top_k" not in semantic:
            raise bad("@semantic needs min_score and/or top_k.")
        score = semantic.get("min_score", 0.0)
        if not isinstance(score, int | float) or isinstance(score, bool):
            raise bad("@semantic min_score must be a number, like 0.5.")
        if "top_k" in semantic and not _is_count(semantic["top_k"]):
            raise bad("@semantic top_k must be a non-negative integer.")
    for key in ("sample", "seed"):
        value = settings.get(key)
        if value is not None and not _is_count(value):
            raise bad(f"@{key} must be a non-negative integer.")
    if "balance_by" in settings:
        if not isinstance(settings["balance_by"], str) or not NAME.match(settings["balance_by"]):
            raise bad('@balance_by must name one column of the result, like "viewpoint".')
        if "sample" not in settings:
            raise bad("@balance_by needs @sample (the size of the balanced sample).")


def _is_count(value: Any) -> bool:
    """A non-negative integer (TOML's ``true`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shown(path: Path) -> str:
    """The path for a one-line message: control characters (a newline in a file name) and
    undecodable bytes escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))


def body(text: str) -> str:
    """The query without trailing semicolons (comments stay: DuckDB ignores them)."""
    return text.strip().rstrip(";").strip()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# -- what a query reads ----------------------------------------------------------------------


@cache
def _tree(sql: str) -> list[dict[str, Any]]:
    try:
        return parse.statements(sql)
    except parse.ParseError as exc:
        raise InputError(f"The query does not parse: {exc}") from None


def references(sql: str) -> tuple[set[str], set[str]]:
    """``(relations, parameters)`` a SELECT reads: table/view names (CTE names excluded, semantic
    functions mapped to the tables they read) and the names of its ``$parameters``."""
    relations: set[str] = set()
    params: set[str] = set()
    for node, scope in parse.scoped_nodes(_tree(body(sql))):
        if node.get("type") == "BASE_TABLE" and not node.get("schema_name"):
            name = parse.table_name(node).lower()
            if name not in scope:
                relations.add(name)
        if node.get("class") == "FUNCTION":
            function = parse.function_name(node)
            relations.update(FUNCTION_TABLES.get(function, ()))
            if function in TABLE_ARGUMENT_FUNCTIONS:
                name = _table_argument(node)
                if name and name not in scope:
                    relations.add(name)
        if node.get("class") == "PARAMETER" and node.get("identifier"):
            params.add(node["identifier"])
    return relations, params


def _table_argument(node: dict[str, Any]) -> str | None:
    """The table a table macro's first argument names: ``f(clip_facts)`` or ``f('clip_facts')``."""
    args = node.get("arguments") or node.get("children") or []
    if not args:
        return None
    first = args[0].get("expression", args[0]) if isinstance(args[0], dict) else None
    if not isinstance(first, dict):
        return None
    if first.get("class") == "COLUMN_REF" and len(first.get("column_names", [])) == 1:
        return first["column_names"][0].lower()
    text = parse.string_constant(first)
    return text.lower() if text is not None else None


def dependencies(sql: str, views: dict[str, str]) -> tuple[list[str], list[str]]:
    """``(views, tables)`` the query reads, views expanded down to the tables beneath them."""
    seen_views: set[str] = set()
    tables: set[str] = set()
    pending = list(references(sql)[0])
    while pending:
        name = pending.pop()
        if name in views:
            if name not in seen_views:
                seen_views.add(name)
                pending.extend(references(views[name])[0])
        else:
            tables.add(name)
    return sorted(seen_views), sorted(tables)


def direct_dependencies(sql: str, views: dict[str, str]) -> list[str]:
    """The tables and views a query names itself (the edges drawn in the asset graph)."""
    return sorted(references(sql)[0])


def subset_dependencies(definition: SubsetDefinition, views: dict[str, str]) -> list[str]:
    """The tables and views a subset reads directly, its @semantic predicate included."""
    names = set(direct_dependencies(definition.sql, views))
    if definition.semantic:
        mode = definition.semantic.get("mode", "caption")
        names.add(CLIP_TABLE if mode == "visual" else TEXT_TABLE)
    return sorted(names)
