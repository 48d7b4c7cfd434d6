"""The ``lakehouse`` command line.

Every command takes ``--root`` (and ``--config``), before or after the command name. A user's
mistake prints one sentence on stderr and exits with status 2, without a traceback. Heavy
libraries are imported inside the commands, so ``lakehouse --help`` starts fast.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from lakehouse.cli.common import State, check_status, common_options
from lakehouse.core.errors import LakehouseError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root", default=None, help="Lakehouse root (default: $LAKEHOUSE_ROOT or ./lakehouse_data)."
)
@click.option("--config", "config_file", default=None, help="Configuration TOML file.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="video-lakehouse", prog_name="lakehouse")
@click.pass_context
def cli(ctx: click.Context, root: str | None, config_file: str | None, verbose: int) -> None:
    """A video-clip lakehouse: ingest video folders, query clips with SQL."""
    state = ctx.ensure_object(State)
    state.root, state.config_file, state.verbose = root, config_file, verbose


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--annotations", "-a", multiple=True, help="Annotation file (JSONL/CSV); repeatable.")
@click.option("--source", "-s", default=None, help="Source name (default: the folder's name).")
@click.option(
    "--viewpoint",
    type=click.Choice(["ego", "exo", "unknown"]),
    default=None,
    help="Viewpoint of clips whose annotations do not say.",
)
@click.option("--mapping", default=None, help="Column mapping TOML for CSV/JSONL annotations.")
@common_options
def ingest(
    state: State,
    folder: str,
    annotations: tuple[str, ...],
    source: str | None,
    viewpoint: str | None,
    mapping: str | None,
) -> None:
    """Ingest a folder of videos (and annotation files) as one source, through Dagster."""
    from lakehouse.ingest.annotation_files import ColumnMapping
    from lakehouse.ingest.sources import register_source

    config = state.config()
    from lakehouse.api import Lakehouse

    lh = Lakehouse(config)
    src = register_source(
        lh,
        folder,
        name=source,
        annotations=list(annotations),
        viewpoint=viewpoint,
        mapping=ColumnMapping.load(mapping) if mapping else None,
    )
    click.echo(f"Ingesting {src.uri} as source {src.name!r} into {lh.root} …", err=True)
    report = _run_ingest(config, src.name, state.verbose)
    click.echo(_format_report(report))


def _run_ingest(config: Any, source: str, verbose: int) -> Any:
    import logging

    from dagster_defs.runner import run_ingest

    level = logging.DEBUG if verbose else logging.INFO
    logging.getLogger("dagster").setLevel(level)
    return run_ingest(config, source, log_level=level)


def _format_report(report: Any) -> str:
    lines = [f"Dagster run {report.run_id}: {'succeeded' if report.success else 'failed'}"]
    for asset in report.assets:
        m = asset.metadata
        if "indexes" in m:
            actions = "; ".join(
                f"{table}: {', '.join(entry['actions'])}" for table, entry in m["indexes"].items()
            )
            lines.append(f"  {asset.asset:<16} {actions or 'no embedding tables yet'}")
            continue
        if str(m.get("status", "")).startswith("skipped"):
            lines.append(f"  {asset.asset:<16} skipped: model unavailable (see `lakehouse models`)")
            continue
        if "published" in m:  # a publication asset: the versions readers see now
            shown = ", ".join(f"{t} v{v}" for t, v in sorted(m["published"].items()))
            lines.append(f"  {asset.asset:<16} readers now see {shown or 'no tables yet'}")
            continue
        line = (
            f"  {asset.asset:<16} {m.get('rows_in_source', 0):>7} rows"
            f"  (+{m.get('inserted', 0)} new, {m.get('updated', 0)} updated,"
            f" {m.get('deleted', 0)} removed)  version {m.get('table_version')}"
        )
        if m.get("quarantined"):
            line += f"  quarantined: {m['quarantined']}"
        lines.append(line)
    for check in report.checks:
        status = check_status(check)
        lines.append(f"  check {check.asset}.{check.check}: {status}")
    return "\n".join(lines)


@cli.command()
@common_options
def tables(state: State) -> None:
    """List the tables with their row counts, latest versions and the versions readers see."""
    lh = state.lakehouse()
    infos = lh.info()
    if not infos:
        click.echo(f"No tables yet in {lh.root}; run `lakehouse ingest DIR` or `lakehouse demo`.")
        return
    width = max(len(t.name) for t in infos)
    click.echo(f"{'table'.ljust(width)}  {'rows':>9}  {'version':>7}  {'published':>9}  uri")
    for t in infos:
        published = "-" if t.published is None else str(t.published)
        click.echo(f"{t.name.ljust(width)}  {t.rows:>9}  {t.version:>7}  {published:>9}  {t.uri}")


@cli.command()
@common_options
def sources(state: State) -> None:
    """List the registered sources (one Dagster partition each)."""
    from lakehouse.ingest.sources import list_sources

    for src in list_sources(state.lakehouse()):
        files = ", ".join(src.annotation_files) or "no annotation files"
        click.echo(f"{src.name}: {src.uri} ({files}; viewpoint {src.viewpoint})")


@cli.command()
@click.argument("query")
@click.option(
    "--format",
    "-f",
    "fmt",
    default="table",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    help="Output format.",
)
@click.option("--out", "-o", default=None, help="Write to this file instead of stdout.")
@click.option("--param", "-p", "params", multiple=True, help="Bound parameter for ? (repeatable).")
@common_options
def sql(state: State, query: str, fmt: str, out: str | None, params: tuple[str, ...]) -> None:
    """Run one read-only SQL query (or a .sql file) over the lakehouse tables and views."""
    from lakehouse.query.session import read_query_arg
    from lakehouse.render.output import emit

    lh = state.lakehouse()
    # a query typed here may be anyone's: it runs in its own process under hard limits
    table = lh.sql(read_query_arg(query), list(params) or None, isolated=True)
    emit(table, fmt, out, sys.stdout)
    if out:
        click.echo(f"Wrote {table.num_rows} rows to {out}", err=True)


def _coerce(value: str) -> Any:
    """A --param value: an integer or a decimal number when it reads as one, else text."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


@cli.command()
@click.argument("text", required=False)
@click.option("--where", "-w", default=None, help="SQL predicate over clip_facts columns.")
@click.option("--param", "-p", "params", multiple=True, help="Value for a ? in --where.")
@click.option("-k", "k", default=10, show_default=True, help="Number of clips.")
@click.option(
    "--mode",
    "-m",
    default="hybrid",
    show_default=True,
    type=click.Choice(["visual", "caption", "text", "hybrid"]),
)
@click.option("--like", default=None, help="Find clips like this clip_id instead of a text.")
@click.option("--format", "-f", "fmt", default="table", type=click.Choice(["table", "json", "csv"]))
@click.option("--out", "-o", default=None, help="Write to this file instead of stdout.")
@click.option(
    "--html",
    "html_file",
    default=None,
    help="Also write a contact sheet (keyframes, captions, scores) to this HTML file.",
)
@common_options
def search(
    state: State,
    text: str | None,
    where: str | None,
    params: tuple[str, ...],
    k: int,
    mode: str,
    like: str | None,
    fmt: str,
    out: str | None,
    html_file: str | None,
) -> None:
    """Semantic search: clips matching TEXT (or --like CLIP_ID), within --where."""
    from lakehouse.core.errors import InputError
    from lakehouse.render.output import emit

    if (text is None) == (like is None):
        raise InputError("Give a query TEXT or --like CLIP_ID (not both).")
    if html_file:
        from lakehouse.render.contact_sheet import check_target

        check_target(html_file)  # before the search, not after it
    lh = state.lakehouse()
    table = lh.search(  # holds a reader lease on the vectors it reads
        text,
        like=like,
        where=where,
        params=[_coerce(p) for p in params],
        k=k,
        mode=mode,
    )
    emit(table, fmt, out, sys.stdout)
    if html_file:
        from lakehouse.render.contact_sheet import contact_sheet
        from lakehouse.search.filters import bind_parameters

        query = f"clips like {like}" if like else repr(text)
        condition = bind_parameters(where, [_coerce(p) for p in params]) if where else None
        sheet = contact_sheet(
            lh,
            table,
            title=f"Search: {query}",
            subtitle=f"{mode} search, top {k}" + (f", where {condition}" if condition else ""),
        )
        path = sheet.save(html_file)
        click.echo(f"Wrote a contact sheet of {table.num_rows} clips to {path}", err=True)


@cli.command()
@common_options
def models(state: State) -> None:
    """Show what each configured model resolves to, and the vectors stored per model."""
    from lakehouse.core.schemas import CLIP_TABLE, TEXT_TABLE
    from lakehouse.models.resolve import resolve_clip, resolve_text

    lh = state.lakehouse()
    settings = lh.config.models
    for label, resolved, table in (
        ("clip (visual)", resolve_clip(settings), CLIP_TABLE),
        ("text (captions)", resolve_text(settings), TEXT_TABLE),
    ):
        click.echo(f"{label}: {resolved.name}")
        click.echo(
            f"  resolves to: {resolved.origin}"
            + (f" ({resolved.location})" if resolved.location else "")
        )
        click.echo(f"  model id:    {resolved.model_id or '-'}")
        if resolved.dim:
            click.echo(f"  dimension:   {resolved.dim}")
        if resolved.message:
            click.echo(f"  note:        {resolved.message}")
        if lh.exists(table):
            from lakehouse.query.session import Session

            with Session(lh, latest=True) as session:  # what is stored, published or not
                counts = session.query(
                    f"select model_id, count(distinct clip_id) as clips from {table} group by 1 "
                    "order by 2 desc"
                ).to_pylist()
            for row in counts:
                mark = "configured" if row["model_id"] == resolved.model_id else "stale"
                click.echo(f"  stored:      {row['clips']} clips by {row['model_id']} ({mark})")


@cli.command()
@click.option("--source", "-s", default=None, help="Only this source (default: all).")
@common_options
def embed(state: State, source: str | None) -> None:
    """(Re-)embed clips with the configured models and refresh the search indexes."""
    import logging

    from dagster_defs.definitions import EMBED_JOB
    from dagster_defs.runner import run_ingest
    from lakehouse.ingest.sources import get_source, list_sources

    config = state.config()
    lh = state.lakehouse()
    names = [get_source(lh, source).name] if source else [s.name for s in list_sources(lh)]
    level = logging.DEBUG if state.verbose else logging.INFO
    for name in names:
        report = run_ingest(config, name, log_level=level, job_name=EMBED_JOB)
        click.echo(f"[{name}] " + _format_report(report))


@cli.command()
@click.option("--source", "-s", default=None, help="Only this source (default: all).")
@common_options
def signals(state: State, source: str | None) -> None:
    """Hand, body, face and quality signals of clips lacking them for the current models, then
    the predicted viewpoints and near-duplicate clusters (Dagster runs)."""
    import logging

    from dagster_defs.definitions import SIGNALS_JOB
    from dagster_defs.runner import run_curation, run_ingest
    from lakehouse.ingest.sources import get_source, list_sources

    config = state.config()
    lh = state.lakehouse()
    names = [get_source(lh, source).name] if source else [s.name for s in list_sources(lh)]
    level = logging.DEBUG if state.verbose else logging.INFO
    for name in names:
        report = run_ingest(config, name, log_level=level, job_name=SIGNALS_JOB)
        click.echo(f"[{name}] " + _format_signals(report))
    click.echo("[all sources] " + _format_signals(run_curation(config, log_level=level)))


def _format_signals(report: Any) -> str:
    keys = (
        "analysed",
        "rows_in_source",
        "rows",
        "held_out_accuracy",
        "predicted_unlabelled",
        "clusters",
        "near_duplicates",
        "message",
        "published",
    )
    lines = [f"run {report.run_id}"]
    for asset in report.assets:
        shown = {k: asset.metadata[k] for k in keys if k in asset.metadata}
        lines.append(f"  {asset.asset:<22} " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    for check in report.checks:
        state = check_status(check)
        lines.append(f"  check {check.asset}:{check.check} {state}")
    return "\n".join(lines)


@cli.command()
@click.option("--source", "-s", default=None, help="Only this source.")
@common_options
def quarantine(state: State, source: str | None) -> None:
    """Show every input that could not be used, with its stage and reason."""
    from lakehouse.render.output import to_text_table

    query = "select source, stage, reason_code, input_uri, locator, message from quarantine"
    params = None
    if source:
        query += " where source = ?"
        params = [source]
    table = state.lakehouse().sql(query + " order by source, stage, input_uri, locator", params)
    click.echo(to_text_table(table), nl=False)


@cli.command()
@common_options
def config(state: State) -> None:
    """Print the effective configuration as JSON."""
    import json

    click.echo(json.dumps(state.config().to_dict(), indent=2, default=str))


@cli.command()
@click.option(
    "--corpus",
    default="./demo_corpus",
    show_default=True,
    help="Where to generate the demo videos.",
)
@click.option(
    "--exports", default="./exports", show_default=True, help="Where to export the demo subset."
)
@common_options
def demo(state: State, corpus: str, exports: str) -> None:
    """Generate a small synthetic corpus, ingest it through Dagster, query it, make a subset."""
    from lakehouse.cli.demo import run_demo

    run_demo(state.config(), corpus, echo=click.echo, verbose=state.verbose, exports=exports)


@cli.command()
@click.option("--port", "-p", default=3000, show_default=True, help="Port on 127.0.0.1.")
@click.option("--read-only", is_flag=True, help="Browse only: no runs can be launched.")
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    help="Also accept requests for this host name (e.g. a tunnel's); loopback is always accepted.",
)
@common_options
def ui(state: State, port: int, read_only: bool, allow_hosts: tuple[str, ...]) -> None:
    """Start the Dagster UI for this lakehouse (bound to 127.0.0.1; see the README's warning)."""
    from lakehouse.cli.ui import run_ui

    code = run_ui(
        state.config(),
        port=port,
        read_only=read_only,
        config_file=state.config_file,
        allow_hosts=allow_hosts,
        echo=click.echo,
    )
    sys.exit(code)


def _register_groups() -> None:
    from lakehouse.cli.subset import subset

    cli.add_command(subset)


_register_groups()

# click 8.2+ raises this (a UsageError) for a group given no command; 8.1 printed help itself
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="lakehouse", standalone_mode=False, obj=State())
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except _NO_ARGS_IS_HELP as exc:  # a bare group name: its help is the answer
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # one line, like every other user error, instead of click's usage block
        command = exc.ctx.command_path if exc.ctx is not None else "lakehouse"
        click.echo(f"error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LakehouseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        # the environment, not a bug: name the path and the problem in one line
        click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
