#!/usr/bin/env python3
"""Builds the demo model's corpus: public-domain English from Debian packages.

  King James Bible       bible-kjv-text (data) + bible-kjv (the `bible` reader that decodes it)
  The Devil's Dictionary dict-devil (dictd format: /usr/share/dictd/devil.dict.dz + devil.index)

Writes build/demo/train.txt and build/demo/heldout.txt (UTF-8, '\\n' line ends, one blank line
between documents). The split is deterministic and by contiguous text, so held-out passages
are never seen in training:
  Bible      the last 5% of the verses of each of the 66 books (rounded up) are held out
  Dictionary every 20th entry (entries 19, 39, 59, ... in dictionary order) is held out

heldout-sample.txt (committed as models/demo/heldout-sample.txt) is the first ~30 KB of the
Bible's held-out documents and the first ~10 KB of the dictionary's, for the perplexity test.

Layout of the text: a Bible chapter is a heading line ("Genesis 1") followed by one line per
verse (verse numbers dropped); a dictionary entry is its prose paragraphs unwrapped to one line
each, verse quotations kept line by line. Whitespace runs become one space.

Usage: scripts/demo/prepare_corpus.py [--out build/demo]   (installs the packages via apt-get
when they are missing; needs root for that)
"""
import argparse
import gzip
import math
import os
import re
import shutil
import subprocess
import sys

PACKAGES = ["bible-kjv-text", "bible-kjv", "dict-devil"]
DEVIL_DICT = "/usr/share/dictd/devil.dict.dz"
DEVIL_INDEX = "/usr/share/dictd/devil.index"
HELDOUT_FRACTION = 0.05
DICT_HELDOUT_EVERY = 20
SAMPLE_BIBLE_BYTES = 30000   # heldout-sample.txt: about 40 KB, for tests that run on CPU
SAMPLE_DICT_BYTES = 10000


def ensure_packages():
    missing = [p for p in PACKAGES
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    print(f"installing {' '.join(missing)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)


def squash(s):
    return re.sub(r"\s+", " ", s).strip()


def bible_books():
    """[(book name, [(chapter heading, [verse, ...]), ...]), ...] in canonical order."""
    reader = shutil.which("bible") or "/usr/bin/bible"
    # -l with a huge width: one verse per line, no wrapping.
    out = subprocess.run([reader, "-l1000000", "Gen1:1-Rev22:21"], capture_output=True, check=True,
                         text=True, encoding="utf-8").stdout
    books = []
    for line in out.split("\n"):
        if not line.strip():
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:  # a verse
            books[-1][1][-1][1].append(squash(m.group(2)))
            continue
        heading = squash(line)  # "Genesis 1", "1 Kings 3", "Song of Solomon 2"
        book = re.sub(r" \d+$", "", heading)
        if not books or books[-1][0] != book:
            books.append((book, []))
        books[-1][1].append((heading, []))
    if len(books) != 66:
        raise SystemExit(f"expected 66 books of the Bible, found {len(books)}")
    return books


def b64_number(s):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    n = 0
    for c in s:
        n = n * 64 + alphabet.index(c)
    return n


def devil_entries():
    """The dictionary's entries in order, each a list of paragraphs (lines joined by '\\n')."""
    with gzip.open(DEVIL_DICT, "rb") as f:  # dictzip is gzip with an index in a header field
        data = f.read()
    seen, spans = set(), []
    with open(DEVIL_INDEX, encoding="utf-8") as f:
        for line in f:
            word, offset, length = line.rstrip("\n").split("\t")
            if word.startswith("00database") or word.startswith("00-database"):
                continue
            span = (b64_number(offset), b64_number(length))
            if span not in seen:  # alternate headwords point at the same text
                seen.add(span)
                spans.append(span)
    spans.sort()
    entries = []
    for offset, length in spans:
        text = data[offset:offset + length].decode("utf-8", errors="replace")
        text = re.sub(r"[{}]", "", text)  # dictd cross-reference braces
        paragraphs = []
        for block in re.split(r"\n\s*\n", text):
            lines = [l for l in block.split("\n") if l.strip()]
            if not lines:
                continue
            if all(l.startswith("  ") for l in lines):  # quoted verse: keep its lines
                paragraphs.append("\n".join(squash(l) for l in lines))
            else:
                paragraphs.append(squash(" ".join(lines)))
        if paragraphs:
            entries.append(paragraphs)
    return entries


def first_docs(docs, n_bytes):
    """The shortest prefix of `docs` holding at least n_bytes of text."""
    out, size = [], 0
    for doc in docs:
        if size >= n_bytes:
            break
        out.append(doc)
        size += len(doc.encode("utf-8")) + 2
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="build/demo", help="output folder")
    parser.add_argument("--no-install", action="store_true", help="do not call apt-get")
    args = parser.parse_args()
    if not args.no_install:
        ensure_packages()

    train_docs, heldout_docs = [], []
    for book, chapters in bible_books():
        n_verses = sum(len(v) for _, v in chapters)
        n_held = math.ceil(n_verses * HELDOUT_FRACTION)
        first_held = n_verses - n_held
        train_chapters, held_chapters = [], []
        index = 0
        for heading, verses in chapters:
            tr = [v for i, v in enumerate(verses) if index + i < first_held]
            he = [v for i, v in enumerate(verses) if index + i >= first_held]
            index += len(verses)
            if tr:
                train_chapters.append("\n".join([heading, *tr]))
            if he:
                held_chapters.append("\n".join([heading, *he]))
        train_docs.extend(train_chapters)
        heldout_docs.extend(held_chapters)

    n_bible_heldout = len(heldout_docs)
    for i, paragraphs in enumerate(devil_entries()):
        doc = "\n".join(paragraphs)
        (heldout_docs if i % DICT_HELDOUT_EVERY == DICT_HELDOUT_EVERY - 1 else train_docs).append(doc)

    # The sample that tests evaluate: the first held-out documents of each source.
    sample = first_docs(heldout_docs[:n_bible_heldout], SAMPLE_BIBLE_BYTES) + \
        first_docs(heldout_docs[n_bible_heldout:], SAMPLE_DICT_BYTES)

    os.makedirs(args.out, exist_ok=True)
    for name, docs in (("train.txt", train_docs), ("heldout.txt", heldout_docs), ("heldout-sample.txt", sample)):
        path = os.path.join(args.out, name)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n\n".join(docs) + "\n")
        print(f"wrote {path}: {len(docs)} documents, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
