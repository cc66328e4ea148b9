"""docs/faithfulness.md, row by row: each default (the paper) and each ``variants`` switch (the authors' code) on
hand-made tensors or the authors' own outputs (tests/fixtures/codebind_official_quantizer)."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from codebind_hf import CodeBindConfig, CodeBindModel, CompositionalQuantizer
from codebind_hf.configuration_codebind import VARIANTS, normalize_path_config, normalize_variants
from codebind_hf.losses import codevector_contrastive, cross_modal_code_matching, info_nce
from codebind_hf.losses.objective import code_matching_pairs, compute_path_loss
from codebind_hf.modeling_codebind import ModalityEncoding
from codebind_hf.quantization.quantizer import QuantizerOutput
from tiny_models import tiny_config

OFFICIAL = Path(__file__).parent / "fixtures" / "codebind_official_quantizer"
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- quantiser output
def _official_codebook(path: str, name: str, raw_codes: bool = True) -> CompositionalQuantizer:
    """A quantiser holding the authors' ``mvq_dict.<name>`` codebook of ``path`` (their EMA buffers mapped to ours)."""
    state = torch.load(OFFICIAL / f"{path}-imagebind-vector_quantise-_best.pth", map_location="cpu", weights_only=True)
    weight = state[f"mvq_dict.{name}.embedding.weight"]
    book = CompositionalQuantizer(weight.shape[0], weight.shape[1], raw_codes=raw_codes)
    book.codebook.copy_(weight)
    book.ema_count.copy_(state[f"mvq_dict.{name}.embedding.cluster_size"])
    book.ema_sum.copy_(state[f"mvq_dict.{name}.embedding.embed_avg"])
    book.usage_ema.copy_(state[f"mvq_dict.{name}.embed_prob"])
    book.initialized.fill_(bool(state[f"mvq_dict.{name}.initted"].item()))  # their `initted`
    return book


@pytest.mark.parametrize("path", ["audio", "depth"])
def test_official_quantizer_output_reproduces_the_authors_codes_and_vectors(path):
    io = load_file(OFFICIAL / "io.safetensors")
    shared_book = _official_codebook(path, "common")
    assert bool(shared_book.initialized) and not torch.allclose(shared_book.codebook.norm(dim=-1), torch.ones(32))
    for modality in (path, "vision", "text"):
        key = f"output.{path}_path.{modality}."
        shared = shared_book(io[key + "shared"])
        assert torch.equal(shared.indices, io[key + "shared_codes"])
        assert torch.allclose(F.normalize(shared.quantized, dim=-1), io[key + "shared_q"], atol=1e-6)
        if modality == "text":
            continue
        specific = _official_codebook(path, modality)(io[key + "specific"])
        assert torch.equal(specific.indices, io[key + "specific_codes"])
        assert torch.allclose(F.normalize(specific.quantized, dim=-1), io[key + "specific_q"], atol=1e-6)
        concat = F.normalize(torch.cat([shared.quantized, specific.quantized], -1), dim=-1)
        assert torch.allclose(concat, io[key + "concat_q"], atol=1e-6)
    # The paper's quantiser emits unit codevectors: same codes here, but not the authors' vectors.
    unit = _official_codebook(path, "common", raw_codes=False)
    unit.codebook.copy_(F.normalize(unit.codebook, dim=-1))
    key = f"output.{path}_path.{path}."
    paper = unit(io[key + "shared"])
    assert torch.equal(paper.indices, io[key + "shared_codes"])
    assert not torch.allclose(F.normalize(paper.quantized, dim=-1), io[key + "shared_q"], atol=1e-3)


def test_raw_codes_ema_update_keeps_the_unnormalised_mean():
    book = CompositionalQuantizer(4, 2, decay=0.5, eps=0.0, raw_codes=True)
    book.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    book.ema_sum.copy_(book.codebook)
    z = torch.tensor([[0.6, 0.8], [1.0, 0.0]])  # both go to code 0
    book.update_ema_(z, torch.zeros(2, 1, dtype=torch.long))
    # N_0 = 0.5 * 2 = 1, f_0 = 0.5 [1, 0] + 0.5 [1.6, 0.8] = [1.3, 0.4]; e_0 = f_0 / N_0 (no re-normalisation)
    assert torch.allclose(book.codebook[0], torch.tensor([1.3, 0.4]))
    paper = CompositionalQuantizer(4, 2, decay=0.5, eps=0.0)
    paper.codebook.copy_(book.codebook.new_tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    paper.ema_sum.copy_(paper.codebook)
    paper.update_ema_(z, torch.zeros(2, 1, dtype=torch.long))
    assert torch.allclose(paper.codebook[0], F.normalize(torch.tensor([1.3, 0.4]), dim=0))


# ---------------------------------------------------------------------------------------------- codebook life cycle
def test_ema_start_counts_paper_zero_official_kmeans_cluster_sizes():
    samples = F.normalize(torch.randn(64, 16), dim=-1)  # 128 sub-vectors of 8
    paper, official = CompositionalQuantizer(8, 8), CompositionalQuantizer(8, 8, ema_init_counts=True)
    torch.manual_seed(3)
    paper.kmeans_init_(samples)
    torch.manual_seed(3)
    official.kmeans_init_(samples)
    assert torch.equal(paper.codebook, official.codebook)
    assert paper.ema_count.sum() == 0 and torch.equal(paper.ema_sum, paper.codebook)
    # N0 = the cluster sizes of the last k-means assignment (every sub-vector counted once), f0 = N0 e
    assert official.ema_count.sum() == 128 and torch.equal(official.ema_count, official.ema_count.round())
    assert (official.ema_count > 0).sum() > 1
    assert torch.allclose(official.ema_sum, official.codebook * official.ema_count[:, None])


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_dead_code_reinit_paper_moves_rare_codes_official_blends_every_code(variant):
    book = CompositionalQuantizer(4, 2, reinit=variant)
    book.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    book.ema_sum.copy_(book.codebook * 3)
    book.ema_count.fill_(3.0)
    book.usage_ema.copy_(torch.tensor([0.0, 1e-5, 2e-4, 0.5]))  # α = exp(-p K 10 / 0.01 - 1e-3)
    alpha = torch.exp(-book.usage_ema * 4 * 10 / 0.01 - 1e-3)
    anchor = F.normalize(torch.tensor([[1.0, 1.0]]), dim=-1)  # one sample: every anchor is this row
    before = book.codebook.clone()
    moved = book.reinit_dead_codes_(anchor)
    blended = F.normalize((1 - alpha)[:, None] * before + alpha[:, None] * anchor, dim=-1)
    if variant == "paper":
        rare = alpha >= 1e-3
        assert moved.tolist() == rare.tolist() == [True, True, True, False]
        assert torch.allclose(book.codebook[rare], blended[rare]) and torch.equal(book.codebook[3], before[3])
        assert book.ema_count.tolist() == [0.0, 0.0, 0.0, 3.0]  # moved codes restart their EMA
    else:
        assert moved.all() and torch.allclose(book.codebook, blended)
        assert book.ema_count.tolist() == [3.0] * 4 and torch.equal(book.ema_sum, before * 3)  # EMA kept


# ---------------------------------------------------------------------------------------------- the switches
def test_variants_are_validated_normalised_and_read_from_older_keys():
    assert normalize_variants({}) == {name: "paper" for name in VARIANTS}
    assert set(normalize_variants("official").values()) == {"official"}
    with pytest.raises(ValueError, match=r"unknown switches \['codematching'\]"):
        normalize_variants({"codematching": "official"})
    with pytest.raises(ValueError, match="'paper' or 'official'"):
        normalize_variants({"balancer": "authors"})
    legacy = normalize_path_config("depth", {"orthogonality_variant": "official", "code_matching_variant": "official"})
    assert legacy["variants"]["orthogonality"] == legacy["variants"]["code_matching"] == "official"
    assert "orthogonality_variant" not in legacy and legacy["variants"]["balancer"] == "paper"
    assert normalize_path_config("depth", {"lora_rank": 2})["lora_alpha"] == 2  # LoRA scale 1 by default


def test_variants_are_recorded_in_path_config_json(tmp_path):
    model = CodeBindModel(tiny_config(paths={"depth": {"variants": {"code_matching": "official"}}}))
    folder = model.save_path("depth", tmp_path / "path")
    recorded = json.loads((folder / "path_config.json").read_text())["path"]["variants"]
    assert recorded == {**{name: "paper" for name in VARIANTS}, "code_matching": "official"}


def _encodings(n: int = 4, seed: int = 0, requires_grad: bool = False) -> dict:
    """Hand-made encodings of text, vision and depth: unit shared/specific parts, distances of unit sub-vectors."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for modality in ("text", "vision", "depth"):
        shared = F.normalize(torch.randn(n, 32, generator=g, dtype=torch.float64), dim=-1)
        specific = None if modality == "text" else F.normalize(torch.randn(n, 32, generator=g, dtype=torch.float64), dim=-1)
        dist = (torch.rand(n, 4, 64, generator=g, dtype=torch.float64) * 4).requires_grad_(requires_grad)
        q = QuantizerOutput(distances=dist)
        spec_q = None if specific is None else QuantizerOutput(distances=torch.rand(n, 4, 32, generator=g, dtype=torch.float64) * 4)
        out[modality] = ModalityEncoding(shared, specific, shared_q=q, specific_q=spec_q, commitment=torch.tensor(0.5, dtype=torch.float64))
    return out


def test_alignment_is_the_mean_over_pairs_and_code_matching_one_direction_bridge_first():
    model = CodeBindModel(tiny_config(decoder=False))
    enc = _encodings()
    _, terms = compute_path_loss(model, "depth", enc, {})
    pairs = [("depth", "text"), ("depth", "vision"), ("vision", "text")]
    expected = sum(float(info_nce(enc[a].shared, enc[b].shared, 0.05)) for a, b in pairs) / 3
    assert math.isclose(float(terms["align"]), expected, rel_tol=1e-9)  # the authors' mean, not the sum
    assert code_matching_pairs("depth", ["text", "vision"]) == [("text", "depth"), ("vision", "depth"), ("vision", "text")]
    cm = sum(float(cross_modal_code_matching(enc[a].shared_q.distances, enc[b].shared_q.distances)) for a, b in
             [("text", "depth"), ("vision", "depth"), ("vision", "text")]) / 3
    assert math.isclose(float(terms["cm"]), cm, rel_tol=1e-9)
    assert set(terms) == {"align", "cm", "vq", "ctr", "cuni", "orth", "uni", "recon"}


def test_official_code_losses_change_form_reduction_and_gradients():
    config = tiny_config(decoder=False, paths={"depth": {"variants": {"code_matching": "official", "codevector_contrastive": "official",
                                                                       "code_loss_gradients": "official"}}})
    model = CodeBindModel(config)
    enc = _encodings(requires_grad=True)
    _, terms = compute_path_loss(model, "depth", enc, {})
    enc = _encodings()  # the same tensors without autograd, for the hand computation
    cm = sum(float(cross_modal_code_matching(enc[a].shared_q.distances, enc[b].shared_q.distances, "official")) for a, b in
             code_matching_pairs("depth", ["text", "vision"])) / 3
    assert math.isclose(float(terms["cm"]), cm, rel_tol=1e-9)
    quantized = [q for m in ("text", "vision", "depth") for q in (enc[m].shared_q, enc[m].specific_q) if q is not None]
    ctr = sum(float(codevector_contrastive(q.distances, "official")) for q in quantized)  # summed, as theirs
    assert math.isclose(float(terms["ctr"]), ctr, rel_tol=1e-9)
    assert not terms["cm"].requires_grad and not terms["ctr"].requires_grad  # inputs detached in their code
    _, paper = compute_path_loss(CodeBindModel(tiny_config(decoder=False)), "depth", _encodings(requires_grad=True), {})
    assert paper["cm"].requires_grad and paper["ctr"].requires_grad


def test_official_kmeans_data_uses_the_pooled_rows_only():
    from codebind_hf.training.codebooks import CodebookLifecycle
    from codebind_hf.losses.objective import CodebookRecord

    model = CodeBindModel(tiny_config(decoder=False))
    e1 = torch.zeros(8, 32)
    e1[:, 0::8] = 1.0  # every sub-vector along its first axis
    e2 = torch.zeros(40, 32)
    e2[:, 1::8] = 1.0  # token rows along the second axis
    indices = torch.zeros(8, 4, dtype=torch.long)
    records = [CodebookRecord("shared", "text", e1, indices),
               CodebookRecord("shared", "text", e2, torch.zeros(40, 4, dtype=torch.long), tokens=True)]
    records += [CodebookRecord(f"specific.{m}", m, torch.randn(8, 32), indices) for m in ("vision", "depth")]
    life = CodebookLifecycle(model, "depth", update_ema=False, reinit_dead_codes=False)
    life.kmeans_init_(records, iters=2, pooled_only=True)
    shared = model.quantizers["depth"].shared.codebook
    assert (shared[:, 0] > 0.99).all()  # seeded and fitted on the CLS rows alone
    life.kmeans_init_(records, iters=2)
    assert (model.quantizers["depth"].shared.codebook[:, 1] > 0.99).any()  # the paper's: token rows too
