"""The source registry: each source is a folder of videos plus its annotation files.

A source is also a Dagster partition, so its name is restricted to ``[a-z0-9_-]``. Registering a
source again updates its folder and settings; its annotation files are kept unless new ones are
given.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lakehouse.core.errors import InputError, InputNotFoundError, SourceNotFoundError
from lakehouse.ingest.annotation_files import ColumnMapping
from lakehouse.storage.filters import sql_literal

if TYPE_CHECKING:
    from lakehouse.storage.store import Store

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VIEWPOINTS = ("ego", "exo", "unknown")


@dataclass(frozen=True)
class Source:
    """A registered source: where its videos are and how to read its annotations."""

    name: str
    uri: str
    annotation_files: tuple[str, ...] = ()
    viewpoint: str = "unknown"
    mapping: ColumnMapping = field(default_factory=ColumnMapping)

    @property
    def scope(self) -> str:
        """Lance filter selecting this source's rows."""
        return f"source = {sql_literal(self.name)}"


def default_name(folder: str) -> str:
    base = os.path.basename(os.path.normpath(folder)).lower()
    name = re.sub(r"[^a-z0-9_-]+", "-", base).strip("-_") or "source"
    return name[:64]


def register_source(
    lh: Store,
    folder: str | os.PathLike[str],
    *,
    name: str | None = None,
    annotations: list[str] | tuple[str, ...] | None = None,
    viewpoint: str | None = None,
    mapping: ColumnMapping | None = None,
) -> Source:
    """Add or update a source in the ``sources`` table and return it."""
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise InputNotFoundError(f"Folder {folder} does not exist; pass the folder of videos.")
    name = name or default_name(folder)
    if not NAME_PATTERN.match(name):
        raise InputError(
            f"Source name {name!r} is invalid; use 1-64 characters of a-z, 0-9, '_' and '-'."
        )
    if viewpoint is not None and viewpoint not in VIEWPOINTS:
        raise InputError(f"Viewpoint must be one of {VIEWPOINTS}, not {viewpoint!r}.")
    files = []
    for path in annotations or ():
        path = os.path.abspath(os.fspath(path))
        if os.path.exists(path) and not os.path.isfile(path):
            raise InputError(
                f"Annotation file {path} is not a regular file (a folder, FIFO or device); "
                "pass the file itself."
            )
        if not os.path.isfile(path):
            raise InputNotFoundError(f"Annotation file {path} does not exist; check the path.")
        files.append(path)
    previous = find_source(lh, name)
    now = dt.datetime.now(dt.UTC)
    if previous is not None:
        files = files or list(previous.annotation_files)
        viewpoint = viewpoint or previous.viewpoint
        mapping = mapping or previous.mapping
    source = Source(
        name=name,
        uri=folder,
        annotation_files=tuple(files),
        viewpoint=viewpoint or "unknown",
        mapping=mapping or ColumnMapping(),
    )
    row = {
        "source": name,
        "uri": folder,
        "annotation_files": list(source.annotation_files),
        "viewpoint": source.viewpoint,
        "settings_json": json.dumps({"mapping": source.mapping.to_dict()}, sort_keys=True),
        "registered_at": now,
        "updated_at": now,
    }
    if previous is not None and previous == source:
        return source
    if previous is not None:
        old = lh.read("sources", filter=source.scope).to_pylist()
        if old:
            row["registered_at"] = old[0]["registered_at"]
    lh.upsert("sources", [row])
    return source


def find_source(lh: Store, name: str) -> Source | None:
    rows = lh.read("sources", filter=f"source = {sql_literal(name)}").to_pylist()
    return _from_row(rows[0]) if rows else None


def get_source(lh: Store, name: str) -> Source:
    source = find_source(lh, name)
    if source is None:
        known = [s.name for s in list_sources(lh)]
        raise SourceNotFoundError(
            f"No source named {name!r} in {lh.root}; registered sources: {known or 'none'} "
            "(add one with `lakehouse ingest DIR --source NAME`)."
        )
    return source


def list_sources(lh: Store) -> list[Source]:
    return sorted((_from_row(r) for r in lh.read("sources").to_pylist()), key=lambda s: s.name)


def _from_row(row: dict) -> Source:
    settings = json.loads(row.get("settings_json") or "{}")
    return Source(
        name=row["source"],
        uri=row["uri"],
        annotation_files=tuple(row.get("annotation_files") or ()),
        viewpoint=row.get("viewpoint") or "unknown",
        mapping=ColumnMapping.from_dict(settings.get("mapping", {})),
    )
