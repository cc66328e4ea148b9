"""CLIP byte-level BPE tokenizer with ImageBind's text conventions, built offline from files shipped in the package.

The vocabulary (`vocab.json`, 49,408 entries) and merges (`merges.txt`, 48,894 merges) in `data/clip_bpe/` are derived
from OpenAI's `bpe_simple_vocab_16e6.txt.gz` by [`convert_clip_bpe_merges`] exactly as ImageBind's ``SimpleTokenizer``
builds them at load time: the 256 byte characters, the same with the end-of-word mark ``</w>``, one entry per merge,
then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407).

Text is cleaned as ImageBind does: ``ftfy.fix_text`` when `ftfy` is installed (otherwise only Unicode NFC
normalisation, which is what ftfy's default fix amounts to on text that is not mojibake), HTML entities unescaped twice,
whitespace runs collapsed to one space, stripped and lower-cased. It is split with CLIP's pattern, byte-encoded and
BPE-merged. Batches come out as ImageBind's: ``<|startoftext|>``, the BPE ids, ``<|endoftext|>``, zero-padded to the
context length (77); a text that does not fit keeps its first 75 ids and the end token stays last.

Padding with zeros makes id 0 (the token ``"!"``) the pad token, as in open_clip's Hub tokenizers; so that a real
``"!"`` in the text is not mistaken for it, special tokens are never split out of the raw text
(``split_special_tokens=True``): only CLIP's own pattern recognises ``<|startoftext|>`` / ``<|endoftext|>`` written
in the text, as the reference does.
One consequence: ``decode(..., skip_special_tokens=True)`` also drops a bare ``"!"`` piece (id 0).
"""

from __future__ import annotations

import gzip
import html
import json
import os
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import regex
from transformers.tokenization_python import PreTrainedTokenizer

from .adapters.io import write_file_atomically

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}
PACKAGED_BPE_DIR = Path(__file__).parent / "data" / "clip_bpe"
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"
# CLIP keeps the first 49152 - 256 - 2 merges of the 16e6 file (its first line is a version header).
NUM_CLIP_MERGES = 49152 - 256 - 2
# ImageBind / CLIP split pattern; `regex` for the Unicode classes.
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
)


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def clean_text(text: str) -> str:
    """ImageBind's ``basic_clean`` + ``whitespace_clean`` + lower-casing (ftfy used when installed)."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        text = unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def clip_vocabulary(merges: list[tuple[str, str]]) -> list[str]:
    """The CLIP vocabulary (in id order) that ``merges`` define."""
    byte_chars = list(bytes_to_unicode().values())
    return [*byte_chars, *(c + "</w>" for c in byte_chars), *("".join(m) for m in merges), START_TOKEN, END_TOKEN]


def convert_clip_bpe_merges(gz_path: str | os.PathLike, save_directory: str | os.PathLike) -> tuple[Path, Path]:
    """Derive ``vocab.json`` and ``merges.txt`` from CLIP's ``bpe_simple_vocab_16e6.txt.gz``.

    Args:
        gz_path (`str` or `os.PathLike`): the gzipped merges file that CLIP, open_clip and ImageBind ship.
        save_directory (`str` or `os.PathLike`): where to write the two files (created if missing).

    Returns:
        `tuple[Path, Path]`: the paths of ``vocab.json`` and ``merges.txt``.
    """
    with gzip.open(gz_path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_CLIP_MERGES + 1]]
    if len(merges) != NUM_CLIP_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{gz_path}: expected {NUM_CLIP_MERGES} merges of two symbols after the header line")
    vocab = {token: index for index, token in enumerate(clip_vocabulary(merges))}
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = directory / VOCAB_FILES_NAMES["vocab_file"], directory / VOCAB_FILES_NAMES["merges_file"]
    _write_bpe_files(vocab_path, vocab, merges_path, merges)
    return vocab_path, merges_path


def _write_bpe_files(vocab_path: Path, vocab: dict[str, int], merges_path: Path, merges) -> None:
    """``vocab.json`` and ``merges.txt`` (with the ``#version`` header of CLIP's files), each written atomically."""
    write_file_atomically(vocab_path, json.dumps(vocab, ensure_ascii=False) + "\n")
    write_file_atomically(merges_path, "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


def _read_merges(path: str | os.PathLike) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle.read().split("\n") if line]
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    merges = [tuple(line.split()) for line in lines]
    bad = next((i for i, m in enumerate(merges) if len(m) != 2), None)
    if bad is not None:
        raise ValueError(f"{path}: line {bad + 1} is not a merge of two symbols: {lines[bad]!r}")
    return merges


class CodeBindTokenizer(PreTrainedTokenizer):
    """CLIP BPE tokenizer producing ImageBind's text inputs (see the module docstring for the exact conventions).

    Args:
        vocab_file (`str`, *optional*): ``vocab.json``; defaults to the file shipped in the package.
        merges_file (`str`, *optional*): ``merges.txt``; defaults to the file shipped in the package.
        errors (`str`, *optional*, defaults to `"replace"`): how `decode` treats invalid UTF-8.
        model_max_length (`int`, *optional*, defaults to 77): the context length.

    Example:

    ```python
    >>> from codebind_hf.tokenization_codebind import CodeBindTokenizer
    >>> tokenizer = CodeBindTokenizer()
    >>> batch = tokenizer(["A dog"], padding="max_length", truncation=True, return_tensors="pt")
    >>> batch["input_ids"].shape, batch["input_ids"][0, :4].tolist()
    (torch.Size([1, 77]), [49406, 320, 1929, 49407])
    >>> tokenizer.decode(batch["input_ids"][0, 1:3])
    'a dog'

    ```
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        merges_file: str | os.PathLike | None = None,
        errors: str = "replace",
        bos_token: str = START_TOKEN,
        eos_token: str = END_TOKEN,
        unk_token: str = END_TOKEN,
        pad_token: str = "!",
        model_max_length: int = 77,
        **kwargs,
    ):
        vocab_file = Path(vocab_file) if vocab_file is not None else PACKAGED_BPE_DIR / VOCAB_FILES_NAMES["vocab_file"]
        merges_file = (
            Path(merges_file) if merges_file is not None else PACKAGED_BPE_DIR / VOCAB_FILES_NAMES["merges_file"]
        )
        for path in (vocab_file, merges_file):
            if not path.is_file():
                raise FileNotFoundError(f"CLIP BPE file not found: {path}")
        if not isinstance(model_max_length, int) or model_max_length < 2:
            raise ValueError(f"model_max_length must be an int >= 2 (start and end tokens), got {model_max_length!r}")
        if kwargs.get("split_special_tokens", True) is not True:
            raise ValueError(
                "CodeBindTokenizer needs split_special_tokens=True: its pad token '!' is also ordinary text"
            )
        kwargs["split_special_tokens"] = True
        with open(vocab_file, encoding="utf-8") as handle:
            self.encoder: dict[str, int] = json.load(handle)
        merges = _read_merges(merges_file)
        expected = clip_vocabulary(merges)
        if len(self.encoder) != len(expected) or any(self.encoder.get(t) != i for i, t in enumerate(expected)):
            raise ValueError(
                f"{vocab_file} does not match {merges_file}: the vocabulary must be the CLIP layout of the merges"
            )
        self.decoder = {index: token for token, index in self.encoder.items()}
        self.bpe_ranks = {merge: rank for rank, merge in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {char: byte for byte, char in self.byte_encoder.items()}
        self.errors = errors
        self._bpe_cache: dict[str, list[str]] = {START_TOKEN: [START_TOKEN], END_TOKEN: [END_TOKEN]}
        super().__init__(
            errors=errors,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            pad_token=pad_token,
            model_max_length=model_max_length,
            special_tokens_pattern="bos_eos",
            **kwargs,
        )

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder)

    def bpe(self, token: str) -> list[str]:
        """BPE pieces of one byte-encoded pre-token (the last symbol carries ``</w>``)."""
        if token in self._bpe_cache:
            return self._bpe_cache[token]
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
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
        self._bpe_cache[token] = word
        return word

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        pieces = []
        for pre_token in _PATTERN.findall(clean_text(text)):
            encoded = "".join(self.byte_encoder[b] for b in pre_token.encode("utf-8"))
            pieces.extend(self.bpe(encoded))
        return pieces

    def _convert_token_to_id(self, token: str) -> int:
        return self.encoder.get(token, self.encoder[END_TOKEN])

    def _convert_id_to_token(self, index: int) -> str:
        if index not in self.decoder:
            raise ValueError(f"token id {index} is outside the vocabulary (0..{len(self.decoder) - 1})")
        return self.decoder[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        data = bytearray(self.byte_decoder[c] for c in "".join(tokens))
        return data.decode("utf-8", errors=self.errors).replace("</w>", " ").strip()

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, str]:
        """Write ``vocab.json`` and ``merges.txt`` (each atomically) into ``save_directory``."""
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"save_vocabulary expects an existing directory, got {save_directory}")
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab_path = Path(save_directory) / (prefix + VOCAB_FILES_NAMES["vocab_file"])
        merges_path = Path(save_directory) / (prefix + VOCAB_FILES_NAMES["merges_file"])
        _write_bpe_files(vocab_path, self.encoder, merges_path, sorted(self.bpe_ranks, key=self.bpe_ranks.get))
        return str(vocab_path), str(merges_path)


__all__ = ["CodeBindTokenizer", "convert_clip_bpe_merges", "clean_text", "bytes_to_unicode", "clip_vocabulary"]
