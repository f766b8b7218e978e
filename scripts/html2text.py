"""Renders HTML documents to plain UTF-8 text, one .txt per input file.

Usage: html2text.py OUT_DIR FILE.html...

Keeps the prose: headings, paragraphs, list items, table cells and code, each
block on its own line; drops scripts, styles, navigation and page chrome.
Only the standard library is used (no network, no extra packages).

Also a module: `render(data)` turns one HTML (or XHTML) document, bytes or
str, into a `Rendered` (text + share of the text that sits inside links);
scripts/corpus.py uses it, with extra chrome to skip, for the large corpus.
"""

import gzip
import html.parser
import pathlib
import re
import sys
from dataclasses import dataclass

BLOCKS = {"p", "div", "br", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6",
          "pre", "tr", "table", "blockquote", "section", "title", "td", "th"}
SKIP = {"script", "style", "head", "nav", "noscript"}
# Chrome of DocBook-generated pages: navigation headers/footers.
SKIP_CLASSES = {"navheader", "navfooter", "toc", "breadcrumbs", "docnav"}
SKIP_IDS = {"banner"}
# Elements that never have an end tag (HTML5 "void elements").
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link",
        "meta", "param", "source", "track", "wbr"}
# Elements whose text keeps its line breaks (with `flow`).
PRE = {"pre", "screen", "programlisting", "literallayout", "synopsis", "listing", "xmp"}


class Text(html.parser.HTMLParser):
    """Collects the text outside skipped elements.

    `skip_tags`, `skip_classes` and `skip_ids` add to the defaults above, and
    `extra_blocks` to BLOCKS (for XML formats). Off by default (the default
    corpus uses none of them): `flow` makes newlines in text outside <pre>
    spaces, as a browser does; `link_runs` = N drops runs of N or more lines
    that are nothing but links (menus, tables of contents, "see also" lists);
    `joins` maps an element to the separator put between its child elements
    (a menu path, a key combination). Text inside <a href> is counted apart,
    so that callers can spot link lists (index and navigation pages).
    """

    def __init__(self, skip_tags=(), skip_classes=(), skip_ids=(), extra_blocks=(),
                 flow=False, link_runs=0, joins=None):
        super().__init__(convert_charrefs=True)
        self.skip_tags = SKIP | set(skip_tags)
        self.skip_classes = SKIP_CLASSES | set(skip_classes)
        self.skip_ids = SKIP_IDS | set(skip_ids)
        self.blocks = BLOCKS | set(extra_blocks)
        self.flow = flow
        self.link_runs = link_runs
        self.joins = joins or {}
        self.parts = []
        self.in_link = []  # per part: text inside a link
        self.skip_depth = 0
        self.link_depth = 0
        self.pre_depth = 0
        self.link_chars = 0
        self.text_chars = 0
        # One (tag, skipping, link) per open element; children counts for joins.
        self.stack = []
        self.children = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = set((attributes.get("class") or "").split())
        skipping = (tag in self.skip_tags or bool(classes & self.skip_classes)
                    or attributes.get("id") in self.skip_ids
                    or "hidden" in attributes)
        if self.joins and self.stack and self.stack[-1][0] in self.joins and not self.skip_depth:
            if self.children[-1]:
                self.add(self.joins[self.stack[-1][0]])
            self.children[-1] += 1
        if tag not in VOID:
            link = tag == "a" and "href" in attributes
            self.stack.append((tag, skipping, link))
            self.children.append(0)
            if skipping:
                self.skip_depth += 1
            if link:
                self.link_depth += 1
            if tag in PRE:
                self.pre_depth += 1
        if tag in self.blocks:
            self.add("\n")

    def handle_startendtag(self, tag, attrs):
        # <a name="x"/> in XHTML: opens and closes at once.
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        # Close up to the matching open element (HTML lets <p>, <li>, <td>...
        # go unclosed); an end tag that matches nothing open is ignored.
        if any(open_tag == tag for open_tag, _, _ in self.stack):
            while self.stack:
                open_tag, skipping, link = self.stack.pop()
                self.children.pop()
                if skipping:
                    self.skip_depth -= 1
                if link:
                    self.link_depth -= 1
                if open_tag in PRE:
                    self.pre_depth -= 1
                if open_tag == tag:
                    break
        if tag in self.blocks:
            self.add("\n")

    def add(self, text, link=False):
        self.parts.append(text)
        self.in_link.append(link)

    def handle_data(self, data):
        if self.skip_depth == 0:
            if self.flow and not self.pre_depth:
                data = data.replace("\n", " ")
            self.add(data, self.link_depth > 0)
            n = len(data.strip())
            self.text_chars += n
            if self.link_depth:
                self.link_chars += n

    def text(self):
        raw = "".join(self.parts)
        if self.link_runs:
            raw = self.without_link_runs()
        lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in raw.split("\n")]
        out, blank = [], False
        for line in lines:
            if line:
                out.append(line)
                blank = False
            elif not blank and out:
                out.append("")
                blank = True
        return "\n".join(out).strip() + "\n"

    def without_link_runs(self):
        """The text, less runs of `link_runs` or more lines made only of links."""
        lines, text, linked, plain = [], [], False, False
        for part, link in zip(self.parts, self.in_link):
            pieces = part.split("\n")
            for i, piece in enumerate(pieces):
                if i:
                    lines.append(("".join(text), linked and not plain))
                    text, linked, plain = [], False, False
                text.append(piece)
                if piece.strip(" \t\u00a0"):
                    if link:
                        linked = True
                    elif piece.strip(" \t\u00a0,;:.|·•–-[]()>"):
                        plain = True
        lines.append(("".join(text), linked and not plain))
        keep = [True] * len(lines)
        run = []  # indices of the link-only lines of the current run (blank lines pass)
        for i, (line, only_links) in enumerate(lines + [("end", False)]):
            if only_links:
                run.append(i)
            elif line.strip():
                if len(run) >= self.link_runs:
                    for j in run:
                        keep[j] = False
                run = []
        return "\n".join(line for (line, _), k in zip(lines, keep) if k)


@dataclass
class Rendered:
    text: str
    link_share: float  # share of the text's characters inside <a href>


def decode(data):
    """HTML bytes (gzip-compressed or not) → str: UTF-8, else the declared charset."""
    if isinstance(data, str):
        return data
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        match = re.search(rb"""charset=["']?([A-Za-z0-9_.:-]+)""", data[:4096])
        try:
            return data.decode(match.group(1).decode() if match else "latin-1", errors="replace")
        except LookupError:
            return data.decode("latin-1")


def render(data, **profile):
    """One HTML document (bytes or str) → Rendered. `profile`: see Text."""
    parser = Text(**profile)
    parser.feed(decode(data))
    parser.close()
    return Rendered(parser.text(), parser.link_chars / max(parser.text_chars, 1))


def main():
    out_dir = pathlib.Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[2:]:
        path = pathlib.Path(name)
        text = render(path.read_text(encoding="utf-8", errors="replace")).text
        if len(text) > 200:
            (out_dir / (path.stem + ".txt")).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
