"""Each loss equals a direct, loop-based computation of its formula (method doc §3)."""

import math

import pytest
import torch
import torch.nn.functional as F

from codebind_hf.losses import (
    AdaptiveLossBalancer,
    OfficialLossBalancer,
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


def _code_matching_by_loops(pa, pb, log=math.log) -> float:
    """Eq. (6) by loops: -(1/(N m)) Σ_{i,h} log exp S(a_i, b_i) / Σ_j exp S(a_i, b_j), ONE direction."""
    n, m = pa.shape[0], pa.shape[1]

    def s(i, j, h):
        return sum(float(pa[i, h, k]) * log(float(pb[j, h, k])) + float(pb[j, h, k]) * log(float(pa[i, h, k]))
                   for k in range(pa.shape[2]))

    total = 0.0
    for h in range(m):
        for i in range(n):
            total += -math.log(math.exp(s(i, i, h)) / sum(math.exp(s(i, j, h)) for j in range(n)))
    return total / (n * m)


def test_cross_modal_code_matching_is_eq6_one_direction():
    n, m, k = 3, 2, 5
    da, db = torch.rand(n, m, k, dtype=torch.float64) * 4, torch.rand(n, m, k, dtype=torch.float64) * 4
    expected = _code_matching_by_loops(torch.softmax(-da, -1), torch.softmax(-db, -1))
    assert math.isclose(float(cross_modal_code_matching(da, db)), expected, rel_tol=1e-9)
    # Normalised over the rows of b for each row of a: swapping the arguments changes the value (S is symmetric,
    # the normalisation is not), which the old sum of both directions hid.
    assert not math.isclose(float(cross_modal_code_matching(db, da)), expected, rel_tol=1e-3)


def test_cross_modal_code_matching_hand_value():
    # Two rows on opposite codes: P = [[e^0, e^-2], [e^-2, e^0]] / (1 + e^-2); S_ii = 2 Σ p log p, S_ij = 2 Σ p log q.
    d = torch.tensor([[[0.0, 2.0]], [[2.0, 0.0]]], dtype=torch.float64)
    p = 1 / (1 + math.exp(-2))
    s_ii = 2 * (p * math.log(p) + (1 - p) * math.log(1 - p))
    s_ij = 2 * (p * math.log(1 - p) + (1 - p) * math.log(p))
    assert math.isclose(float(cross_modal_code_matching(d, d)), math.log(1 + math.exp(s_ij - s_ii)), rel_tol=1e-12)
    assert float(cross_modal_code_matching(d, d)) == pytest.approx(0.046436, abs=1e-6)


def test_cross_modal_code_matching_official_is_a_softmax_of_the_cosine_over_codes():
    n, m, k = 3, 4, 6
    sub = F.normalize(torch.randn(2, n, m, 8, dtype=torch.float64), dim=-1)
    codes = F.normalize(torch.randn(k, 8, dtype=torch.float64), dim=-1)
    cos = sub @ codes.t()  # (2, n, m, k): what the authors' quantiser calls "dist"
    da, db = 2 - 2 * cos[0], 2 - 2 * cos[1]
    pa, pb = torch.softmax(cos[0], -1), torch.softmax(cos[1], -1)
    expected = _code_matching_by_loops(pa, pb, log=lambda x: math.log(x + 1e-10))
    assert math.isclose(float(cross_modal_code_matching(da, db, variant="official")), expected, rel_tol=1e-9)
    assert not math.isclose(float(cross_modal_code_matching(da, db)), expected, rel_tol=1e-3)
    with pytest.raises(ValueError, match="'paper' or 'official'"):
        cross_modal_code_matching(da, db, variant="authors")


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


def test_codevector_contrastive_gradient_is_the_topk_formulas():
    # The selection (np.argpartition on CPU floats, topk otherwise) must give topk's values and gradient.
    k = 1024
    dist = (4 * torch.rand(16, 8, k, dtype=torch.float64)).requires_grad_()
    flat = dist.reshape(-1, k)
    expected = (flat.topk(k // 10, -1, largest=False).values.mean(-1) / flat.topk(k // 2, -1).values.sum(-1)).mean()
    (grad_expected,) = torch.autograd.grad(expected, dist)
    got = codevector_contrastive(dist)
    (grad,) = torch.autograd.grad(got, dist)
    assert math.isclose(float(got), float(expected), rel_tol=1e-12)
    assert torch.allclose(grad, grad_expected, rtol=0, atol=1e-15)
    # every selected entry gets gradient, no other: 102 + 512 non-zeros per row
    assert (grad.reshape(-1, k) != 0).sum(-1).tolist() == [k // 10 + k // 2] * 128
    # the torch branch (a dtype numpy has no partition for) gives the same loss
    half = codevector_contrastive(dist.detach().to(torch.bfloat16).float().to(torch.bfloat16))
    assert math.isclose(float(half), float(codevector_contrastive(dist.detach().to(torch.bfloat16).double())), rel_tol=2e-2)


def test_codevector_contrastive_official_is_the_authors_double_softmax():
    k = 20
    cos = torch.rand(6, k, dtype=torch.float64) * 2 - 1
    values = []
    for row in cos:
        ordered = sorted(row.tolist())  # ascending cosine: the last K/10 are the closest codes
        x = [sum(ordered[-2:]) / 2] + ordered[:10]
        p = [math.exp(v) / sum(math.exp(u) for u in x) for v in x]  # softmax ...
        values.append(-math.log(math.exp(p[0]) / sum(math.exp(u) for u in p)))  # ... taken as logits by CE(., 0)
    got = codevector_contrastive((2 - 2 * cos).reshape(2, 3, k), variant="official")
    assert math.isclose(float(got), sum(values) / len(values), rel_tol=1e-9)


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


def test_official_balancer_ratios_sine_interval_and_update_steps():
    b = OfficialLossBalancer(momentum=0.5, min_interval=2, max_interval=10, max_steps=8)
    w = b.step({"align": 4.0, "recon": 9.0, "vq": 0.02, "cm": 2.0, "ctr": 1.5, "cuni": -3.5, "orth": 0.4, "uni": -2.0})
    # first step: weight = ratio * align / |loss|; ctr and cuni share the weight of their sum (-2)
    assert w == pytest.approx({"align": 1.0, "recon": 1.0, "vq": 4 * 0.01 / 0.02, "cm": 4 * 0.1 / 2, "ctr": 0.2,
                               "cuni": 0.2, "orth": 4 * 0.1 / 0.4, "uni": 4 * 1.0 / 2.0}, rel=1e-6)
    # no EMA update before the interval (2 steps): a changed loss leaves the weights alone
    assert b.step({"align": 2.0, "vq": 1.0, "cm": 2.0})["vq"] == pytest.approx(2.0, rel=1e-6)
    # step 3: EMAs move once: align 0.5*4 + 0.5*2 = 3, vq 0.5*0.02 + 0.5*0.02 = 0.02 -> 3 * 0.01 / 0.02
    w = b.step({"align": 2.0, "vq": 0.02, "cm": 2.0})
    assert w["vq"] == pytest.approx(1.5, rel=1e-6) and w["cm"] == pytest.approx(0.15, rel=1e-6)
    # next interval: int(2 + 8 * sin(pi/2 * 3/8)) = 6
    assert b.current_interval == int(2 + 8 * math.sin(math.pi / 2 * 3 / 8)) == 6
    # only vq is capped
    capped = OfficialLossBalancer(max_weight=10.0).step({"align": 4.0, "vq": 1e-6, "uni": 1e-6})
    assert capped["vq"] == 10.0 and capped["uni"] == pytest.approx(4.0 / (1e-6 + 1e-8))
    other = OfficialLossBalancer(momentum=0.5, min_interval=2, max_interval=10, max_steps=8)
    other.load_state_dict(b.state_dict())
    assert other.step({"align": 1.0, "vq": 0.1}) == b.step({"align": 1.0, "vq": 0.1})
