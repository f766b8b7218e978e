"""Renders HTML documents to plain UTF-8 text, one .txt per input file.

Usage: html2text.py OUT_DIR FILE.html...

Keeps the prose: headings, paragraphs, list items, table cells and code, each
block on its own line; drops scripts, styles, navigation and page chrome.
Only the standard library is used (no network, no extra packages).
"""

import html.parser
import pathlib
import re
import sys

BLOCKS = {"p", "div", "br", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6",
          "pre", "tr", "table", "blockquote", "section", "title", "td", "th"}
SKIP = {"script", "style", "head", "nav", "noscript"}
# Chrome of DocBook-generated pages: navigation headers/footers.
SKIP_CLASSES = {"navheader", "navfooter", "toc", "breadcrumbs", "docnav"}
SKIP_IDS = {"banner"}


class Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self.skip_depth = 0
        self.stack = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = set((attributes.get("class") or "").split())
        skipping = tag in SKIP or bool(classes & SKIP_CLASSES) or attributes.get("id") in SKIP_IDS
        if tag not in ("br", "img", "meta", "link", "hr", "input"):
            self.stack.append(skipping)
            if skipping:
                self.skip_depth += 1
        if tag in BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("br", "img", "meta", "link", "hr", "input"):
            return
        if self.stack:
            if self.stack.pop():
                self.skip_depth -= 1
        if tag in BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip_depth == 0:
            self.parts.append(data)

    def text(self):
        raw = "".join(self.parts)
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


def main():
    out_dir = pathlib.Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[2:]:
        path = pathlib.Path(name)
        parser = Text()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        text = parser.text()
        if len(text) > 200:
            (out_dir / (path.stem + ".txt")).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
