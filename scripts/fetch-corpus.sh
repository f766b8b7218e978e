#!/usr/bin/env bash
# Fetches real French prose from Debian packages and renders it to clean UTF-8
# plain text, one file per document.
#
#   scripts/fetch-corpus.sh              the default corpus, under data/fr/ (git-ignored):
#     manpages/, manpages-dev/   French man pages (manpages-fr, manpages-fr-dev), via groff
#     debian-reference/          the Debian Reference in French (HTML → text)
#     debian-handbook/           The Debian Administrator's Handbook, fr-FR (HTML → text)
#   scripts/fetch-corpus.sh --large DIR  the large corpus, into DIR (e.g. a command
#     node's $OUT): the same four packages plus about 75 more (LibreOffice, GIMP,
#     LilyPond, GNOME and MATE help, Debian manuals, man pages of dpkg, apt...),
#     one folder per package, cleaned and de-duplicated by scripts/corpus.py
#     (which lists them), with DIR/SOURCES.tsv: package, version, licence,
#     documents, bytes. See docs/CORPUS.md.
#
# The text is never committed; docs/CORPUS.md lists the licences. Packages are
# unpacked with dpkg-deb in a temporary directory (--large: only the files it
# renders), nothing is installed into the system (but groff-base, when missing
# and run as root). Idempotent: a stamp file records a finished default
# render; --large rewrites DIR (only if DIR is empty or an earlier --large
# output). Downloads need current package lists: a failed download runs
# apt-get update (as root) once.
set -euo pipefail

say() { printf '\033[1mcorpus:\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

LARGE=
case "${1:-}" in
  "") [ $# -eq 0 ] || die "usage: $0 [--large OUT_DIR]" ;;
  --large)
    [ $# -eq 2 ] && [ -n "$2" ] || die "usage: $0 [--large OUT_DIR]"
    LARGE=$(realpath -m -- "$2") ;;
  *) die "usage: $0 [--large OUT_DIR]" ;;
esac
cd "$(dirname "$0")/.."

OUT=data/fr
STAMP=$OUT/.rendered-v2
PACKAGES=(manpages-fr manpages-fr-dev debian-reference-fr debian-handbook)

if [ -z "$LARGE" ] && [ -f "$STAMP" ]; then
  exit 0
fi
if [ -n "$LARGE" ]; then
  # Only ever rewrite an empty directory or an earlier --large output.
  if [ -e "$LARGE" ] && [ ! -d "$LARGE" ]; then die "$LARGE is not a directory"; fi
  if [ -d "$LARGE" ] && [ -n "$(ls -A "$LARGE")" ] && [ ! -f "$LARGE/SOURCES.tsv" ]; then
    die "$LARGE is neither empty nor an earlier --large output; refusing to overwrite it"
  fi
  mapfile -t PACKAGES < <(python3 scripts/corpus.py packages)
  [ "${#PACKAGES[@]}" -gt 4 ] || die "scripts/corpus.py packages failed"
fi
if ! command -v groff >/dev/null && [ "$(id -u)" = 0 ]; then
  say "installing groff-base (renders the man pages)"
  apt-get install -y -qq groff-base >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq groff-base >/dev/null; }
fi
for tool in apt-get dpkg-deb groff preconv python3; do
  command -v "$tool" >/dev/null || { say "missing $tool (apt-get install groff-base python3)"; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "$LARGE" ]; then
  say "downloading ${#PACKAGES[@]} packages (listed by scripts/corpus.py packages)"
else
  say "downloading ${PACKAGES[*]}"
fi
mkdir -p "$work/debs" "$work/pkgs"
if ! (cd "$work/debs" && apt-get download "${PACKAGES[@]}" >/dev/null 2>&1); then
  say "apt-get download failed; refreshing package lists"
  apt-get update >/dev/null || die "apt-get update failed (it needs root, or run it once as root)"
  (cd "$work/debs" && apt-get download "${PACKAGES[@]}" >/dev/null) || die "apt-get download ${PACKAGES[*]} failed"
fi
for deb in "$work"/debs/*.deb; do
  name=$(dpkg-deb -f "$deb" Package)
  if [ -n "$LARGE" ]; then  # only the files that will be rendered: far less to write
    dpkg-deb --fsys-tarfile "$deb" | python3 scripts/corpus.py unpack "$name" "$work/pkgs/$name" \
      || die "cannot unpack $deb"
  else
    dpkg-deb -x "$deb" "$work/pkgs/$name"
  fi
  printf '%s\t%s\n' "$name" "$(dpkg-deb -f "$deb" Version)" >> "$work/versions.tsv"
  rm -f "$deb"
done

# Man pages: roff → UTF-8 text with no escapes or overstrikes. Pages that are
# only `.so` links to others are skipped (they would duplicate documents).
# With MAN_PLAIN=1 (--large) lines are left-aligned, not justified, and words
# are not hyphenated, so that the text has no doubled spaces or split words.
render_man() {
  local src=$1 dest=$2 flags=()
  if zcat "$src" | head -c 200 | grep -q '^\.so '; then return 0; fi
  [ -z "${MAN_PLAIN:-}" ] || flags=(-rHY=0)
  { [ -z "${MAN_PLAIN:-}" ] || echo '.ad l'; zcat "$src"; } | preconv -e utf-8 2>/dev/null \
    | groff -t -man -Tutf8 -P-cbou -rLL=100n -rcR=1 "${flags[@]}" 2>/dev/null \
    | sed -e 's/[[:space:]]*$//' > "$dest" || rm -f "$dest"
  [ -s "$dest" ] || rm -f "$dest"
}
export -f render_man
# render_man_dir SRC_DIR DEST_DIR: every *.gz page below SRC_DIR → DEST_DIR/<page>.txt
render_man_dir() {
  mkdir -p "$2"
  find "$1" -name '*.gz' -type f | sort | while read -r f; do
    base=$(basename "$f" .gz)
    printf '%s\0%s\0' "$f" "$2/$base.txt"
  done | xargs -0 -n 2 -P "$(nproc)" bash -c 'render_man "$0" "$1"'
}

if [ -n "$LARGE" ]; then
  export MAN_PLAIN=1
  mapfile -t MAN_PACKAGES < <(python3 scripts/corpus.py man-packages)
  [ "${#MAN_PACKAGES[@]}" -gt 0 ] || die "scripts/corpus.py man-packages failed"
  say "rendering the French man pages of ${#MAN_PACKAGES[@]} packages"
  for pkg in "${MAN_PACKAGES[@]}"; do
    [ -d "$work/pkgs/$pkg/usr/share/man/fr" ] || die "$pkg has no usr/share/man/fr any more"
    render_man_dir "$work/pkgs/$pkg/usr/share/man/fr" "$work/man/$pkg"
  done
  say "rendering, cleaning and de-duplicating ${#PACKAGES[@]} packages"
  python3 scripts/corpus.py build "$work" "$work/out" || die "scripts/corpus.py failed"
  mkdir -p "$LARGE"
  find "$LARGE" -mindepth 1 -delete
  cp -r "$work/out/." "$LARGE/"
  say "$(find "$LARGE" -name '*.txt' | wc -l) documents, $(find "$LARGE" -name '*.txt' -printf '%s\n' \
    | awk '{ s += $1 } END { printf "%.1f", s / 1e6 }') MB of text in $LARGE"
  exit 0
fi

rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"

for pkg in manpages-fr manpages-fr-dev; do
  short=${pkg#manpages-fr}; short=manpages${short}
  say "rendering $pkg"
  render_man_dir "$work/pkgs/$pkg/usr/share/man/fr" "$OUT.tmp/$short"
done

say "rendering debian-reference-fr and debian-handbook (fr-FR)"
python3 scripts/html2text.py "$OUT.tmp/debian-reference" "$work"/pkgs/debian-reference-fr/usr/share/debian-reference/*.fr.html
python3 scripts/html2text.py "$OUT.tmp/debian-handbook" "$work"/pkgs/debian-handbook/usr/share/doc/debian-handbook/html/fr-FR/*.html

touch "$OUT.tmp/.rendered-v2"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
say "$(find "$OUT" -name '*.txt' | wc -l) documents, $(du -sh "$OUT" | cut -f1) in $OUT"
