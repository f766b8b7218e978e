#!/usr/bin/env python3
"""How alike a study's validation and test splits are, without a model.

    .venv/bin/python scripts/splits.py SHARDS_DIR TOKENIZER_JSON [SOURCE_DIR]

For the token shards a `shards` node wrote (its artifact directory) and the
tokenizer it used, prints per split: documents, tokens, the cross-entropy of
the split under the train split's unigram distribution (add-one smoothed,
nats per token: how far the split's token mix is from what training sees),
and the fraction of its token 8-grams and 32-grams that also occur in train
(repeated boilerplate, or a leak of near-duplicate documents). With
SOURCE_DIR (the corpus's folder of .txt files), each validation and test
document is named by the file it came from. Markdown on stdout.
"""
import collections
import json
import math
import pathlib
import sys

import numpy as np

HEADER_INTS = 256  # a shard's 1,024-byte header: int32 words, [2] = token count


def read_split(shards, split):
    tokens = []
    for path in sorted(shards.glob(f"{split}_*.bin")):
        header = np.fromfile(path, dtype=np.int32, count=HEADER_INTS)
        width = np.uint32 if header[1] == 2 else np.uint16
        tokens.append(np.fromfile(path, dtype=width, offset=4 * HEADER_INTS)[: header[2]])
    return np.concatenate(tokens).astype(np.int64)


def documents(tokens, eot):
    cuts = np.flatnonzero(tokens == eot)
    start = 0
    for cut in list(cuts) + [len(tokens)]:
        if cut > start:
            yield tokens[start:cut]
        start = cut + 1


def ngrams(tokens, n):
    if len(tokens) < n:
        return set()
    view = np.lib.stride_tricks.sliding_window_view(tokens, n)
    return set(map(bytes, view.astype(np.int32)))


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[2].strip())
    shards, tokenizer_path = pathlib.Path(argv[1]), argv[2]
    meta = json.loads((shards / "meta.json").read_text())
    eot, vocab = meta["eot"], meta["vocab_size"]
    splits = {s: read_split(shards, s) for s in ("train", "val", "test")}
    counts = np.bincount(splits["train"], minlength=vocab).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    train_grams = {n: ngrams(splits["train"], n) for n in (8, 32)}
    print("| split | documents | tokens | unigram cross-entropy (nats/token) | 8-grams in train | 32-grams in train |")
    print("|---|---:|---:|---:|---:|---:|")
    for split, tokens in splits.items():
        docs = sum(1 for _ in documents(tokens, eot))
        ce = -log_p[tokens].mean()
        shares = []
        for n in (8, 32):
            grams = ngrams(tokens, n)
            shares.append(len(grams & train_grams[n]) / max(1, len(grams)) if split != "train" else 1.0)
        print(f"| {split} | {docs} | {len(tokens):,} | {ce:.3f} | {shares[0]:.1%} | {shares[1]:.1%} |")
    if len(argv) == 4:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(tokenizer_path)
        # Compared with whitespace collapsed: the corpus normalises it.
        flat = lambda text: " ".join(text.split())
        sources = {p: flat(p.read_text(encoding="utf-8")) for p in sorted(pathlib.Path(argv[3]).rglob("*.txt"))}
        for split in ("val", "test"):
            print(f"\n{split} documents:\n")
            print("| source | tokens | unigram cross-entropy | 32-grams in train |")
            print("|---|---:|---:|---:|")
            for doc in documents(splits[split], eot):
                text = tokenizer.decode(doc.tolist())
                probe = flat(text)[:200]
                found = next((p for p, t in sources.items() if probe and probe in t), None)
                name = str(found.relative_to(argv[3])) if found else "(not found)"
                grams = ngrams(doc, 32)
                share = len(grams & train_grams[32]) / max(1, len(grams))
                print(f"| {name} | {len(doc):,} | {-log_p[doc].mean():.3f} | {share:.1%} |")


if __name__ == "__main__":
    main(sys.argv)
