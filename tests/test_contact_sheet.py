"""Contact sheets: `lakehouse search --html` writes a self-contained page of the hits' keyframes,
in rank order, with captions and scores; the page is parsed back and its images decoded."""

import base64
import io
import os
from html.parser import HTMLParser

import pytest
from PIL import Image

from lakehouse.cli.main import main
from lakehouse.core.errors import InputError
from lakehouse.render.contact_sheet import MAX_CLIPS, Card, ContactSheet, contact_sheet
from lakehouse.search.ranking import search


class Sheet(HTMLParser):
    """The cards of a contact sheet page: rank, clip id, images, caption and meta text."""

    def __init__(self, page: str):
        super().__init__()
        self.cards: list[dict] = []
        self.tags: set[str] = set()
        self.csp = None
        self.sources: list[str] = []
        self._text_of: str | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy":
            self.csp = attrs["content"]
        for name in ("src", "href"):
            if name in attrs:
                self.sources.append(attrs[name])
        classes = (attrs.get("class") or "").split()
        if "lh-card" in classes:
            self.cards.append(
                {
                    "clip_id": attrs["data-clip-id"],
                    "rank": int(attrs["data-rank"]),
                    "images": [],
                    "text": {},
                }
            )
        elif tag == "img" and self.cards:
            self.cards[-1]["images"].append(attrs["src"])
        for kind in ("lh-caption", "lh-meta", "lh-score"):
            if kind in classes:
                self._text_of = kind

    def handle_data(self, data):
        if self._text_of and self.cards:
            text = self.cards[-1]["text"]
            text[self._text_of] = text.get(self._text_of, "") + data

    def handle_endtag(self, tag):
        self._text_of = None


def decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1], validate=True)))
    image.load()
    return image


def cli(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:  # errors exit with a status; success returns
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_search_html_writes_the_hits_in_order_with_decodable_keyframes(
    preview_lakehouse, tmp_path, capsys
):
    lh = preview_lakehouse
    target = tmp_path / "dance.html"
    args = ["a person dancing in a costume", "--where", "viewpoint = ?", "-p", "exo", "-k", "5"]
    code, out, err = cli(capsys, "--root", lh.root, "search", *args, "--html", str(target))
    assert code == 0 and "Wrote a contact sheet of 5 clips" in err
    assert "clip_id" in out  # the results are still printed

    hits = search(lh, "a person dancing in a costume", where="viewpoint = ?", params=["exo"], k=5)
    page = Sheet(target.read_text(encoding="utf-8"))
    assert [c["clip_id"] for c in page.cards] == hits.column("clip_id").to_pylist()
    assert [c["rank"] for c in page.cards] == [1, 2, 3, 4, 5]

    keyframes = lh.sql(
        "select clip_id, count(*) as n, any_value(width) as w, any_value(height) as h "
        "from keyframes group by clip_id"
    ).to_pylist()
    frames = {r["clip_id"]: r for r in keyframes}
    for card, hit in zip(page.cards, hits.to_pylist(), strict=True):
        expected = frames[card["clip_id"]]
        assert len(card["images"]) == min(4, expected["n"]) > 0
        for uri in card["images"]:
            image = decode(uri)
            assert image.format == "JPEG" and image.size == (expected["w"], expected["h"])
        assert card["text"]["lh-caption"] == hit["short_caption"]
        assert card["text"]["lh-score"] == f"score {hit['score']:.4g}"
        meta = card["text"]["lh-meta"]
        assert meta.startswith("exo · 0–") and os.path.basename(hit["uri"]) in meta
        assert f"({hit['duration_s']:.2f}".rstrip("0").rstrip(".") in meta

    # self-contained: nothing to fetch, no script, and a policy that forbids fetching
    assert all(s.startswith("data:image/jpeg;base64,") for s in page.sources)
    assert "script" not in page.tags and "link" not in page.tags
    assert "default-src 'none'" in page.csp and "img-src data:" in page.csp
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_any_list_of_clips_gets_its_details_from_clip_facts(preview_lakehouse):
    lh = preview_lakehouse
    rows = lh.sql(
        "select clip_id, short_caption, viewpoint from clip_facts order by clip_id desc limit 3"
    ).to_pylist()
    sheet = contact_sheet(lh, [r["clip_id"] for r in rows], keyframes_per_clip=2)
    assert [c.clip_id for c in sheet.cards] == [r["clip_id"] for r in rows]
    for card, row in zip(sheet.cards, rows, strict=True):
        assert card.caption == row["short_caption"] and card.viewpoint == row["viewpoint"]
        assert card.score is None and 1 <= len(card.keyframes) <= 2
        times = [t for t, _ in card.keyframes]
        assert times == sorted(times)
    assert sheet._repr_html_().startswith('<div class="lh-sheet">')  # shown inline in Jupyter


def test_text_from_annotations_is_escaped():
    card = Card(
        rank=1,
        clip_id='x" onmouseover="alert(1)',
        score=0.5,
        caption="<script>alert('caption')</script> & <img src=http://evil/>",
        viewpoint="ego",
        start_s=1.0,
        end_s=2.5,
        duration_s=1.5,
        uri="/videos/<b>.mp4",
        source="cam",
    )
    page = Sheet(ContactSheet(title="<i>title</i>", cards=[card]).html())
    assert "script" not in page.tags and "i" not in page.tags and "b" not in page.tags
    assert page.sources == []  # the caption's <img> is text, not an image
    assert page.cards[0]["clip_id"] == 'x" onmouseover="alert(1)'
    assert page.cards[0]["text"]["lh-caption"] == card.caption
    assert "no keyframes" in ContactSheet(title="t", cards=[card]).html()


def test_the_output_path_is_handled_safely(preview_lakehouse, tmp_path):
    lh = preview_lakehouse
    (clip_id,) = lh.sql("select clip_id from clips order by clip_id limit 1").column(0).to_pylist()
    sheet = contact_sheet(lh, [clip_id])
    with pytest.raises(InputError, match="is a folder"):
        sheet.save(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        sheet.save(tmp_path / "missing" / "sheet.html")
    # an existing file is replaced whole; a symlink is replaced, its target left alone
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    link = tmp_path / "link.html"
    link.symlink_to(outside)
    sheet.save(link)
    assert outside.read_text() == "keep me" and not link.is_symlink()
    assert Sheet(link.read_text()).cards[0]["clip_id"] == clip_id
    assert sorted(os.listdir(tmp_path)) == ["link.html", "outside.txt"]


def test_bad_inputs_say_what_to_do(preview_lakehouse, tmp_path, capsys):
    lh = preview_lakehouse
    with pytest.raises(InputError, match="clip_id column"):
        contact_sheet(lh, lh.sql("select video_id from videos limit 1"))
    with pytest.raises(InputError, match="not a string"):
        contact_sheet(lh, "abc")
    with pytest.raises(InputError, match=f"at most {MAX_CLIPS} clips"):
        contact_sheet(lh, [f"c{i}" for i in range(MAX_CLIPS + 1)])
    code, out, err = cli(
        capsys, "--root", lh.root, "search", "dancing", "--html", str(tmp_path / "no" / "x.html")
    )
    assert code == 2 and err.startswith("error: Folder") and "does not exist" in err
    assert out == ""  # refused before searching
