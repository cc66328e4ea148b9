"""CLIP BPE tokenizer: parity with ImageBind's SimpleTokenizer outputs, cleaning rules, files, errors."""

import gzip
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from codebind_hf.tokenization_codebind import (
    PACKAGED_BPE_DIR,
    CodeBindTokenizer,
    bytes_to_unicode,
    clean_text,
    convert_clip_bpe_merges,
)

HERE = os.path.dirname(__file__)
PRE = os.path.join(HERE, "fixtures", "imagebind_preprocessing")
TINY = os.path.join(HERE, "fixtures", "imagebind_tiny")
SOT, EOT = 49406, 49407


@pytest.fixture(scope="module")
def tokenizer():
    return CodeBindTokenizer()


def _ids(tokenizer, texts):
    return tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")["input_ids"]


def test_reference_texts_are_exactly_equal(tokenizer):
    meta = json.load(open(os.path.join(PRE, "README.json")))
    expected = load_file(os.path.join(PRE, "expected.safetensors"))["text"]
    assert torch.equal(_ids(tokenizer, meta["texts"]), expected)
    # the tiny-model fixture was tokenised by the reference too
    tiny_texts = json.load(open(os.path.join(TINY, "config.json")))["texts"]
    assert torch.equal(_ids(tokenizer, tiny_texts), load_file(os.path.join(TINY, "io.safetensors"))["input.text"])


def test_layout_start_end_zero_padding_and_mask(tokenizer):
    batch = tokenizer(
        ["A dog", "a photo of a dog barking at the mailman!"],
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape == (2, 77) and ids.dtype == torch.long
    assert ids[0, :4].tolist() == [SOT, 320, 1929, EOT] and ids[0, 4:].eq(0).all()
    assert mask[0].sum() == 4 and mask[1].sum() == 13
    # the real "!" of "mailman!" is the end-of-word token 256, not the pad id 0
    assert ids[1, 11] == 256 and ids[1, 12] == EOT


def test_long_text_is_cut_keeping_the_end_token(tokenizer):
    ids = _ids(tokenizer, ["word " * 200, "one two " * 37 + "three"])  # 200 and 75 BPE ids
    assert ids.shape == (2, 77)
    assert ids[0, 0] == SOT and ids[0, -1] == EOT and ids[0, 1:-1].eq(2653).all()  # "word</w>"
    one, two, three = tokenizer.convert_tokens_to_ids(["one</w>", "two</w>", "three</w>"])
    assert ids[1, -1] == EOT and ids[1, -2] == three  # 75 ids fit exactly: "three</w>" stays
    assert _ids(tokenizer, ["one two " * 38])[0, -3:].tolist() == [two, one, EOT]  # 76 ids: the last "two" is cut


def test_cleaning_lowercase_html_whitespace(tokenizer):
    assert clean_text("  Hello,\n\tWORLD  &amp;amp; x ") == "hello, world & x"
    assert tokenizer.tokenize("A  Dog\n") == tokenizer.tokenize("a dog") == ["a</w>", "dog</w>"]
    # the contraction and number rules of CLIP's pattern: digits are single tokens
    assert tokenizer.tokenize("it's 42") == ["it</w>", "'s</w>", "4</w>", "2</w>"]
    # special tokens written in the text are recognised by CLIP's pattern, as in the reference
    assert _ids(tokenizer, ["x <|endoftext|> y"])[0, :5].tolist() == [SOT, 343, EOT, 344, EOT]


def test_non_ascii_text_is_byte_level_and_round_trips(tokenizer):
    text = "café 東京 🐕"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == SOT and ids[-1] == EOT and max(ids) <= EOT
    assert tokenizer.decode(ids, skip_special_tokens=True) == "café 東京 🐕"


def test_ftfy_cleaning_when_installed():
    ftfy = pytest.importorskip("ftfy")
    assert clean_text("schÃ¶n") == ftfy.fix_text("schÃ¶n").lower() == "schön"


def test_shipped_vocabulary_files():
    vocab = json.load(open(PACKAGED_BPE_DIR / "vocab.json", encoding="utf-8"))
    merges = open(PACKAGED_BPE_DIR / "merges.txt", encoding="utf-8").read().splitlines()
    assert len(vocab) == 49408 and merges[0] == "#version: 0.2" and len(merges) == 1 + 48894
    assert (
        vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["<|startoftext|>"] == SOT and vocab["<|endoftext|>"] == EOT
    )
    assert vocab["".join(merges[1].split())] == 512  # first merge "i n" -> "in"
    assert (PACKAGED_BPE_DIR / "README.md").read_text().count("OpenAI") >= 1


def test_convert_clip_bpe_merges_on_a_small_file(tmp_path):
    # a header line, then merges; CLIP keeps 48894 of them, so a file with fewer is refused
    path = tmp_path / "bpe.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("version header\n" + "".join(f"a{i} b\n" for i in range(48894)))
    vocab_path, merges_path = convert_clip_bpe_merges(path, tmp_path / "out")
    vocab = json.load(open(vocab_path, encoding="utf-8"))
    assert len(vocab) == 49408 and vocab["a0b"] == 512 and vocab["a48893b"] == 49405
    assert list(vocab)[:256] == list(bytes_to_unicode().values())
    assert open(merges_path).read().splitlines()[1] == "a0 b"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("header\na b\n")
    with pytest.raises(ValueError, match="expected 48894 merges"):
        convert_clip_bpe_merges(path, tmp_path / "bad")


def test_save_and_load_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= set(os.listdir(tmp_path))
    again = CodeBindTokenizer.from_pretrained(tmp_path)
    texts = ["A dog!", "x " * 100, "Straße &amp; café"]
    assert torch.equal(_ids(again, texts), _ids(tokenizer, texts))
    assert again.model_max_length == 77 and again.pad_token_id == 0


def test_bad_inputs_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="CLIP BPE file not found"):
        CodeBindTokenizer(vocab_file=tmp_path / "missing.json")
    with pytest.raises(ValueError, match="model_max_length"):
        CodeBindTokenizer(model_max_length=1)
    with pytest.raises(ValueError, match="split_special_tokens=True"):
        CodeBindTokenizer(split_special_tokens=False)
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(ValueError, match="not a merge of two symbols"):
        CodeBindTokenizer(merges_file=tmp_path / "merges.txt")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(ValueError, match="does not match"):
        CodeBindTokenizer(merges_file=tmp_path / "merges.txt")
