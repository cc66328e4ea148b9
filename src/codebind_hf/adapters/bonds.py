"""Expert-space bonds (FreeBind, arXiv 2405.04883): small projectors between the unified CodeBind space and the
embedding space of an *expert* model, trained with InfoNCE on (pseudo-)paired embeddings.

- a ``"displacement"`` bond maps unified embeddings of a modality onto the expert space; the bonded embedding is
  the projected one (it gains the expert's structure and leaves the unified space);
- a ``"combination"`` bond maps expert embeddings into the frozen unified space; the bonded embedding mixes both,
  ``normalize(f·proj(expert(x)) + (1−f)·unified(x))`` with a factor ``f`` in ``[0, 1]``.

A bond's projector is an MLP (`BondProjectionMLP`; not the projector-mode `ProjectorHead` of
`codebind_hf.adapters.projector`, which replaces a shared head) or the average of several trained on different subsets of the
pairs (`ProjectorMixture`). `mine_pseudo_pairs` builds pairs from two unpaired collections by nearest-neighbour
retrieval. Nothing here knows the model: attaching bonds to a [`CodeBindModel`] and their artifacts are in
`codebind_hf.adapters.bond_io`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..losses.functional import info_nce
from ..modalities import canonical_modality

BOND_KINDS = ("displacement", "combination")
SUBSET_MODES = ("disjoint", "bootstrap")
BOND_PARTS = ("shared", "specific", "concat")


@dataclass
class SpaceBondConfig:
    """Settings of a bond between the unified space and an expert space.

    Args:
        name (`str`): the bond's name in a model's registry (``get_features(..., bonds={name: f})``).
        kind (`str`): ``"displacement"`` (projector: unified → expert) or ``"combination"`` (expert → unified).
        modality (`str`): the modality whose unified embeddings the bond applies to.
        in_dim (`int`), out_dim (`int`): the projector's input and output widths (unified/expert dims by ``kind``).
        hidden_dim (`int`, *optional*): width of the hidden layers; defaults to ``max(in_dim, out_dim)``.
        num_layers (`int`, *optional*, defaults to 2): linear layers in the MLP (1 is a single linear map).
        layer_norm (`bool`, *optional*, defaults to `True`): LayerNorm after each hidden linear layer.
        dropout (`float`, *optional*, defaults to 0.0): dropout after each hidden activation.
        temperature (`float`, *optional*, defaults to 0.05): InfoNCE temperature for training.
        num_projectors (`int`, *optional*, defaults to 1): more than 1 makes a `ProjectorMixture`.
        subsets (`str`, *optional*, defaults to `"disjoint"`): how a mixture's members split the pairs,
            ``"disjoint"`` or ``"bootstrap"``.
        part (`str`, *optional*, defaults to `"shared"`): which ``get_features`` part the unified side is.
        expert (`str`, *optional*): free text naming the expert model, kept for provenance.
    """

    name: str
    kind: str
    modality: str
    in_dim: int
    out_dim: int
    hidden_dim: int | None = None
    num_layers: int = 2
    layer_norm: bool = True
    dropout: float = 0.0
    temperature: float = 0.05
    num_projectors: int = 1
    subsets: str = "disjoint"
    part: str = "shared"
    expert: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if self.kind not in BOND_KINDS:
            raise ValueError(f"kind must be one of {BOND_KINDS}, got {self.kind!r}")
        self.modality = canonical_modality(self.modality)
        for key in ("in_dim", "out_dim", "num_layers", "num_projectors"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.hidden_dim is None:
            self.hidden_dim = max(self.in_dim, self.out_dim)
        if not isinstance(self.hidden_dim, int) or self.hidden_dim < 1:
            raise ValueError(f"hidden_dim must be a positive integer or None, got {self.hidden_dim!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.subsets not in SUBSET_MODES:
            raise ValueError(f"subsets must be one of {SUBSET_MODES}, got {self.subsets!r}")
        if self.part not in BOND_PARTS:
            raise ValueError(f"part must be one of {BOND_PARTS}, got {self.part!r}")

    @property
    def unified_dim(self) -> int:
        return self.in_dim if self.kind == "displacement" else self.out_dim

    @property
    def expert_dim(self) -> int:
        return self.out_dim if self.kind == "displacement" else self.in_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> SpaceBondConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown bond settings {unknown}; expected some of {sorted(known)}")
        return cls(**data)


# ---------------------------------------------------------------------------- projectors
class BondProjectionMLP(nn.Module):
    """MLP from `(N, in_dim)` to unit vectors `(N, out_dim)`; inputs are L2-normalised first, so raw and unit
    embeddings give the same output. It maps between two embedding spaces, where `ProjectorHead`
    (`codebind_hf.adapters.projector`) maps tower tokens to an embedding."""

    def __init__(self, config: SpaceBondConfig):
        super().__init__()
        layers: list[nn.Module] = []
        width = config.in_dim
        for _ in range(config.num_layers - 1):
            layers.append(nn.Linear(width, config.hidden_dim))
            if config.layer_norm:
                layers.append(nn.LayerNorm(config.hidden_dim))
            layers += [nn.GELU(), nn.Dropout(config.dropout)]
            width = config.hidden_dim
        layers.append(nn.Linear(width, config.out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(F.normalize(x, dim=-1)), dim=-1)


BondProjector = BondProjectionMLP  # deprecated: the former name


class ProjectorMixture(nn.Module):
    """``config.num_projectors`` projectors, each trained on its own subset of the pairs; the output is the
    normalised mean of their unit outputs (FreeBind's mixture of projectors: steadier than any single one).

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.adapters.bonds import ProjectorMixture, SpaceBondConfig
    >>> config = SpaceBondConfig("demo", "combination", "audio", in_dim=8, out_dim=4, num_projectors=3)
    >>> mixture = ProjectorMixture(config)
    >>> source, target = torch.randn(30, 8), torch.randn(30, 4)
    >>> histories = mixture.fit(source, target, epochs=2, batch_size=5, progress=False)
    >>> len(histories), len(histories[0]), mixture(source).norm(dim=-1).allclose(torch.ones(30))
    (3, 2, True)

    ```
    """

    def __init__(self, config: SpaceBondConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(BondProjectionMLP(config) for _ in range(config.num_projectors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.stack([member(x) for member in self.members]).mean(0), dim=-1)

    def fit(self, source: torch.Tensor, target: torch.Tensor, *, subsets: str | None = None, seed: int = 0,
            **train_kwargs) -> list[list[float]]:
        """Train member ``i`` on subset ``i`` of the pairs (`subset_indices`) with seed ``seed + i``.

        Returns:
            `list[list[float]]`: each member's per-epoch mean loss.
        """
        _check_pairs(source, target)
        mode = subsets or self.config.subsets
        generator = torch.Generator().manual_seed(seed)
        chunks = subset_indices(source.shape[0], len(self.members), mode, generator)
        histories = []
        for i, (member, idx) in enumerate(zip(self.members, chunks)):
            idx = idx.to(source.device)
            histories.append(train_projector(
                member, source[idx], target[idx], temperature=self.config.temperature, seed=seed + i,
                desc=f"{self.config.name} projector {i + 1}/{len(self.members)}", **train_kwargs,
            ))
        return histories


def subset_indices(n: int, k: int, mode: str, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Row indices of ``k`` training subsets of ``n`` pairs.

    ``"disjoint"``: a random partition into ``k`` near-equal parts. ``"bootstrap"``: for each part, the distinct
    rows of ``n`` draws with replacement (about 63% of the pairs), so no pair repeats inside an InfoNCE batch,
    where a copy would be a false negative.

    >>> import torch
    >>> parts = subset_indices(10, 3, "disjoint", torch.Generator().manual_seed(0))
    >>> [len(p) for p in parts], sorted(torch.cat(parts).tolist()) == list(range(10))
    ([4, 3, 3], True)
    """
    if mode not in SUBSET_MODES:
        raise ValueError(f"subsets must be one of {SUBSET_MODES}, got {mode!r}")
    if k < 1 or n < 2 * k:
        raise ValueError(f"{k} subsets need at least {2 * k} pairs (2 per subset), got {n}")
    if mode == "disjoint":
        return list(torch.randperm(n, generator=generator).tensor_split(k))
    return [torch.unique(torch.randint(n, (n,), generator=generator)) for _ in range(k)]


def _check_pairs(source: torch.Tensor, target: torch.Tensor) -> None:
    if source.ndim != 2 or target.ndim != 2 or source.shape[0] != target.shape[0]:
        raise ValueError(
            f"paired embeddings must be (N, dim) tensors with the same N; got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    if source.shape[0] < 2:
        raise ValueError(f"InfoNCE needs at least 2 pairs, got {source.shape[0]}")
    if not (torch.isfinite(source).all() and torch.isfinite(target).all()):
        raise ValueError("paired embeddings contain NaN or inf values")


def train_projector(
    projector: nn.Module,
    source: torch.Tensor,
    target: torch.Tensor,
    *,
    temperature: float,
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    seed: int = 0,
    progress: bool = True,
    desc: str = "projector",
) -> list[float]:
    """Train ``projector`` so that ``projector(source[i])`` retrieves ``normalize(target[i])``: symmetric InfoNCE
    (`codebind_hf.losses.functional.info_nce`), AdamW, batches drawn from a generator seeded with ``seed``.

    A last batch of a single pair is skipped (InfoNCE needs a negative). The projector is left in eval mode.

    Returns:
        `list[float]`: the mean loss of each epoch.
    """
    _check_pairs(source, target)
    if epochs < 1 or batch_size < 2:
        raise ValueError(f"need epochs >= 1 and batch_size >= 2, got epochs={epochs}, batch_size={batch_size}")
    reference = next(projector.parameters())
    source = source.detach().to(reference.device, reference.dtype)
    target = F.normalize(target.detach().to(reference.device, reference.dtype), dim=-1)
    n = source.shape[0]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(projector.parameters(), lr=lr, weight_decay=weight_decay)
    steps = math.ceil(n / batch_size)
    history: list[float] = []
    projector.train()
    # enable_grad: a caller's torch.no_grad() (inference code) must not silently turn training into a no-op
    with torch.enable_grad(), tqdm(total=epochs * steps, desc=desc, unit="step", disable=not progress) as bar:
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(source.device)
            total, count = 0.0, 0
            for batch in order.split(batch_size):
                bar.update(1)
                if batch.numel() < 2:
                    continue
                loss = info_nce(projector(source[batch]), target[batch], temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + loss.item(), count + 1
            history.append(total / count)
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    projector.eval()
    return history


# ---------------------------------------------------------------------------- the bond
class SpaceBond(nn.Module):
    """A bond between the unified space (one modality, one ``part``) and an expert space.

    ``bond(unified, expert, factor)`` gives the bonded embedding: for ``"combination"``,
    ``normalize(f·proj(expert) + (1−f)·unified)`` (``f = 0`` returns ``unified`` itself); for ``"displacement"``,
    ``proj(unified)`` (``f`` is 1, or 0 for the unbonded embedding).

    Args:
        config ([`SpaceBondConfig`]): the bond's settings.
        expert_encoder (`Callable`, *optional*): maps the inputs given to ``get_features`` to expert embeddings
            `(batch, expert_dim)`, for combination bonds used without ``expert_features=``; never saved.

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf.adapters.bonds import SpaceBond, SpaceBondConfig
    >>> _ = torch.manual_seed(0)
    >>> bond = SpaceBond(SpaceBondConfig("clap", "combination", "audio", in_dim=12, out_dim=8))
    >>> unified, expert = torch.nn.functional.normalize(torch.randn(64, 8), dim=-1), torch.randn(64, 12)
    >>> history = bond.fit(unified, expert, epochs=5, batch_size=16, progress=False)
    >>> history[-1] < history[0]
    True
    >>> bond(unified, expert, factor=0.0) is unified, bond(unified, expert, factor=0.5).shape
    (True, torch.Size([64, 8]))

    ```
    """

    def __init__(self, config: SpaceBondConfig, expert_encoder: Callable | None = None):
        super().__init__()
        self.config = config
        self.projector = ProjectorMixture(config) if config.num_projectors > 1 else BondProjectionMLP(config)
        self.set_expert_encoder(expert_encoder)

    def set_expert_encoder(self, encoder: Callable | None) -> None:
        """Register (or clear, with None) the expert encoder; kept outside the module tree, so it never enters
        the bond's ``state_dict`` or follows ``bond.to(...)``."""
        if encoder is not None and not callable(encoder):
            raise TypeError(f"expert_encoder must be callable, got {type(encoder).__name__}")
        object.__setattr__(self, "expert_encoder", encoder)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kind(self) -> str:
        return self.config.kind

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Unit projector outputs for ``x`` `(N, in_dim)`, computed in the bond's device and dtype and returned in
        ``x``'s."""
        if x.ndim != 2 or x.shape[-1] != self.config.in_dim:
            side = "unified" if self.kind == "displacement" else "expert"
            raise ValueError(
                f"bond {self.name!r} ({self.kind}) projects {side} embeddings of shape (batch, {self.config.in_dim}); "
                f"got {tuple(x.shape)}"
            )
        reference = next(self.parameters())
        return self.projector(x.to(reference.device, reference.dtype)).to(x.device, x.dtype)

    def forward(self, unified: torch.Tensor, expert: torch.Tensor | None = None, factor: float = 1.0) -> torch.Tensor:
        factor = float(factor)
        if unified.ndim != 2 or unified.shape[-1] != self.config.unified_dim:
            raise ValueError(
                f"bond {self.name!r} takes unified embeddings of shape (batch, {self.config.unified_dim}); "
                f"got {tuple(unified.shape)}"
            )
        if self.kind == "displacement":
            if factor not in (0.0, 1.0):
                raise ValueError(f"a displacement bond is on (1) or off (0); got factor {factor} for {self.name!r}")
            return self.project(unified) if factor == 1.0 else unified
        if not 0.0 <= factor <= 1.0:
            raise ValueError(f"the factor of combination bond {self.name!r} must lie in [0, 1], got {factor}")
        if factor == 0.0:
            return unified  # exactly the unbonded embedding
        if expert is None:
            raise ValueError(f"combination bond {self.name!r} needs the expert embeddings of the same inputs")
        if expert.shape[0] != unified.shape[0]:
            raise ValueError(
                f"bond {self.name!r}: {expert.shape[0]} expert embeddings for {unified.shape[0]} unified ones"
            )
        return F.normalize(factor * self.project(expert) + (1.0 - factor) * unified, dim=-1)

    def fit(self, unified: torch.Tensor, expert: torch.Tensor, **train_kwargs) -> list[float]:
        """`train_bond` on this bond."""
        return train_bond(self, unified, expert, **train_kwargs)


def train_bond(bond: SpaceBond, unified: torch.Tensor, expert: torch.Tensor, *, subsets: str | None = None,
               seed: int = 0, **train_kwargs) -> list[float]:
    """Train a bond's projector(s) on paired unified and expert embeddings (row ``i`` of each is one item).

    The projector maps ``unified`` onto ``expert`` (displacement) or ``expert`` onto ``unified`` (combination).
    Extra keyword arguments go to `train_projector` (``epochs``, ``batch_size``, ``lr``, ``weight_decay``,
    ``progress``).

    Returns:
        `list[float]`: per-epoch mean loss (for a mixture, averaged over its members).
    """
    if unified.ndim != 2 or expert.ndim != 2 or unified.shape[-1] != bond.config.unified_dim \
            or expert.shape[-1] != bond.config.expert_dim:
        raise ValueError(
            f"bond {bond.name!r} trains on unified (N, {bond.config.unified_dim}) and expert (N, {bond.config.expert_dim}) "
            f"embeddings; got {tuple(unified.shape)} and {tuple(expert.shape)}"
        )
    source, target = (unified, expert) if bond.kind == "displacement" else (expert, unified)
    if isinstance(bond.projector, ProjectorMixture):
        histories = bond.projector.fit(source, target, subsets=subsets, seed=seed, **train_kwargs)
        return [sum(epoch) / len(epoch) for epoch in zip(*histories)]
    if subsets is not None:
        raise ValueError(f"subsets applies to mixtures (num_projectors > 1); bond {bond.name!r} has one projector")
    return train_projector(bond.projector, source, target, temperature=bond.config.temperature, seed=seed,
                           desc=f"bond {bond.name}", **train_kwargs)


# ---------------------------------------------------------------------------- pseudo-pairs
class PseudoPairs(NamedTuple):
    """Mined pairs: ``pairs[p] = (query index, gallery index)`` with cosine ``scores[p]``, ordered by query index
    and then by decreasing score."""

    pairs: torch.Tensor  # (P, 2) int64
    scores: torch.Tensor  # (P,) float32


def _topk_chunked(a: torch.Tensor, b: torch.Tensor, k: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    values, indices = [], []
    for rows in a.split(chunk_size):
        top = (rows @ b.t()).topk(k, dim=1)
        values.append(top.values)
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


def mine_pseudo_pairs(
    query_embeds: torch.Tensor,
    gallery_embeds: torch.Tensor,
    top_k: int = 1,
    threshold: float | None = None,
    mutual: bool = False,
    chunk_size: int = 4096,
) -> PseudoPairs:
    """Pseudo-pairs between two unpaired collections embedded in one space, by cosine nearest neighbours.

    Each query keeps its ``top_k`` nearest gallery items whose cosine is at least ``threshold``; with ``mutual``,
    only pairs where the query is also among the ``top_k`` nearest queries of that gallery item. Similarities are
    computed ``chunk_size`` query rows at a time (and gallery rows, for ``mutual``), so memory stays
    `O(chunk_size × size of the other side)`.

    Args:
        query_embeds (`torch.Tensor` of shape `(N, D)`), gallery_embeds (`torch.Tensor` of shape `(M, D)`): any
            scale; rows are L2-normalised here.

    Returns:
        [`PseudoPairs`]: ``pairs`` `(P, 2)` and ``scores`` `(P,)`.

    >>> import torch
    >>> query = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> gallery = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 1.0]])
    >>> pairs, scores = mine_pseudo_pairs(query, gallery, top_k=2, threshold=0.5)
    >>> pairs.tolist(), [round(s, 3) for s in scores.tolist()]
    ([[0, 0], [0, 2], [1, 1], [1, 2]], [0.995, 0.707, 0.995, 0.707])
    """
    for name, x in (("query_embeds", query_embeds), ("gallery_embeds", gallery_embeds)):
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty (N, D) tensor, got shape {tuple(x.shape)}")
    if query_embeds.shape[1] != gallery_embeds.shape[1]:
        raise ValueError(
            f"query and gallery embeddings must share one space (same width); got {query_embeds.shape[1]} and "
            f"{gallery_embeds.shape[1]}"
        )
    if not isinstance(top_k, int) or not 1 <= top_k <= gallery_embeds.shape[0]:
        raise ValueError(f"top_k must be an integer in [1, {gallery_embeds.shape[0]}] (the gallery size), got {top_k!r}")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    query = F.normalize(query_embeds.detach().float(), dim=-1)
    gallery = F.normalize(gallery_embeds.detach().to(query.device).float(), dim=-1)
    scores, neighbours = _topk_chunked(query, gallery, top_k, chunk_size)  # (N, k), sorted by score
    keep = torch.ones_like(scores, dtype=torch.bool)
    if threshold is not None:
        keep &= scores >= threshold
    if mutual:
        _, back = _topk_chunked(gallery, query, min(top_k, query.shape[0]), chunk_size)  # (M, k') query ids
        rows = torch.arange(query.shape[0], device=query.device)[:, None]
        keep &= (back[neighbours] == rows[..., None]).any(-1)
    query_ids = torch.arange(query.shape[0], device=query.device)[:, None].expand_as(neighbours)
    pairs = torch.stack([query_ids[keep], neighbours[keep]], dim=1)
    return PseudoPairs(pairs.cpu(), scores[keep].cpu())


__all__ = [
    "SpaceBondConfig",
    "BondProjectionMLP",
    "BondProjector",
    "ProjectorMixture",
    "SpaceBond",
    "PseudoPairs",
    "subset_indices",
    "train_projector",
    "train_bond",
    "mine_pseudo_pairs",
    "BOND_KINDS",
]
