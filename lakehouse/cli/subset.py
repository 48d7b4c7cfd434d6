"""``lakehouse subset …``: list, show, materialize, reproduce, diff and export subsets."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from lakehouse.cli.common import State, common_options
from lakehouse.core.errors import InputError


@click.group()
def subset() -> None:
    """Training subsets defined by sql/subsets/*.sql files, versioned and pinned."""


@subset.command("list")
@common_options
def list_cmd(state: State) -> None:
    """Subset files and materialized subsets, with their latest version."""
    import pyarrow as pa

    from lakehouse.render.output import to_text_table
    from lakehouse.subsets.versions import list_subsets

    rows = list_subsets(state.lakehouse())
    for row in rows:
        row["materialized_at"] = (
            row["materialized_at"].isoformat(timespec="seconds") if row["materialized_at"] else None
        )
        row["file_changed"] = "yes" if row["file_changed"] else ""
    click.echo(
        to_text_table(pa.Table.from_pylist(rows)) if rows else "No subset files.\n", nl=False
    )


@subset.command()
@click.argument("name")
@click.option("--version", "-V", "version", type=int, default=None, help="Default: the latest.")
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def show(state: State, name: str, version: int | None, fmt: str) -> None:
    """A subset's definition, its versions and what one version pinned."""
    from lakehouse.subsets.files import find_subsets
    from lakehouse.subsets.versions import SubsetNotFoundError, get_version, versions_of

    lh = state.lakehouse()
    definition = find_subsets(lh.config).get(name)
    try:
        record = get_version(lh, name, version)
    except SubsetNotFoundError:
        if definition is None or version is not None:
            raise
        record = None
    if fmt == "json":
        out = {"name": name, "file": str(definition.path) if definition else None}
        if record:
            out |= record.summary() | {"clip_ids": record.clip_ids, "sql": record.sql_text}
        click.echo(json.dumps(out, indent=1, default=str))
        return
    if definition:
        click.echo(f"{name}: {definition.description}")
        click.echo(f"file: {definition.path}")
        if definition.settings:
            click.echo(f"settings: {json.dumps(definition.settings)}")
    if record is None:
        click.echo("not materialized yet: run `lakehouse subset materialize " + name + "`")
        return
    click.echo("versions:")
    for row in versions_of(lh, name):
        click.echo(
            f"  v{row['version']:<3} {row['row_count']:>7} clips  "
            f"{row['created_at'].isoformat(timespec='seconds')}  sql {row['sql_hash'][:12]}  "
            f"params {row['params_json']}"
        )
    click.echo(f"version {record.version}: {record.row_count} clips, pinned as {record.pin_tag}")
    for table, table_version in sorted(record.table_versions.items()):
        click.echo(f"  {table:<16} version {table_version}")
    for kind, model_id in record.model_ids.items():
        click.echo(f"  {kind} model: {model_id}")
    if definition and definition.sql_hash != record.sql_hash:
        click.echo("the file has changed since this version; materialize to record the new SQL")


def _params(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param {item!r} must look like NAME=VALUE.")
        out[key.strip()] = value
    return out


@subset.command()
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, help="NAME=VALUE for a @params entry.")
@common_options
def materialize(state: State, name: str, params: tuple[str, ...]) -> None:
    """Run subset NAME as a Dagster run and record it as the next version."""
    import logging

    from dagster_defs.runner import run_subset
    from lakehouse.subsets.versions import get_version

    config = state.config()
    level = logging.DEBUG if state.verbose else logging.WARNING
    logging.getLogger("dagster").setLevel(level)
    report = run_subset(config, name, _params(params), log_level=level)
    record = get_version(state.lakehouse(), name)
    click.echo(
        f"Dagster run {report.run_id}: subset {name} version {record.version}, "
        f"{record.row_count} clips (pinned as {record.pin_tag})"
    )
    for table, version in sorted(record.table_versions.items()):
        click.echo(f"  {table:<16} version {version}")


@subset.command()
@click.argument("name")
@click.option("--version", "-V", "version", type=int, default=None, help="Default: the latest.")
@common_options
def reproduce(state: State, name: str, version: int | None) -> None:
    """Re-run a recorded version against its pinned tables; exit 1 if the clips differ."""
    from lakehouse.subsets.versions import reproduce_subset

    result = reproduce_subset(state.lakehouse(), name, version)
    record = result.record
    if result.identical:
        click.echo(
            f"{record.key}: identical — {len(result.clip_ids)} clips (clips hash "
            f"{record.clips_hash[:12]})"
        )
        return
    click.echo(
        f"{record.key}: DIFFERENT — {len(result.missing)} missing, {len(result.extra)} extra",
        err=True,
    )
    for clip_id in result.missing:
        click.echo(_clip_line("-", clip_id, result.clips))
    for clip_id in result.extra:
        click.echo(_clip_line("+", clip_id, result.clips))
    sys.exit(1)


def _clip_line(mark: str, clip_id: str, clips: dict[str, dict[str, Any]]) -> str:
    """``+ clip_id  external_id  caption``: the clip as the user knows it, beside its id."""
    clip = clips.get(clip_id, {})
    caption = " ".join(str(clip.get("short_caption") or "").split())
    caption = caption if len(caption) <= 80 else caption[:79] + "…"
    return f"{mark} {clip_id}  {clip.get('external_id') or '-'}  {caption}".rstrip()


def _clip_objects(clip_ids: list[str], clips: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "clip_id": clip_id,
            "external_id": clips.get(clip_id, {}).get("external_id"),
            "short_caption": clips.get(clip_id, {}).get("short_caption"),
        }
        for clip_id in clip_ids
    ]


@subset.command()
@click.argument("name")
@click.argument("a", type=int)
@click.argument("b", type=int)
@click.option("--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text")
@common_options
def diff(state: State, name: str, a: int, b: int, fmt: str) -> None:
    """Clips added (+) and removed (-) from version A to version B."""
    from lakehouse.subsets.versions import diff_subset

    result = diff_subset(state.lakehouse(), name, a, b)
    if fmt == "json":
        out = {"name": name, "a": a, "b": b, "added": result.added, "removed": result.removed}
        out["added_clips"] = _clip_objects(result.added, result.clips)
        out["removed_clips"] = _clip_objects(result.removed, result.clips)
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    for clip_id in result.added:
        click.echo(_clip_line("+", clip_id, result.clips))
    for clip_id in result.removed:
        click.echo(_clip_line("-", clip_id, result.clips))
    click.echo(
        f"{name} v{a} → v{b}: {len(result.added)} added, {len(result.removed)} removed, "
        f"{result.kept} kept",
        err=True,
    )


@subset.command()
@click.argument("name")
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["parquet", "jsonl", "webdataset"]), required=True
)
@click.option("--out", "-o", required=True, help="Folder to write into (created if missing).")
@click.option("--version", "-V", "version", type=int, default=None, help="Default: the latest.")
@click.option("--name", "prefix", default=None, help="File name stem (default NAME-vN).")
@click.option("--shard-size", default=1000, show_default=True, help="WebDataset samples per shard.")
@click.option("--shard-max-mb", default=1024, show_default=True, help="WebDataset shard size cap.")
@click.option(
    "--privacy",
    type=click.Choice(["refuse", "blur"]),
    default=None,
    help="refuse: export only clips whose privacy_status is clear; blur: blur detected faces "
    "in every WebDataset clip.",
)
@common_options
def export(
    state: State,
    name: str,
    fmt: str,
    out: str,
    version: int | None,
    prefix: str | None,
    shard_size: int,
    shard_max_mb: int,
    privacy: str | None,
) -> None:
    """Export a subset version as a Parquet or JSONL manifest, or WebDataset shards."""
    from lakehouse.subsets.export import export_subset

    tty = sys.stderr.isatty()

    def progress(done: int, total: int, message: str) -> None:
        line = f"[{done}/{total}] {message}"[:100]
        if tty:
            click.echo("\r" + line.ljust(100), err=True, nl=done == total)
        else:
            click.echo(line, err=True)

    result = export_subset(
        state.lakehouse(),
        name,
        fmt=fmt,
        out=out,
        version=version,
        prefix=prefix,
        shard_max_samples=shard_size,
        shard_max_bytes=shard_max_mb << 20,
        progress=progress,
        privacy=privacy,
    )
    click.echo(
        f"{result.subset} v{result.version}: {result.rows} clips → {len(result.files)} file(s) "
        f"in {result.seconds:.1f} s"
    )
    for path in result.files:
        click.echo(f"  {path}")
    for skipped in result.skipped:
        click.echo(f"  skipped {skipped['clip_id']}: {skipped['reason']}", err=True)
