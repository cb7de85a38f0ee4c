"""The testbed's own CLIP tokenizer: one token per word of the captions' language.

Stable Diffusion pipelines read text through a ``CLIPTokenizer`` (byte-level BPE: ``vocab.json`` +
``merges.txt``). Ours is built from the testbed's vocabulary instead of CLIP's 49,408 tokens, so the model folder
carries it (a few kB) and the text encoder's embedding table stays small: every single character (alone and at a
word's end) is a token, so any text tokenizes; each vocabulary word has a chain of merges that joins it into one
token. Text outside the language still tokenizes (into characters), and the model has never seen it.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from train.t2i.captions import PUNCTUATION, VOCABULARY

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 32  # tokens incl. BOS/EOS: the longest caption has 27


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """The pieces byte-pair encoding makes of `word` (CLIP's algorithm: merge the best-ranked pair until none
    applies; the last character carries '</w>')."""
    pieces = [*word[:-1], word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(ranks.get(p, len(ranks)), i) for i, p in enumerate(zip(pieces, pieces[1:], strict=False))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces[i:i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Single characters, then for each vocabulary word the merges that join whatever pieces the merges so far
    leave of it (appended last, a merge never changes how an earlier word is split)."""
    chars = list(string.ascii_lowercase) + list(string.digits) + list(PUNCTUATION) + ["."]
    tokens = [*chars, *(c + "</w>" for c in chars)]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in (w for w in VOCABULARY if len(w) > 1):
        while len(pieces := bpe(word, ranks)) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            if pair[0] + pair[1] not in tokens:
                tokens.append(pair[0] + pair[1])
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def save_tokenizer(folder: str | Path) -> Path:
    """Write the tokenizer files a ``CLIPTokenizer.from_pretrained(folder)`` reads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = {
        "tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH, "bos_token": BOS, "eos_token": EOS,
        "unk_token": EOS, "pad_token": EOS, "do_lower_case": True, "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=1))
    return folder


def load_tokenizer(folder: str | Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder))
