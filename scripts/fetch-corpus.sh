#!/usr/bin/env bash
# Fetches real French prose from Debian packages and renders it to clean UTF-8
# plain text under data/fr/ (git-ignored), one file per document:
#   manpages/, manpages-dev/   French man pages (manpages-fr, manpages-fr-dev), via groff
#   debian-reference/          the Debian Reference in French (HTML → text)
#   debian-handbook/           The Debian Administrator's Handbook, fr-FR (HTML → text)
# All GPL-family licences; the text is never committed. Packages are unpacked
# with dpkg-deb -x, nothing is installed into the system. Idempotent: a stamp
# file records a finished render.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=data/fr
STAMP=$OUT/.rendered-v2
PACKAGES=(manpages-fr manpages-fr-dev debian-reference-fr debian-handbook)
say() { printf '\033[1mcorpus:\033[0m %s\n' "$*" >&2; }

if [ -f "$STAMP" ]; then
  exit 0
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
say "downloading ${PACKAGES[*]}"
if ! (cd "$work" && apt-get download "${PACKAGES[@]}" >/dev/null 2>&1); then
  say "apt-get download failed; refreshing package lists"
  apt-get update >/dev/null
  (cd "$work" && apt-get download "${PACKAGES[@]}" >/dev/null)
fi
for deb in "$work"/*.deb; do
  name=$(basename "$deb" | cut -d_ -f1)
  dpkg-deb -x "$deb" "$work/$name"
done

rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"

# Man pages: roff → UTF-8 text with no escapes or overstrikes. Pages that are
# only `.so` links to others are skipped (they would duplicate documents).
render_man() {
  local src=$1 dest=$2
  if zcat "$src" | head -c 200 | grep -q '^\.so '; then return 0; fi
  zcat "$src" | preconv -e utf-8 2>/dev/null \
    | groff -t -man -Tutf8 -P-cbou -rLL=100n -rcR=1 2>/dev/null \
    | sed -e 's/[[:space:]]*$//' > "$dest" || rm -f "$dest"
  [ -s "$dest" ] || rm -f "$dest"
}
export -f render_man
for pkg in manpages-fr manpages-fr-dev; do
  short=${pkg#manpages-fr}; short=manpages${short}
  mkdir -p "$OUT.tmp/$short"
  say "rendering $pkg"
  find "$work/$pkg/usr/share/man/fr" -name '*.gz' -type f | sort | while read -r f; do
    base=$(basename "$f" .gz)
    printf '%s\0%s\0' "$f" "$OUT.tmp/$short/$base.txt"
  done | xargs -0 -n 2 -P "$(nproc)" bash -c 'render_man "$0" "$1"'
done

say "rendering debian-reference-fr and debian-handbook (fr-FR)"
python3 scripts/html2text.py "$OUT.tmp/debian-reference" "$work"/debian-reference-fr/usr/share/debian-reference/*.fr.html
python3 scripts/html2text.py "$OUT.tmp/debian-handbook" "$work"/debian-handbook/usr/share/doc/debian-handbook/html/fr-FR/*.html

touch "$OUT.tmp/.rendered-v2"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
say "$(find "$OUT" -name '*.txt' | wc -l) documents, $(du -sh "$OUT" | cut -f1) in $OUT"
