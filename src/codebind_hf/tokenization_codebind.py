"""CLIP byte-level BPE tokenizer (ImageBind's text front end), built offline from the shipped merges file.

Lower-cased, HTML-unescaped (and ``ftfy``-fixed when ftfy is installed), whitespace-normalised text is split
with CLIP's pattern, byte-encoded, BPE-merged, wrapped in ``<|startoftext|>`` / ``<|endoftext|>`` and
zero-padded to the context length (77). Over-long texts are cut so that the end token stays last.
"""

from __future__ import annotations

import gzip
import html
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

import regex
import torch

MERGES_FILE = "bpe_simple_vocab_16e6.txt.gz"
_PACKAGED_MERGES = Path(__file__).parent / "data" / "clip_bpe" / MERGES_FILE
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
)


@lru_cache
def _byte_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def _clean(text: str) -> str:
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class CodeBindTokenizer:
    """CLIP BPE tokenizer with ImageBind's output convention.

    Example:

    ```python
    >>> from codebind_hf.tokenization_codebind import CodeBindTokenizer
    >>> tokenizer = CodeBindTokenizer()
    >>> ids = tokenizer(["A dog"])
    >>> ids.shape, ids[0, :4].tolist()
    (torch.Size([1, 77]), [49406, 320, 1929, 49407])

    ```
    """

    def __init__(self, merges_file: str | os.PathLike | None = None, context_length: int = 77):
        self.merges_file = Path(merges_file) if merges_file is not None else _PACKAGED_MERGES
        if not self.merges_file.is_file():
            raise FileNotFoundError(f"BPE merges file not found: {self.merges_file}")
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
        self.context_length = context_length
        with gzip.open(self.merges_file, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        # The file's first line is a header; CLIP uses the next 49152 - 256 - 2 merges.
        merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
        byte_chars = list(_byte_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.bpe_ranks = {merge: i for i, merge in enumerate(merges)}
        self.sot_token_id = self.encoder["<|startoftext|>"]
        self.eot_token_id = self.encoder["<|endoftext|>"]
        self._cache: dict[str, str] = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _bpe(self, token: str) -> list[str]:
        if token in self._cache:
            return self._cache[token].split(" ")
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = " ".join(word)
        return word

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        byte_map = _byte_to_unicode()
        ids = []
        for piece in _PATTERN.findall(_clean(text)):
            encoded = "".join(byte_map[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(encoded))
        return ids

    def __call__(self, texts: str | list[str]) -> torch.LongTensor:
        """Token ids `(batch, context_length)`: start, BPE ids, end, zero padding; end token kept when cut."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise ValueError("texts is empty; expected at least one string")
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id] + self.encode(text)[: self.context_length - 2] + [self.eot_token_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.merges_file, directory / MERGES_FILE)
        (directory / "tokenizer_config.json").write_text(json.dumps({"context_length": self.context_length}, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> CodeBindTokenizer:
        directory = Path(directory)
        settings = json.loads((directory / "tokenizer_config.json").read_text())
        return cls(directory / MERGES_FILE, **settings)


__all__ = ["CodeBindTokenizer"]
