"""Pictures in materialization metadata: SVG bar charts and keyframe strips that decode."""

import io

import pyarrow as pa
from conftest import svg_of
from PIL import Image

from dagster_defs.metadata import duration_histogram
from lakehouse.render.plots import (
    bar_chart_svg,
    duration_bins,
    markdown_image,
    thumbnail_strip_jpeg,
)


def bars(svg):
    """Bar lengths drawn by the chart's path (``M x y h LENGTH v … z`` per bar)."""
    d = svg.find("{*}path").get("d")
    return [int(part.split("v")[0]) for part in d.split("h")[1::2]]


def test_duration_bins_count_every_value_once():
    rows = duration_bins([0.5, 1.99, 2.0, 4.9, 7, 29.9, 30, 301, None])
    counts = dict(rows)
    assert counts["0-2 s"] == 2 and counts["2-5 s"] == 2 and counts["5-10 s"] == 1
    assert counts["20-30 s"] == 1 and counts["30-60 s"] == 1 and counts[">= 300 s"] == 1
    assert sum(counts.values()) == 8
    assert ">= 300 s" not in dict(duration_bins([1, 2, 3]))  # the open bin only when used
    # an Arrow column read through numpy (a null is NaN) gives the same counts, unwalked
    column = pa.array([0.5, 1.99, 2.0, 4.9, 7, 29.9, 30, 301, None, -1.0])
    assert duration_bins(column.to_numpy(zero_copy_only=False)) == rows


def test_duration_histogram_is_an_svg_the_ui_draws_inline():
    markdown = duration_histogram([3.0, 4.0, 6.0, 7.0, 8.0, 12.0])
    # Dagster draws markdown metadata inline only below 1,000 characters
    assert len(markdown) < 1000
    svg = svg_of(markdown)
    labels = list(svg.findall("{*}text")[1].itertext())
    assert labels == ["2-5 s", "5-10 s", "10-20 s"]  # empty bins around the values dropped
    counts = list(map(int, svg.find("{*}text[@fill='gray']").itertext()))
    assert counts == [2, 3, 1]
    lengths = bars(svg)
    assert lengths[1] == max(lengths) and lengths[0] == 2 * lengths[2]
    assert duration_histogram([]) == "_no clips_"


def test_chart_labels_are_escaped():
    svg = bar_chart_svg([("<script>", 1), ("a & b", 0)], title="</svg><b>")
    parsed = svg_of(markdown_image(svg, "image/svg+xml", "a [chart]"))
    assert "<script>" in "".join(parsed.itertext())  # text, not an element
    assert not parsed.findall(".//{*}script") and not parsed.findall(".//{*}b")


def test_thumbnail_strip_puts_keyframes_side_by_side():
    frames = []
    for colour, size in (("red", (64, 48)), ("blue", (48, 64))):
        buffer = io.BytesIO()
        Image.new("RGB", size, colour).save(buffer, format="JPEG")
        frames.append(buffer.getvalue())
    strip = Image.open(io.BytesIO(thumbnail_strip_jpeg(frames, height=96)))
    assert strip.format == "JPEG" and strip.height == 96
    assert strip.width == 128 + 72 + 4  # each scaled to the height, 4 px apart
    red, blue = strip.getpixel((64, 48)), strip.getpixel((128 + 4 + 36, 48))
    assert red[0] > 200 > red[2] and blue[2] > 200 > blue[0]
