#!/usr/bin/env python3
"""Packs a folder of .txt documents into one zstd-compressed Parquet file.

    .venv/bin/python scripts/pack-corpus.py SRC_DIR OUT.parquet

One row per document, columns `text` (the file's UTF-8 text, as the corpus
node reads it by default) and `source` (its path under SRC_DIR), in path
order, so the same folder always gives the same file. For carrying the
large French corpus (scripts/fetch-corpus.sh --large) to a machine without
network, such as the lent GPU: its 30 MB of text become about a quarter of
that. Uses pyarrow, which scripts/setup.sh installs into the venv.
"""
import pathlib
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    src, out = pathlib.Path(argv[1]), pathlib.Path(argv[2])
    files = sorted(p for p in src.rglob("*.txt") if p.is_file())
    if not files:
        sys.exit(f"no .txt files under {src}")
    texts = [p.read_text(encoding="utf-8") for p in files]
    sources = [str(p.relative_to(src)) for p in files]
    table = pa.table({"text": texts, "source": sources})
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    pq.write_table(table, partial, compression="zstd", compression_level=19, row_group_size=1024)
    partial.replace(out)  # never a half-written file under the final name
    print(f"{out}: {len(files)} documents, {sum(map(len, texts)) / 1e6:.1f}M characters, "
          f"{out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main(sys.argv)
