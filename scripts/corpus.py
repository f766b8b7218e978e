"""Renders, cleans and de-duplicates the large French corpus (fetch-corpus.sh --large).

Usage:
  corpus.py packages              the Debian packages to download, one a line
  corpus.py man-packages          those whose French man pages fetch-corpus.sh renders
  corpus.py unpack PKG DEST       unpacks what PKG's rules need from the data tar on stdin
  corpus.py build WORK OUT_DIR    WORK/pkgs/<pkg>/ unpacked packages, WORK/man/<pkg>/
                                  rendered man pages, WORK/versions.tsv; writes
                                  OUT_DIR/<pkg>/*.txt and OUT_DIR/SOURCES.tsv

Only the standard library is used. HTML goes through html2text.render (the
same renderer as the default corpus), with extra page chrome to skip per
package; Mallard (.page) and DocBook help are rendered by the same parser with
their block elements; LyX files, EPUB books and JavaHelp jars are read here.

Cleaning, per document: man-page headers, footers and TRADUCTION (licence)
sections go; English paragraphs go; then a document is dropped when it is
mostly English, mostly links (index and navigation pages), mostly code,
tables or lists (no prose), or under MIN_CHARS characters. De-duplication,
over all packages in the order below (the default corpus first, then by
length within a package, so a one-page edition loses against its chapters):
a document whose whitespace-normalised text was already kept is an exact
duplicate; one whose paragraphs were mostly (NEAR_DUP) already kept is a near
duplicate; in the others, paragraphs of LONG_BLOCK characters or more that
were already kept (licence notes, "how to get there" boxes repeated on every
page) are removed.
"""

import collections
import concurrent.futures
import hashlib
import html
import os
import pathlib
import posixpath
import re
import sys
import unicodedata
import zipfile
from dataclasses import dataclass, field

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import html2text  # noqa: E402

MIN_CHARS = 200      # shorter documents are dropped
NEAR_DUP = 0.8       # share of already-kept paragraph text that makes a near duplicate
LONG_BLOCK = 40      # repeated paragraphs at least this long are removed
MAX_LINK_SHARE = 0.5  # HTML pages with more of their text in links are link lists
MIN_PROSE_SHARE = 0.3  # documents with less text in French sentences are code/tables
MIN_FRENCH = 0.7     # share of French among French+English function words
MAX_ENGLISH = 0.8    # documents with more of their text in English paragraphs are dropped

# Page chrome of the generators used by these packages (beyond html2text's).
CHROME = dict(
    skip_tags={"header", "footer", "aside", "button", "form", "select", "iframe", "svg"},
    skip_classes={
        "nav_table", "menu", "footer_version", "footer_report", "toc_uplink",  # texinfo (LilyPond)
        "related", "sphinxsidebar", "footer", "headerlink", "searchbox",       # Sphinx
        "crosslinks",                                                           # tex4ht
        "navigation", "header", "navbar", "breadcrumb", "toplang", "bottomlang",  # misc., Apache
        "indexterm", "contents-treeview", "index-label",                        # LibreOffice
        "manualnavbar", "path", "permalink",                                    # Scilab, Apache
    },
    skip_ids={"header", "footer", "toc", "TopLeftHeader", "navigation", "quickview",
              "page-header", "footer-wrapper", "DonationFrame"},
    flow=True, link_runs=2,
)
# Mallard (GNOME help): <info> holds credits, licence and link metadata.
MALLARD = dict(
    skip_tags={"info", "links", "media", "comment", "credit", "license", "desc", "revision",
               "xi:include", "include", "figure"},
    extra_blocks={"page", "section", "item", "note", "steps", "terms", "list", "screen",
                  "synopsis", "tree", "example", "quote", "table", "tr", "td", "listing",
                  "code_block"},
    flow=True, joins={"guiseq": " ▸ ", "keyseq": "+"},
)
# DocBook (MATE help and chapters): metadata and legal notices are skipped.
DOCBOOK = dict(
    skip_tags={"info", "bookinfo", "articleinfo", "chapterinfo", "sectioninfo", "legalnotice",
               "revhistory", "authorgroup", "author", "othercredit", "copyright", "publisher",
               "releaseinfo", "indexterm", "keywordset", "remark", "mediaobject",
               "inlinemediaobject", "screenshot", "xi:include", "include"},
    extra_blocks={"para", "simpara", "formalpara", "listitem", "entry", "term", "programlisting",
                  "screen", "row", "note", "tip", "warning", "caution", "important", "sect1",
                  "sect2", "sect3", "sect4", "section", "chapter", "glossentry", "glossdef",
                  "varlistentry", "step", "example", "figure", "itemizedlist",
                  "orderedlist", "variablelist", "informaltable", "abstract", "refsect1",
                  "refsect2", "refnamediv", "refsynopsisdiv", "cmdsynopsis", "qandaentry",
                  "question", "answer", "synopsis", "literallayout", "blockquote"},
    flow=True, joins={"menuchoice": " ▸ ", "keycombo": "+"},
)


@dataclass
class Rule:
    pattern: str            # glob below the package root (or WORK/man/<pkg> for "man")
    kind: str               # man, html, page, docbook, lyx, epub, jar
    profile: dict = field(default_factory=dict)
    exclude: tuple = ()     # fnmatch patterns on the path below the root


def man():
    return Rule("*.txt", "man")


def html_rule(pattern, exclude=()):
    return Rule(pattern, "html", CHROME, exclude)


def desktop_help():
    """GNOME and MATE help: Mallard pages, or DocBook books and chapters."""
    return [Rule("usr/share/help/fr/**/*.page", "page", MALLARD),
            Rule("usr/share/help/fr/**/*.docbook", "docbook", DOCBOOK),
            Rule("usr/share/help/fr/**/*.xml", "docbook", DOCBOOK, ("legal*.xml",))]


# Package → rules. Order matters: de-duplication keeps the first copy.
# The four packages of the default corpus come first; their HTML is rendered
# exactly as there, their man pages without justification or hyphenation.
DEFAULT = {
    "manpages-fr": [man()],
    "manpages-fr-dev": [man()],
    "debian-reference-fr": [Rule("usr/share/debian-reference/*.fr.html", "html")],
    "debian-handbook": [Rule("usr/share/doc/debian-handbook/html/fr-FR/*.html", "html")],
}
EXTRA = {
    # Manuals and help in HTML.
    "libreoffice-help-fr": [html_rule("usr/share/libreoffice/help/fr/**/*.html")],
    "gimp-help-fr": [html_rule("usr/share/gimp/2.0/help/fr/**/*.html")],
    "lilypond-doc-html-fr": [html_rule("usr/share/doc/lilypond/html/**/*.fr.html",
                                       exclude=("*-big-page.fr.html",))],
    "developers-reference-fr": [html_rule("usr/share/developers-reference/fr/*.html",
                                          exclude=("*/genindex.html", "*/search.html",
                                                   "*/developers-reference.html"))],
    "installation-guide-amd64": [html_rule("usr/share/doc/installation-guide-amd64/fr/*.html")],
    "harden-doc": [html_rule("usr/share/doc/harden-doc/html/fr-FR/*.html")],
    "debian-faq-fr": [html_rule("usr/share/doc/debian/FAQ/fr/*.html")],
    "maint-guide-fr": [html_rule("usr/share/doc/maint-guide-fr/html/*.fr.html")],
    "aptitude-doc-fr": [html_rule("usr/share/doc/aptitude/html/fr/*.html")],
    "apt-doc": [html_rule("usr/share/doc/apt-doc/*.fr.html/*.html")],
    "debian-history": [html_rule("usr/share/doc/debian-history/docs/*.fr.html")],
    "debian-edu-doc-fr": [html_rule("usr/share/doc/debian-edu-doc-fr/*.html")],
    "debian-edu-doc-legacy-fr": [html_rule("usr/share/doc/debian-edu-doc-legacy-fr/*.html")],
    "ubuntu-packaging-guide-html-fr": [html_rule("usr/share/doc/ubuntu-packaging-guide-html-fr/*.html",
                                                 exclude=("*/genindex.html", "*/search.html"))],
    "apache2-doc": [html_rule("usr/share/doc/apache2-doc/manual/fr/**/*.html")],
    "texworks-help-fr": [html_rule("usr/share/texworks-help/fr/*.html")],
    "grisbi-common": [html_rule("usr/share/doc/grisbi/fr/*.html")],
    "gosa-help-fr": [html_rule("usr/share/gosa/doc/core/fr/html/**/*.html")],
    # Archives of (X)HTML pages.
    "scilab-doc-fr": [Rule("usr/share/scilab/modules/helptools/jar/scilab_fr_FR_help.jar", "jar", CHROME)],
    "eyes17-manuals-fr": [Rule("usr/share/doc/eyes17/fr/*.epub", "epub", CHROME)],
    # The LaTeX2e reference manual and the TeX Live guide, in French.
    "texlive-lang-french": [html_rule("usr/share/doc/texlive-doc/latex/latex2e-help-texinfo-fr/latex2e-fr.html"),
                            html_rule("usr/share/doc/texlive-doc/texlive/texlive-fr/texlive-fr.html")],
    # LyX's own manuals, translated.
    "lyx-common": [Rule("usr/share/lyx/doc/fr/*.lyx", "lyx")],
    # GNOME help (Mallard) and MATE help (DocBook).
    **{pkg: desktop_help() for pkg in (
        "gnome-user-docs", "gnome-devel-docs", "evolution-common", "accerciser", "anjuta-common",
        "zenity-common", "evince-common", "aisleriot", "orca", "gedit-common", "gnome-terminal-data",
        "seahorse", "eog", "pitivi", "gnome-system-monitor", "shotwell-common", "gthumb-data",
        "gnome-boxes", "simple-scan", "gtranslator", "iagno", "rhythmbox-data", "gnome-calculator",
        "file-roller", "cheese-common", "deja-dup", "totem-common", "gnome-dictionary",
        "mate-user-guide", "mate-utils-common", "pluma-common", "eom-common",
        "mate-control-center-common")},
    # Left out, their French help being (nearly) all English: kicad-doc-fr,
    # atril-common, engrampa-common, mate-calc-common, mate-power-manager-common,
    # mate-system-monitor-common, mate-terminal-common.
    # French man pages shipped by the programs themselves (not in manpages-fr).
    **{pkg: [man()] for pkg in (
        "devscripts", "dpkg-dev", "debhelper", "po4a", "apt", "dpkg", "passwd", "man-db",
        "procps", "debconf-doc", "xz-utils", "adduser", "login", "apt-utils", "psmisc",
        "dselect", "debianutils", "debconf-utils", "vim-common", "apt-listchanges")},
}
SPEC = {**DEFAULT, **EXTRA}
# Packages whose /usr/share/doc/<pkg> is a link to another package's: that one
# is downloaded too, for its copyright file only.
LICENCE_FROM = {"gimp-help-fr": "gimp-help-common", "debconf-utils": "debconf"}
# Where the copyright file does not name the licence of the documents used
# (TeX Live's lists it per CTAN package in /usr/share/doc/<pkg>/Licenses.gz).
LICENCE_NOTE = {"texlive-lang-french": "latex2e-help-texinfo-fr: pd; texlive-fr: not stated "
                                       "(Licenses.gz); TeX Live compilation, Debian parts GPL-2"}


def glob_regex(pattern):
    """A Rule pattern (`**/` any folders, `*` and `?` within a name) as a regex."""
    out = ""
    for part in re.split(r"(\*\*/|\*|\?)", pattern):
        out += {"**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out + r"\Z")


def wanted(pkg):
    """Regexes of the paths (below the root) to unpack from a package."""
    patterns = [f"usr/share/doc/{pkg}/copyright"]
    for rule in SPEC.get(pkg, []):
        patterns.append("usr/share/man/fr/**/*.gz" if rule.kind == "man" else rule.pattern)
    return [glob_regex(p) for p in patterns]


def unpack(pkg, dest):
    """Unpacks, from the data tar on stdin (dpkg-deb --fsys-tarfile), the
    regular files that the rules of `pkg` need, and its copyright file."""
    import tarfile
    regexes = wanted(pkg)
    dest = pathlib.Path(dest)
    n = 0
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
        for member in tar:
            path = posixpath.normpath(re.sub(r"^\./|^/", "", member.name))
            if not member.isfile() or path.startswith("..") or not any(r.match(path) for r in regexes):
                continue
            target = dest / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as out:
                out.write(src.read())
            n += 1
    if n == 0:
        sys.exit(f"corpus.py: nothing to unpack from {pkg}")


# ---------------------------------------------------------------- rendering

def decl_entities(xml):
    """Expands <!ENTITY name "value"> declared in a document's internal subset."""
    entities = dict(re.findall(r'<!ENTITY\s+(\w[\w.-]*)\s+"([^"]*)"\s*>', xml[:20000]))
    if not entities:
        return xml
    for _ in range(3):  # entities may use entities
        xml = re.sub(r"&(\w[\w.-]*);", lambda m: entities.get(m.group(1), m.group(0)), xml)
    return xml


def render_xml(data, profile):
    text = decl_entities(html2text.decode(data))
    text = re.sub(r"<!DOCTYPE[^\[>]*(\[.*?\]\s*)?>", "", text, count=1, flags=re.S)
    text = re.sub(r"<!\[CDATA\[(.*?)\]\]>", lambda m: html.escape(m.group(1)), text, flags=re.S)
    return html2text.render(text, **profile)


LYX_SKIP_INSETS = ("Graphics", "Formula", "ERT", "CommandInset", "Note", "Index", "Preview",
                   "Info", "External", "Box Frameless", "Float figure", "Tabular", "Branch",
                   "VSpace", "Newpage", "listings", "script")
LYX_SPECIAL = {"ldots": "…", "LyX": "LyX", "TeX": "TeX", "LaTeX": "LaTeX", "LaTeX2e": "LaTeX2e",
               "menuseparator": " > ", "softhyphen": "", "textcompwordmark": "",
               "nobreakdash": "-", "slash": "/", "endofsentence": "", "breakableslash": "/",
               "ligaturebreak": ""}


def render_lyx(data):
    """A LyX document → one block per paragraph (layout); insets that are not text dropped."""
    blocks, current = [], []
    skip_depth = 0        # > 0 inside an inset that is not text (figures, maths, LaTeX...)
    params = False        # inside an inset's parameter lines, up to its first blank line
    body = False
    for line in data.decode("utf-8", errors="replace").split("\n"):
        if not body:
            body = line.startswith("\\begin_body")
            continue
        if line.startswith("\\begin_inset"):
            kind = line[len("\\begin_inset "):]
            if skip_depth or kind.startswith(LYX_SKIP_INSETS):
                skip_depth += 1
            elif kind.startswith("Quotes"):
                current.append("« " if kind[-2:-1] == "l" else " »")
            elif kind.startswith("Newline"):
                current.append("\n")
            else:
                params = True
            continue
        if line.startswith("\\end_inset"):
            skip_depth = max(skip_depth - 1, 0)
            params = False
            continue
        if skip_depth:
            continue
        if params:
            params = bool(line.strip()) and not line.startswith("\\begin_layout")
            if params:
                continue
        if line.startswith(("\\begin_layout", "\\end_layout")):
            text = "".join(current).strip()
            if text:
                blocks.append(re.sub(r"[ \t]+", " ", text))
            current = []
        elif line.startswith(("\\backslash", "\\SpecialChar")) or not line.startswith("\\"):
            line = re.sub(r"\\SpecialChar \\?(\w+)", lambda m: LYX_SPECIAL.get(m.group(1), ""), line)
            current.append(line.replace("\\backslash", "\\"))
    return html2text.Rendered("\n\n".join(blocks) + "\n", 0.0)


def zip_pages(path, epub):
    """(member name, bytes) of the HTML pages of a jar (by name) or an EPUB (spine order)."""
    with zipfile.ZipFile(path) as z:
        members = z.namelist()
        names = sorted(n for n in members if n.lower().endswith((".html", ".xhtml", ".htm")))
        opf = next((n for n in members if n.endswith(".opf")), None)
        if epub and opf:
            xml = z.read(opf).decode("utf-8", errors="replace")
            items = {}
            for item in re.findall(r"<item\b[^>]*>", xml):
                ident, href = re.search(r'\bid="([^"]+)"', item), re.search(r'\bhref="([^"]+)"', item)
                if ident and href:
                    items[ident.group(1)] = posixpath.normpath(posixpath.join(posixpath.dirname(opf), href.group(1)))
            spine = [items[i] for i in re.findall(r'<itemref\b[^>]*?idref="([^"]+)"', xml) if i in items]
            names = [n for n in spine if n in set(members)]
        return [(n, z.read(n)) for n in names]


@dataclass
class Doc:
    pkg: str
    name: str          # output file name, without .txt
    text: str
    link_share: float
    kind: str
    drop: str = ""     # why it was dropped ("" = kept so far)
    english_blocks: int = 0


def task_render(task):
    """Renders one input file (or archive) of a package: a list of Doc."""
    pkg, path, rel, kind, profile = task
    path = pathlib.Path(path)
    out = []
    if kind in ("epub", "jar"):
        for member, data in zip_pages(path, kind == "epub"):
            stem = re.sub(r"\.x?html?$", "", member.split("/")[-1])
            r = html2text.render(data, **profile)
            out.append(Doc(pkg, f"{path.stem}_{stem}" if kind == "epub" else stem, r.text, r.link_share, kind))
    else:
        data = path.read_bytes()
        if kind == "man":
            r = html2text.Rendered(data.decode("utf-8", errors="replace"), 0.0)
        elif kind == "html":
            r = html2text.render(data, **profile)
        elif kind in ("page", "docbook"):
            r = render_xml(data, profile)
        elif kind == "lyx":
            r = render_lyx(data)
        else:
            raise ValueError(kind)
        name = re.sub(r"\.(x?html?|page|docbook|xml|lyx|txt)$", "", rel.replace("/", "_"))
        out.append(Doc(pkg, name, r.text, r.link_share, kind))
    return [clean(d) for d in out]


# ---------------------------------------------------------------- cleaning

FR_WORDS = set("le la les un une des du de et est sont dans pour par sur avec pas que qui ce cette "
               "ces il elle ils nous vous au aux ne se sa son ses leur leurs peut être plus mais "
               "comme si aussi été fait très lorsque dont où l d qu à".split())
EN_WORDS = set("the of and to is in for with that this are be by from you not can if which will "
               "when has have was it its these those there their than then into only should must "
               "may would any all each does".split())
WORD = re.compile(r"[^\W\d_]+")
MAN_HEADER = re.compile(r"^\S.*\S {3,}.*\(\w+\)$")
LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl"})
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\ufeff]")


def function_words(text):
    fr = en = n = 0
    for w in WORD.findall(text.lower()):
        n += 1
        if w in FR_WORDS:
            fr += 1
        elif w in EN_WORDS:
            en += 1
    return fr, en, n


def clean_man(text):
    """Drops a rendered man page's header and footer lines and its TRADUCTION section."""
    lines = text.split("\n")
    nonblank = [i for i, l in enumerate(lines) if l.strip()]
    if nonblank and MAN_HEADER.match(lines[nonblank[0]].strip()):
        lines[nonblank[0]] = ""
    if len(nonblank) > 1 and MAN_HEADER.match(lines[nonblank[-1]].strip()):
        lines[nonblank[-1]] = ""
    out, skipping = [], False
    for line in lines:
        if line and not line[0].isspace():  # a section heading
            skipping = line.strip() in ("TRADUCTION", "TRADUCTEURS", "TRADUCTION FRANÇAISE")
        if not skipping:
            out.append(line)
    return "\n".join(out)


def normalise(text):
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = CONTROL.sub("", text).replace("\u00ad", "").translate(LIGATURES)
    lines = [l.rstrip() for l in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def blocks_of(text):
    return [b for b in text.split("\n\n") if b.strip()]


def is_english(block):
    fr, en, n = function_words(block)
    return n >= 6 and en >= 2 and en > 2 * fr


def is_prose(block):
    fr, en, n = function_words(block)
    return n >= 5 and fr >= 1


def clean(doc):
    text = clean_man(doc.text) if doc.kind == "man" else doc.text
    text = normalise(text)
    kept, english = [], 0
    for block in blocks_of(text):
        if is_english(block):
            english += len(block)
        else:
            kept.append(block)
    total = sum(len(b) for b in blocks_of(text)) or 1
    doc.text = "\n\n".join(kept) + "\n"
    doc.english_blocks = english
    body = doc.text.strip()
    fr, en, _ = function_words(body)
    prose = sum(len(b) for b in kept if is_prose(b))
    if doc.link_share > MAX_LINK_SHARE:
        doc.drop = "link list (index/navigation page)"
    elif english / total > MAX_ENGLISH:
        doc.drop = "not French (mostly English)"
    elif len(body) < MIN_CHARS:
        doc.drop = f"short (< {MIN_CHARS} characters)"
    elif fr < MIN_FRENCH * (fr + en) or not fr:
        doc.drop = "not French (mostly English)"
    elif prose / len(body) < MIN_PROSE_SHARE:
        doc.drop = "no prose (code, tables or lists)"
    return doc


# ---------------------------------------------------------------- driver

def key(block):
    return hashlib.blake2b(" ".join(block.split()).encode(), digest_size=16).digest()


DOC_FILES = re.compile(r"(^|/)(help|Documentation|documentation|docs?|manual)/(.*/)?[^/]*\*[^/]*$")
FREE_FORM = [
    (r"GNU (?:Lesser|Library) General Public License[^.]*?version ([\d.]+)( of the License, or \(at your option\) any later)?", "LGPL-{}{}"),
    (r"GNU (?:General Public License|GPL)[^.]*?version ([\d.]+)( of the License, or \(at your option\) any later)?", "GPL-{}{}"),
    (r"GNU Free Documentation License,? Version ([\d.]+)", "GFDL-{}"),
    (r"Creative Commons Attribution[- ]Share ?Alike ([\d.]+)", "CC-BY-SA-{}"),
    (r"Permission is granted to make and distribute verbatim copies", "verbatim-copying permission notice"),
]


def licence_of(copyright_text):
    """The licence a Debian copyright file states: in a machine-readable file,
    that of `Files: *` (else the first stanza) and that of the documentation
    (stanzas for help/, doc/, Documentation/...); in a free-form file, the
    licences it names, in order."""
    if re.match(r"\s*Format:", copyright_text):
        main, docs = None, []
        for para in re.split(r"\n\s*\n", copyright_text):
            files = re.search(r"^Files:\s*(.*(?:\n[ \t]+.*)*)", para, re.M)
            lic = re.search(r"^License:[ \t]*(\S.*)$", para, re.M)
            if not (files and lic):
                continue
            name, tokens = lic.group(1).strip(), files.group(1).split()
            if tokens == ["*"] or main is None:
                main = name if tokens == ["*"] or main is None else main
            if any(DOC_FILES.search(t) for t in tokens) and name not in docs:
                docs.append(name)
        docs = [d for d in docs if d != main]
        if main is None:
            return "see copyright"
        return main + (f" (documentation: {', '.join(docs)})" if docs else "")
    flat = " ".join(copyright_text.split())
    found = []
    for pattern, label in FREE_FORM:
        for m in re.finditer(pattern, flat, re.I):
            groups = [g or "" for g in m.groups()]
            if len(groups) == 2:
                groups[1] = "+" if groups[1] else ""
            name = label.format(groups[0].rstrip("."), *groups[1:]) if groups else label
            if name not in found:
                found.append((m.start(), name))
                break
    found = [name for _, name in sorted(found)]
    return ", ".join(found) + " (free-form copyright file)" if found else "see copyright"


def build(work, out):
    work, out = pathlib.Path(work), pathlib.Path(out)
    versions = dict(line.split("\t")[:2] for line in (work / "versions.tsv").read_text().splitlines() if line)
    tasks = []
    for pkg, rules in SPEC.items():
        root = work / "pkgs" / pkg
        if not root.is_dir():
            sys.exit(f"corpus.py: {pkg} was not unpacked in {root}")
        for rule in rules:
            base = work / "man" / pkg if rule.kind == "man" else root
            files = sorted(p for p in base.glob(rule.pattern) if p.is_file() and not p.is_symlink())
            files = [p for p in files if not any(p.match(x) for x in rule.exclude)]
            if not files:
                continue
            prefix = os.path.commonpath([str(p.parent) for p in files]) if len(files) > 1 else str(files[0].parent)
            for p in files:
                tasks.append((pkg, str(p), os.path.relpath(p, prefix), rule.kind, rule.profile))
        if not any(t[0] == pkg for t in tasks):
            sys.exit(f"corpus.py: {pkg}: no document found (did the package change?)")

    docs = collections.defaultdict(list)
    workers = min(2, os.cpu_count() or 1)
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        for rendered in pool.map(task_render, tasks, chunksize=16):
            for d in rendered:
                docs[d.pkg].append(d)

    drops = collections.Counter()
    seen_docs, seen_blocks = set(), set()
    removed_blocks = removed_bytes = english_bytes = 0
    kept = collections.defaultdict(list)
    log = []  # (package, document, decision, characters): CORPUS_LOG=FILE writes it
    for pkg in SPEC:
        for d in sorted(docs[pkg], key=lambda d: (len(d.text), d.name)):
            english_bytes += d.english_blocks
            if not d.drop:
                whole = key(d.text)
                blocks = blocks_of(d.text)
                keys = [key(b) for b in blocks]
                total = sum(len(b) for b in blocks)
                seen = sum(len(b) for b, k in zip(blocks, keys) if k in seen_blocks)
                if whole in seen_docs:
                    d.drop = "exact duplicate"
                elif seen >= NEAR_DUP * total:
                    d.drop = "near duplicate (paragraphs already kept)"
            log.append((pkg, d.name, d.drop or "kept", len(d.text)))
            if d.drop:
                drops[d.drop] += 1
                continue
            body = []
            for b, k in zip(blocks, keys):
                if len(b.strip()) >= LONG_BLOCK and k in seen_blocks:
                    removed_blocks += 1
                    removed_bytes += len(b.encode())
                else:
                    body.append(b)
            text = "\n\n".join(body) + "\n"
            if len(text.strip()) < MIN_CHARS:
                drops["near duplicate (paragraphs already kept)"] += 1
                log[-1] = (pkg, d.name, "near duplicate (paragraphs already kept)", len(d.text))
                continue
            seen_docs.add(whole)
            seen_blocks.update(keys)
            d.text = text
            kept[pkg].append(d)

    rows, total_docs, total_bytes = [], 0, 0
    for pkg in SPEC:
        folder = out / pkg
        folder.mkdir(parents=True, exist_ok=True)
        names = set()
        size = 0
        for d in sorted(kept[pkg], key=lambda d: d.name):
            name = d.name
            i = 2
            while name in names:
                name, i = f"{d.name}-{i}", i + 1
            names.add(name)
            data = d.text.encode("utf-8")
            (folder / f"{name}.txt").write_bytes(data)
            size += len(data)
        owner = LICENCE_FROM.get(pkg, pkg)
        copyright_file = work / "pkgs" / owner / "usr/share/doc" / owner / "copyright"
        licence = LICENCE_NOTE.get(pkg) or (licence_of(copyright_file.read_text(errors="replace"))
                                            if copyright_file.exists() else "see copyright")
        rows.append((pkg, versions.get(pkg, "?"), licence, len(kept[pkg]), size))
        total_docs += len(kept[pkg])
        total_bytes += size
        if not kept[pkg]:
            folder.rmdir()
    with open(out / "SOURCES.tsv", "w", encoding="utf-8") as f:
        f.write("package\tversion\tlicence\tdocuments\tbytes\n")
        for row in rows:
            f.write("\t".join(map(str, row)) + "\n")

    if os.environ.get("CORPUS_LOG"):
        with open(os.environ["CORPUS_LOG"], "w", encoding="utf-8") as f:
            f.writelines(f"{p}\t{n}\t{why}\t{c}\n" for p, n, why, c in log)
    say = lambda s: print(f"corpus: {s}", file=sys.stderr)
    rendered = sum(len(v) for v in docs.values())
    say(f"{rendered} documents rendered from {len(SPEC)} packages; {total_docs} kept, "
        f"{total_bytes / 1e6:.1f} MB of text")
    for reason, n in drops.most_common():
        say(f"  dropped {n:5d}: {reason}")
    say(f"  removed {removed_blocks} repeated paragraphs ({removed_bytes / 1e6:.2f} MB) "
        f"and {english_bytes / 1e6:.2f} MB of English paragraphs from kept or dropped documents")


def main():
    if sys.argv[1:2] == ["packages"]:
        print("\n".join([*SPEC, *LICENCE_FROM.values()]))
    elif sys.argv[1:2] == ["unpack"] and len(sys.argv) == 4:
        unpack(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["man-packages"]:
        print("\n".join(p for p, rules in SPEC.items() if any(r.kind == "man" for r in rules)))
    elif sys.argv[1:2] == ["build"] and len(sys.argv) == 4:
        build(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
