"""Each loss equals a direct, loop-based computation of its formula (method doc §3)."""

import math

import pytest
import torch
import torch.nn.functional as F

from codebind_hf.losses import (
    AdaptiveLossBalancer,
    codevector_contrastive,
    codevector_uniformity,
    cross_modal_code_matching,
    info_nce,
    orthogonality,
    reconstruction,
    uniformity,
)


def _unit(*shape):
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=-1)


def test_info_nce_matches_loops():
    a, b, tau = _unit(4, 6), _unit(4, 6), 0.07
    total = 0.0
    for x, y in ((a, b), (b, a)):
        terms = []
        for i in range(4):
            num = math.exp(float(x[i] @ y[i]) / tau)
            den = sum(math.exp(float(x[i] @ y[j]) / tau) for j in range(4))
            terms.append(-math.log(num / den))
        total += sum(terms) / 4
    assert math.isclose(float(info_nce(a, b, tau)), total, rel_tol=1e-9)


def test_info_nce_soft_targets_identity_equals_plain_and_graded_differs():
    a, b = _unit(5, 8), _unit(5, 8)
    plain = info_nce(a, b, 0.1)
    assert torch.allclose(info_nce(a, b, 0.1, targets=torch.eye(5, dtype=torch.float64)), plain)
    graded = torch.eye(5, dtype=torch.float64) + 0.5 * torch.diag(torch.ones(4, dtype=torch.float64), 1)
    # direct: row-normalised soft cross entropy both ways
    logits = a @ b.t() / 0.1
    rows = graded / graded.sum(1, keepdim=True)
    cols = graded / graded.sum(0, keepdim=True)
    direct = -(rows * logits.log_softmax(1)).sum(1).mean() - (cols.t() * logits.t().log_softmax(1)).sum(1).mean()
    assert torch.allclose(info_nce(a, b, 0.1, targets=graded), direct)


def test_cross_modal_code_matching_matches_loops():
    n, m, k = 3, 2, 5
    da, db = torch.rand(n, m, k, dtype=torch.float64) * 4, torch.rand(n, m, k, dtype=torch.float64) * 4
    pa, pb = torch.softmax(-da, -1), torch.softmax(-db, -1)

    def s(i, j, h):
        return float((pa[i, h] * pb[j, h].log()).sum() + (pb[j, h] * pa[i, h].log()).sum())

    fwd = bwd = 0.0
    for h in range(m):
        for i in range(n):
            fwd += -math.log(math.exp(s(i, i, h)) / sum(math.exp(s(i, j, h)) for j in range(n)))
            bwd += -math.log(math.exp(s(i, i, h)) / sum(math.exp(s(j, i, h)) for j in range(n)))
    expected = fwd / (n * m) + bwd / (n * m)
    assert math.isclose(float(cross_modal_code_matching(da, db)), expected, rel_tol=1e-9)


def test_cross_modal_code_matching_official_variant_uses_softmax_over_positions():
    da, db = torch.rand(3, 4, 6, dtype=torch.float64), torch.rand(3, 4, 6, dtype=torch.float64)
    pa, pb = torch.softmax(da.sqrt(), dim=1), torch.softmax(db.sqrt(), dim=1)
    scores = torch.einsum("ihk,jhk->hij", pa, (pb + 1e-10).log()) + torch.einsum("ihk,jhk->hij", (pa + 1e-10).log(), pb)
    labels = torch.arange(3).repeat(4)
    expected = F.cross_entropy(scores.reshape(12, 3), labels) + F.cross_entropy(scores.transpose(1, 2).reshape(12, 3), labels)
    assert torch.allclose(cross_modal_code_matching(da, db, variant="official"), expected)
    assert not torch.allclose(cross_modal_code_matching(da, db), expected)


def test_orthogonality_paper_and_official():
    s, p = _unit(4, 6), _unit(4, 6)
    expected = sum(float(s[i] @ p[i]) ** 2 for i in range(4)) / 4
    assert math.isclose(float(orthogonality(s, p)), expected, rel_tol=1e-9)
    assert float(orthogonality(s, s)) == pytest.approx(1.0)
    st, pt = _unit(2, 3, 6), _unit(2, 3, 6)
    fro = [math.sqrt(sum(float(st[b, i] @ pt[b, j]) ** 2 for i in range(3) for j in range(3))) for b in range(2)]
    assert math.isclose(float(orthogonality(st, pt, variant="official")), sum(fro) / 2, rel_tol=1e-9)


def test_uniformity_and_codevector_uniformity_match_pairs_mean():
    x = _unit(5, 4)
    pairs = [math.exp(-float((x[i] - x[j]).pow(2).sum())) for i in range(5) for j in range(i + 1, 5)]
    expected = math.log(sum(pairs) / len(pairs))
    assert math.isclose(float(uniformity(x)), expected, rel_tol=1e-9)
    assert math.isclose(float(codevector_uniformity(x)), expected, rel_tol=1e-9)
    # identical vectors give the maximum, 0
    assert float(uniformity(torch.ones(3, 4))) == pytest.approx(0.0)


def test_codevector_contrastive_matches_sorted_formula():
    k = 20  # closest 2 (K/10), farthest 10 (K/2)
    dist = torch.rand(3, 2, k, dtype=torch.float64)
    values = []
    for row in dist.reshape(-1, k):
        ordered = sorted(row.tolist())
        values.append((sum(ordered[:2]) / 2) / sum(ordered[-10:]))
    assert math.isclose(float(codevector_contrastive(dist)), sum(values) / len(values), rel_tol=1e-9)


def test_reconstruction_is_mse():
    pred, target = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert torch.allclose(reconstruction(pred, target), ((pred - target) ** 2).mean())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: info_nce(torch.randn(3, 4), torch.randn(2, 4), 0.1), "shape"),
        (lambda: info_nce(torch.randn(3, 4), torch.randn(3, 4), 0.0), "temperature"),
        (lambda: cross_modal_code_matching(torch.rand(2, 3, 4), torch.rand(2, 3)), r"\(N, m, K\)"),
        (lambda: orthogonality(torch.randn(2, 4), torch.randn(2, 5)), "same shape"),
        (lambda: uniformity(torch.randn(1, 4)), "at least two"),
        (lambda: codevector_contrastive(torch.rand(2, 5)), "at least 10 codes"),
        (lambda: reconstruction(torch.randn(2, 3), torch.randn(3, 2)), "differ in shape"),
    ],
)
def test_bad_loss_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_adaptive_balancer_rescales_to_alignment_and_grows_interval():
    balancer = AdaptiveLossBalancer(["vq", "cm"], momentum=0.5, min_interval=2, max_interval=6, max_steps=10)
    w = balancer.step({"align": 4.0, "recon": 9.0, "vq": 0.02, "cm": 2.0})
    assert w["align"] == 1.0 and w["recon"] == 1.0
    assert w["vq"] == pytest.approx(200.0) and w["cm"] == pytest.approx(2.0)
    # next update only after the interval (2 steps at progress ~0)
    w = balancer.step({"align": 2.0, "vq": 0.02, "cm": 2.0})
    assert w["vq"] == pytest.approx(200.0)
    w = balancer.step({"align": 2.0, "vq": 0.02, "cm": 2.0})
    # EMA of align: 4 -> 3 -> 2.5 ; vq stays 0.02
    assert w["vq"] == pytest.approx(2.5 / 0.02)
    assert balancer.interval() > 2
    state = balancer.state_dict()
    other = AdaptiveLossBalancer(["vq", "cm"], momentum=0.5, min_interval=2, max_interval=6, max_steps=10)
    other.load_state_dict(state)
    assert other.step({"align": 1.0, "vq": 0.1, "cm": 1.0}) == balancer.step({"align": 1.0, "vq": 0.1, "cm": 1.0})
    with pytest.raises(ValueError, match="fixed weight"):
        AdaptiveLossBalancer(["align"])
    with pytest.raises(KeyError, match="align"):
        balancer.step({"vq": 1.0})
