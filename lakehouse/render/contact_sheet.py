"""Contact sheets: the keyframes of a list of clips (search hits, a subset, any query with a
``clip_id`` column) with their captions, scores and spans, as one self-contained HTML page.

The page holds everything inline — thumbnails as ``data:`` URIs, styles in a ``<style>`` — and
a Content-Security-Policy that forbids fetching anything, so it opens from disk, in a mail
attachment or in a notebook the same way. Every text from the tables (captions come from
annotation files) is HTML-escaped. ``lakehouse search … --html FILE`` writes one; in a notebook a
:class:`ContactSheet` displays itself.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.core.errors import InputError
from lakehouse.render.plots import data_uri
from lakehouse.storage.filters import in_list

if TYPE_CHECKING:
    import pyarrow as pa

    from lakehouse.storage.store import Store

MAX_CLIPS = 500
DETAIL_COLUMNS = ("uri", "start_s", "end_s", "duration_s", "viewpoint", "short_caption", "source")
JPEG_MAGIC = b"\xff\xd8\xff"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
.lh-sheet{font:14px/1.4 system-ui,sans-serif;color:#222}
.lh-sheet h1{font-size:18px;margin:0 0 4px}
.lh-sheet .lh-sub{color:#666;margin:0 0 12px}
.lh-sheet .lh-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
.lh-sheet .lh-card{border:1px solid #ddd;border-radius:6px;padding:8px;background:#fff}
.lh-sheet .lh-head{display:flex;justify-content:space-between;font-weight:600}
.lh-sheet .lh-frames{display:flex;flex-wrap:wrap;gap:4px;margin:6px 0}
.lh-sheet .lh-frames img{height:84px;border-radius:3px}
.lh-sheet .lh-none{height:84px;display:flex;align-items:center;color:#999}
.lh-sheet .lh-meta{color:#555;font-size:12px}
.lh-sheet code{font-size:11px;color:#777}
"""


@dataclass
class Card:
    """One clip on the sheet."""

    rank: int
    clip_id: str
    score: float | None
    caption: str | None
    viewpoint: str | None
    start_s: float | None
    end_s: float | None
    duration_s: float | None
    uri: str | None
    source: str | None
    keyframes: list[tuple[float | None, bytes]] = field(default_factory=list)


@dataclass(repr=False)
class ContactSheet:
    """Clips with their keyframes, in order; ``html()`` is the page, ``save()`` writes it."""

    title: str
    cards: list[Card]
    subtitle: str = ""

    def __repr__(self) -> str:  # the plain-text view in a notebook, without the JPEG bytes
        frames = sum(len(c.keyframes) for c in self.cards)
        return f"<ContactSheet {self.title!r}: {len(self.cards)} clips, {frames} keyframes>"

    def fragment(self) -> str:
        """The sheet as an HTML fragment (styles scoped to it), for embedding."""
        parts = [f'<div class="lh-sheet"><style>{STYLE}</style>']
        parts.append(f"<h1>{_e(self.title)}</h1>")
        if self.subtitle:
            parts.append(f'<p class="lh-sub">{_e(self.subtitle)}</p>')
        parts.append('<div class="lh-grid">')
        parts.extend(_card_html(card) for card in self.cards)
        parts.append("</div></div>")
        return "".join(parts)

    def html(self) -> str:
        """A complete, self-contained HTML document."""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(self.title)}</title></head><body>{self.fragment()}</body></html>\n"
        )

    def _repr_html_(self) -> str:  # Jupyter shows the sheet inline
        return self.fragment()

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the page to ``path`` atomically (a temporary file beside it, then a rename);
        returns the absolute path."""
        from lakehouse.core.files import write_atomic

        target = check_target(path)
        page = self.html()

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(page)

        write_atomic(target, write)
        return target


def check_target(path: str | os.PathLike[str]) -> str:
    """The absolute path a sheet may be written to, or a clear error (checked before any work)."""
    target = os.path.abspath(os.fspath(path))
    if "\x00" in target:
        raise InputError("The contact sheet's file name must not contain a NUL byte.")
    if os.path.isdir(target):
        raise InputError(f"{target} is a folder; give a file name such as hits.html.")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise InputError(
            f"Folder {folder} does not exist; create it or write the contact sheet elsewhere."
        )
    return target


def contact_sheet(
    lh: Store,
    clips: pa.Table | Sequence[str],
    *,
    title: str = "Clips",
    subtitle: str = "",
    keyframes_per_clip: int = 4,
) -> ContactSheet:
    """A contact sheet of ``clips`` in their order: an Arrow table with a ``clip_id`` column
    (such as :func:`lakehouse.search.ranking.search` returns; its ``score`` and any of the clip
    columns it has are shown) or a list of clip ids. Columns the table lacks come from the clip
    rows."""
    rows = _rows(clips)
    if len(rows) > MAX_CLIPS:
        raise InputError(
            f"A contact sheet holds at most {MAX_CLIPS} clips ({len(rows)} given); ask for fewer."
        )
    if keyframes_per_clip < 1:
        raise InputError("keyframes_per_clip must be at least 1.")
    ids = list(dict.fromkeys(r["clip_id"] for r in rows))
    facts = _facts(lh, ids)
    frames = _keyframes(lh, ids, keyframes_per_clip)
    cards = []
    for rank, row in enumerate(rows, start=1):
        info = {**facts.get(row["clip_id"], {}), **{k: v for k, v in row.items() if v is not None}}
        cards.append(
            Card(
                rank=rank,
                clip_id=row["clip_id"],
                score=info.get("score"),
                caption=info.get("short_caption"),
                viewpoint=info.get("viewpoint"),
                start_s=info.get("start_s"),
                end_s=info.get("end_s"),
                duration_s=info.get("duration_s"),
                uri=info.get("uri"),
                source=info.get("source"),
                keyframes=frames.get(row["clip_id"], []),
            )
        )
    return ContactSheet(title=title, cards=cards, subtitle=subtitle)


def _rows(clips: pa.Table | Sequence[str]) -> list[dict[str, Any]]:
    if isinstance(clips, str):
        raise InputError("Pass a table with a clip_id column or a list of clip ids, not a string.")
    if hasattr(clips, "column_names"):
        if "clip_id" not in clips.column_names:
            raise InputError("A contact sheet needs a clip_id column in the table it is given.")
        names = clips.column_names
        keep = [c for c in ("clip_id", "score", *DETAIL_COLUMNS) if c in names]
        rows = clips.select(keep).to_pylist()
        if "score" not in names and "semantic_score" in names:  # a subset's members
            for row, score in zip(rows, clips.column("semantic_score").to_pylist(), strict=True):
                row["score"] = score
    else:
        rows = [{"clip_id": clip_id} for clip_id in clips]
    if any(not isinstance(r["clip_id"], str) for r in rows):
        raise InputError("Every clip_id on a contact sheet must be a string.")
    return rows


def _facts(lh: Store, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The clips' own columns, from the version of ``clips`` readers see (what ``clip_facts``
    shows for them: every detail column is a column of the clip row)."""
    ds = lh.published_dataset("clips") if ids else None
    if ds is None:
        return {}
    table = ds.to_table(columns=["clip_id", *DETAIL_COLUMNS], filter=in_list("clip_id", ids))
    return {r["clip_id"]: r for r in table.to_pylist()}


def _keyframes(
    lh: Store, ids: list[str], per_clip: int
) -> dict[str, list[tuple[float | None, bytes]]]:
    """Up to ``per_clip`` keyframes per clip, spread over the clip, from the current keyframe
    settings where a clip has frames of several."""
    if not ids or not lh.exists("keyframes"):
        return {}
    table = lh.read(
        "keyframes",
        columns=["clip_id", "idx", "clip_time_s", "settings", "jpeg"],
        filter=in_list("clip_id", ids),
    )
    current = lh.config.keyframes.fingerprint()
    by_clip: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in table.to_pylist():
        if row["jpeg"] and row["jpeg"][:3] == JPEG_MAGIC:
            by_clip.setdefault(row["clip_id"], {}).setdefault(row["settings"], []).append(row)
    out = {}
    for clip_id, by_settings in by_clip.items():
        frames = by_settings.get(current) or next(iter(by_settings.values()))
        frames.sort(key=lambda r: r["idx"])
        if len(frames) > per_clip:  # evenly spaced, first and last included
            step = (len(frames) - 1) / max(per_clip - 1, 1)
            frames = [frames[round(i * step)] for i in range(per_clip)]
        out[clip_id] = [(r["clip_time_s"], r["jpeg"]) for r in frames]
    return out


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def _card_html(card: Card) -> str:
    images = "".join(
        f'<img src="{data_uri(jpeg, "image/jpeg")}" alt="keyframe at {_seconds(t)} s" '
        f'title="{_seconds(t)} s into the clip">'
        for t, jpeg in card.keyframes
    )
    frames = images or '<div class="lh-none">no keyframes</div>'
    score = "" if card.score is None else f'<span class="lh-score">score {card.score:.4g}</span>'
    span = f"{_seconds(card.start_s)}–{_seconds(card.end_s)} s ({_seconds(card.duration_s)} s)"
    name = os.path.basename(card.uri) if card.uri else ""
    meta = " · ".join(
        _e(part) for part in (card.viewpoint or "unknown", span, card.source, name) if part
    )
    return (
        f'<div class="lh-card" data-clip-id="{_e(card.clip_id)}" data-rank="{card.rank}">'
        f'<div class="lh-head"><span>#{card.rank}</span>{score}</div>'
        f'<div class="lh-frames">{frames}</div>'
        f'<div class="lh-caption">{_e(card.caption or "(no caption)")}</div>'
        f'<div class="lh-meta" title="{_e(card.uri)}">{meta}</div>'
        f"<code>{_e(card.clip_id)}</code></div>"
    )
