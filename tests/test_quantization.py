"""CompositionalQuantizer: assignment, straight-through, EMA closed form, dead codes, statistics."""

import math

import pytest
import torch
import torch.nn.functional as F

from codebind_hf import CompositionalQuantizer, MultiCodebookQuantizer
from codebind_hf.quantization import quantizer as quantization_module


def _quantizer(k=16, d=4, **kwargs):
    q = CompositionalQuantizer(codebook_size=k, codevector_dim=d, **kwargs)
    return q


def test_indices_equal_brute_force_argmin():
    q = _quantizer(k=32, d=8)
    z = torch.randn(5, 3, 64, dtype=torch.float64).float()
    out = q(z, return_distances=True)
    assert out.indices.shape == (5, 3, 8)
    sub = F.normalize(z.reshape(5, 3, 8, 8).double(), dim=-1)
    brute = torch.cdist(sub.reshape(-1, 8), q.codebook.double()).pow(2).argmin(-1).reshape(5, 3, 8)
    assert torch.equal(out.indices, brute)
    # distances are the squared Euclidean distances of unit sub-vectors to the codes
    assert out.distances.shape == (5, 3, 8, 32)
    ref = torch.cdist(sub.reshape(-1, 8), q.codebook.double()).pow(2).reshape(5, 3, 8, 32)
    assert torch.allclose(out.distances.double(), ref, atol=1e-5)


def test_chunked_assignment_matches_unchunked(monkeypatch):
    q = _quantizer(k=64, d=8)
    z = torch.randn(300, 32)
    full = q(z).indices
    monkeypatch.setattr(quantization_module, "_ASSIGN_CHUNK_ELEMENTS", 64 * 7)  # 7 rows per chunk
    assert torch.equal(q(z).indices, full)


def test_quantized_is_concatenation_of_codes_and_decodes():
    q = _quantizer(k=16, d=4)
    z = torch.randn(6, 12)
    out = q(z)
    expected = q.codebook[out.indices].reshape(6, 12)
    assert torch.allclose(out.quantized, expected, atol=1e-6)
    assert torch.allclose(q.codes_to_vectors(out.indices), expected)
    assert out.distances is None


def test_straight_through_gradient_reaches_input():
    q = _quantizer(k=16, d=4)
    z = torch.randn(3, 8, requires_grad=True)
    out = q(z)
    weights = torch.randn(3, 8)
    (out.quantized * weights).sum().backward()
    # d/dz of normalise(z_sub) applied to the upstream gradient
    z2 = z.detach().clone().requires_grad_(True)
    (F.normalize(z2.reshape(3, 2, 4), dim=-1).reshape(3, 8) * weights).sum().backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-6)


def test_commitment_loss_formula():
    q = _quantizer(k=16, d=4, commitment_weight=0.25)
    z = torch.randn(5, 8)
    out = q(z)
    sub = F.normalize(z.reshape(-1, 4), dim=-1)
    codes = q.codebook[out.indices.reshape(-1)]
    assert torch.allclose(out.commitment_loss, 0.25 * ((sub - codes) ** 2).mean())


def test_ema_update_equals_closed_form():
    torch.manual_seed(1)
    k, d, gamma, eps = 4, 2, 0.9, 1e-5
    q = _quantizer(k=k, d=d, decay=gamma, eps=eps)
    init = q.codebook.clone()
    z = torch.tensor([[3.0, 4.0, 0.0, 2.0], [1.0, 0.0, -1.0, -1.0]])  # sub-vectors (3,4),(0,2),(1,0),(-1,-1)
    indices = torch.tensor([[0, 1], [0, 3]])
    q.update_ema_(z, indices)
    subs = F.normalize(z.reshape(-1, 2), dim=-1)
    counts = torch.tensor([2.0, 1.0, 0.0, 1.0])
    sums = torch.zeros(k, d)
    sums[0] = subs[0] + subs[2]
    sums[1] = subs[1]
    sums[3] = subs[3]
    n = (1 - gamma) * counts
    f = gamma * init + (1 - gamma) * sums
    total = n.sum()
    smoothed = (n + eps) / (total + k * eps) * total
    expected = F.normalize(f / smoothed[:, None], dim=-1)
    assert torch.allclose(q.ema_count, n)
    assert torch.allclose(q.ema_sum, f, atol=1e-6)
    assert torch.allclose(q.codebook, expected, atol=1e-6)
    # the unused code keeps its direction
    assert torch.allclose(q.codebook[2], init[2], atol=1e-6)
    assert torch.equal(q.code_counts, counts.long())


def test_codes_stay_unit_norm_through_life_cycle():
    q = _quantizer(k=32, d=8)
    data = torch.randn(256, 64)
    q.kmeans_init_(data, iters=5)
    assert bool(q.initialized)
    for _ in range(5):
        out = q(data)
        q.update_ema_(data, out.indices)
        q.reinit_dead_codes_(data)
        assert torch.allclose(q.codebook.norm(dim=-1), torch.ones(32), atol=1e-5)


def test_kmeans_init_finds_clusters():
    torch.manual_seed(0)
    centers = F.normalize(torch.randn(4, 8), dim=-1)
    data = (centers[torch.randint(4, (400,))] + 0.01 * torch.randn(400, 8)).reshape(100, 32)
    q = _quantizer(k=4, d=8)
    q.kmeans_init_(data, iters=20)
    # every true centre has a code within a small angle
    sims = centers @ q.codebook.t()
    assert (sims.max(dim=1).values > 0.99).all()


def test_dead_code_reinit_moves_only_unused_codes_and_resets_state():
    q = _quantizer(k=8, d=4)
    data = torch.randn(64, 16)
    # codes 0..3 used equally, 4..7 never
    q.usage_ema.copy_(torch.tensor([0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0]))
    q.ema_count.fill_(5.0)
    before = q.codebook.clone()
    before_sum = q.ema_sum.clone()
    moved = q.reinit_dead_codes_(data)
    assert moved.tolist() == [False] * 4 + [True] * 4
    assert torch.equal(q.codebook[:4], before[:4])
    assert torch.equal(q.ema_sum[:4], before_sum[:4])
    assert not torch.allclose(q.codebook[4:], before[4:])
    assert torch.equal(q.ema_count[4:], torch.zeros(4))
    assert torch.equal(q.ema_count[:4], torch.full((4,), 5.0))
    assert torch.allclose(q.ema_sum[4:], q.codebook[4:])
    # alpha ~ 1 for never-used codes: they land (almost) on a batch sub-vector
    subs = F.normalize(data.reshape(-1, 4), dim=-1)
    nearest = (q.codebook[4:] @ subs.t()).max(dim=1).values
    assert (nearest > 0.99).all()


def test_usage_and_perplexity():
    q = _quantizer(k=4, d=2)
    assert q.usage(torch.tensor([[0, 1], [1, 1]])) == 0.5
    assert math.isclose(q.perplexity(torch.tensor([0, 1, 2, 3])), 4.0, rel_tol=1e-9)
    assert math.isclose(q.perplexity(torch.tensor([2, 2, 2])), 1.0)
    assert q.usage() == 0.0  # nothing seen in training yet
    q.update_ema_(torch.randn(3, 2), torch.tensor([[0], [0], [3]]))
    assert q.usage() == 0.5


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(2, 7), "divisible by codevector_dim"),
        (torch.tensor([[float("nan")] * 8]), "NaN or inf"),
        (torch.tensor([[float("inf")] * 8]), "NaN or inf"),
        (torch.ones(2, 8, dtype=torch.long), "floating point"),
    ],
)
def test_bad_inputs_raise_clear_errors(bad, message):
    q = _quantizer(k=16, d=4)
    with pytest.raises((ValueError, TypeError), match=message):
        q(bad)


def test_bad_indices_raise():
    q = _quantizer(k=16, d=4)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        q.codes_to_vectors(torch.tensor([[16]]))
    with pytest.raises(ValueError, match="one entry per sub-vector"):
        q.update_ema_(torch.randn(2, 8), torch.zeros(2, 3, dtype=torch.long))


def test_state_is_buffers_and_round_trips_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    q = _quantizer(k=16, d=4)
    q.kmeans_init_(torch.randn(40, 8), iters=3)
    q.update_ema_(torch.randn(4, 8), q(torch.randn(4, 8)).indices)
    assert list(q.parameters()) == []
    save_file(q.state_dict(), tmp_path / "q.safetensors")
    q2 = _quantizer(k=16, d=4)
    q2.load_state_dict(load_file(tmp_path / "q.safetensors"), strict=True)
    for name, value in q.state_dict().items():
        assert torch.equal(value, q2.state_dict()[name]), name
    z = torch.randn(3, 8)
    assert torch.equal(q(z).indices, q2(z).indices)


def test_multi_codebook_quantizer():
    books = MultiCodebookQuantizer(["audio", "vision"], shared_codebook_size=32, specific_codebook_size=8, codevector_dim=4)
    assert books.shared.codebook_size == 32 and books.specific_for("audio").codebook_size == 8
    assert sorted(books.codebooks()) == ["shared", "specific.audio", "specific.vision"]
    with pytest.raises(KeyError, match="text"):
        books.specific_for("text")
