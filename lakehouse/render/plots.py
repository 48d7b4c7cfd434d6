"""Small pictures for places that show images but run no plotting library: bar charts of counts
(compact SVG) and strips of keyframe thumbnails (JPEG, with Pillow), handed out as data URIs
inside markdown, which the Dagster UI draws in an asset's materialization metadata.
"""

from __future__ import annotations

import base64
import io
import itertools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    import numpy as np

DURATION_EDGES_S = (0, 2, 5, 10, 20, 30, 60, 120, 300)


def durations_array(durations: Iterable[float | None] | np.ndarray) -> np.ndarray:
    """The known durations as a float array: ``None`` and NaN (a null read through numpy)
    left out. An array (``column.to_numpy()``) is used as it is, not walked in Python."""
    import numpy as np

    if isinstance(durations, np.ndarray):
        values = durations.astype(np.float64, copy=False)
    else:
        values = np.fromiter((np.nan if d is None else d for d in durations), np.float64)
    return values[~np.isnan(values)]


def duration_bins(
    durations: Iterable[float | None] | np.ndarray, edges: Sequence[float] = DURATION_EDGES_S
) -> list[tuple[str, int]]:
    """Counts of ``durations`` per bin ``[edges[i], edges[i+1])`` plus ``>= edges[-1]``; the
    open last bin is listed only when it holds any value. ``None`` values are left out."""
    import numpy as np

    labels = [f"{a:g}-{b:g} s" for a, b in itertools.pairwise(edges)]
    labels.append(f">= {edges[-1]:g} s")
    values = durations_array(durations)
    values = values[values >= edges[0]]
    # a value's bin is the number of inner and upper edges at or below it
    index = np.searchsorted(np.asarray(edges[1:], dtype=np.float64), values, side="right")
    counts = np.bincount(index, minlength=len(labels)).tolist()
    rows = list(zip(labels, counts, strict=True))
    return rows if counts[-1] else rows[:-1]


def bar_chart_svg(
    rows: Sequence[tuple[str, int]], *, title: str, width: int = 320, bar: int = 13
) -> str:
    """A horizontal bar chart of ``(label, count)`` rows as a compact SVG document.

    Compact on purpose: Dagster's UI draws markdown metadata inline only below 1,000
    characters (longer values hide behind a "Show Markdown" button), so a few bars with their
    labels fit in a data URI there. Labels must be plain text; they are XML-escaped."""
    step = bar + 3
    most = max([count for _, count in rows] or [0])
    left = 8 + 6 * max([len(label) for label, _ in rows] or [0])
    span = width - left - 30
    top = 20
    lengths = [round(span * count / most) if most else 0 for _, count in rows]
    bars = "".join(f"M{left} {top + i * step}h{n}v{bar}h-{n}z" for i, n in enumerate(lengths) if n)
    labels = "".join(
        f"<tspan x='{left - 4}' y='{top + i * step + 10}'>{escape(label)}</tspan>"
        for i, (label, _) in enumerate(rows)
    )
    counts = "".join(
        f"<tspan x='{left + n + 3}' y='{top + i * step + 10}'>{count}</tspan>"
        for i, ((_, count), n) in enumerate(zip(rows, lengths, strict=True))
        if count
    )
    height = top + len(rows) * step + 4
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"font-family='sans-serif' font-size='11'><text x='2' y='12'>{escape(title)}</text>"
        f"<path fill='slateblue' d='{bars or 'M0 0'}'/><text text-anchor='end'>{labels}</text>"
        f"<text fill='gray'>{counts}</text></svg>"
    )


def duration_histogram_svg(
    durations: Iterable[float | None] | np.ndarray, *, title: str | None = None
) -> str:
    """An SVG bar chart of clip durations in the bins of :data:`DURATION_EDGES_S`, without the
    empty bins before the shortest and after the longest clip."""
    values = durations_array(durations)
    rows = duration_bins(values)
    filled = [i for i, (_, count) in enumerate(rows) if count]
    if filled:
        rows = rows[filled[0] : filled[-1] + 1]
    return bar_chart_svg(rows, title=title or f"clip durations, {len(values)} clips")


def thumbnail_strip_jpeg(jpegs: Sequence[bytes], *, height: int = 96, quality: int = 80) -> bytes:
    """Keyframe thumbnails (JPEG bytes) side by side at one height, as one JPEG."""
    from PIL import Image

    frames = []
    for data in jpegs:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            ratio = height / image.height
            frames.append(image.resize((max(1, round(image.width * ratio)), height)))
    if not frames:
        raise ValueError("thumbnail_strip_jpeg needs at least one image")
    gap = 4
    strip = Image.new(
        "RGB", (sum(f.width for f in frames) + gap * (len(frames) - 1), height), "white"
    )
    x = 0
    for frame in frames:
        strip.paste(frame, (x, 0))
        x += frame.width + gap
    buffer = io.BytesIO()
    strip.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,…`` for embedding ``data`` in HTML or markdown."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def svg_data_uri(svg: str) -> str:
    """An SVG as a ``data:`` URI, percent-encoding only what a URI or markdown needs (shorter
    than base64)."""
    for char, code in (("%", "%25"), ("<", "%3C"), (">", "%3E"), ("#", "%23"), ("\n", "%0A")):
        svg = svg.replace(char, code)
    return "data:image/svg+xml," + svg


def markdown_image(data: bytes | str, mime: str, alt: str) -> str:
    """A markdown image whose source is ``data`` inline: bytes (base64) or an SVG text."""
    clean = alt.replace("[", "(").replace("]", ")").replace("\n", " ")
    uri = svg_data_uri(data) if isinstance(data, str) else data_uri(data, mime)
    # <…> lets the destination hold spaces (CommonMark); the URI holds no < or >
    return f"![{clean}](<{uri}>)"
