"""Compositional vector quantisation with EMA codebooks (method doc §2).

A ``d``-dim vector is cut into ``m = d / d*`` sub-vectors of ``d*`` dims; every sub-vector is
L2-normalised and snapped to the nearest (by cosine) of ``K`` unit-norm codevectors of one
codebook. All codebook state lives in buffers so a ``state_dict`` goes to safetensors as is.

``raw_codes=True`` is the authors' quantiser (``variants.quantizer_output: official``): the codebook holds the
EMA means ``f_k / N_k`` without re-normalisation, sub-vectors are assigned by cosine to the normalised codes, and
the output is the raw code vector (the caller L2-normalises over the whole part). ``reinit="official"`` and
``ema_init_counts=True`` are the authors' dead-code re-init and EMA start counts (docs/faithfulness.md).

Assignment is a chunked dot-product argmax followed by a gather (on CUDA with Triton, and on CPU when a C++
compiler is present: a kernel that never writes the scores): no one-hot matrices and no ``(N, m, K)`` tensor unless distances are
explicitly requested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .cpu_kernel import cpu_nearest_code, cpu_nearest_code_available
from .kernels import fused_nearest_code, fused_nearest_code_available

# Scores computed per chunk of the assignment (rows * K elements): small on CPU so each chunk's
# score matrix stays in cache, large on GPU so kernel launches do not dominate; bounded either way.
_ASSIGN_CHUNK_ELEMENTS = 1 << 21  # CPU: 2048 rows of K = 1024 scores (8 MiB)
_ASSIGN_CHUNK_ELEMENTS_GPU = 1 << 28  # GPU: 1 GiB of fp32 scores


@dataclass
class QuantizerOutput(ModelOutput):
    """Output of [`CompositionalQuantizer`].

    Args:
        quantized (`torch.FloatTensor` of shape `(..., d)`):
            Concatenated unit codevectors, with a straight-through gradient to the input.
        indices (`torch.LongTensor` of shape `(..., d // codevector_dim)`):
            Index of the codevector chosen for every sub-vector.
        commitment_loss (`torch.FloatTensor` of shape `()`):
            ``commitment_weight * mean((z_sub - sg[q_sub])**2)`` over normalised sub-vectors.
        distances (`torch.FloatTensor` of shape `(..., m, K)`, *optional*):
            Squared Euclidean distances of every normalised sub-vector to every codevector;
            only when ``return_distances=True``.
    """

    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    distances: torch.FloatTensor | None = None


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _sample_rows_synced(rows: torch.Tensor, num: int) -> torch.Tensor | None:
    """Draw ``num`` rows (with replacement) from the rows of *all* processes; identical on every rank.

    Each rank draws ``num`` candidates from its own rows, candidates are all-gathered, and code ``k``
    takes its candidate from the ``k``-th rank (cyclically) among the ranks that had rows. A rank
    with no rows still joins every collective, so no process waits forever. Returns ``None`` when
    no process has any row.
    """
    width = rows.shape[-1]
    has_rows = rows.shape[0] > 0
    if has_rows:
        candidates = rows[torch.randint(rows.shape[0], (num,), device=rows.device)]
    else:
        candidates = torch.zeros(num, width, device=rows.device, dtype=rows.dtype)
    if not _distributed():
        return candidates if has_rows else None
    world = dist.get_world_size()
    flags = [torch.zeros(1, device=rows.device) for _ in range(world)]
    dist.all_gather(flags, torch.tensor([float(has_rows)], device=rows.device))
    gathered = [torch.empty_like(candidates) for _ in range(world)]
    dist.all_gather(gathered, candidates.contiguous())
    valid = [r for r in range(world) if flags[r].item() > 0]
    if not valid:
        return None
    owner = torch.tensor(valid, device=rows.device)[torch.arange(num, device=rows.device) % len(valid)]
    stacked = torch.stack(gathered)  # (world, num, width)
    return stacked[owner, torch.arange(num, device=rows.device)]


def initial_codebook(codebook_size: int, codevector_dim: int) -> torch.Tensor:
    """The codevectors of a fresh codebook: unit vectors drawn from a fixed-seed generator, so that a codebook built
    directly and one initialised later (meta device, `_init_weights`) are the same. They are a placeholder until
    k-means initialisation / training (``initialized`` stays False), never used for inference."""
    generator = torch.Generator().manual_seed(codebook_size * 1009 + codevector_dim)
    return F.normalize(torch.randn(codebook_size, codevector_dim, generator=generator), dim=-1)


def nearest_codes(rows: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the max-dot-product centre of each row (the first such centre on ties).

    On CUDA a fused Triton kernel; on CPU the register-blocked kernel of ``cpu_kernel`` when it can be built (same
    indices as the chunked torch path, which it falls back to); else the chunked torch path.
    """
    if fused_nearest_code_available(rows, centers):
        return fused_nearest_code(rows, centers)
    if torch.compiler.is_compiling():
        return torch.max(rows @ centers.t(), dim=-1).indices  # a traced graph has no data-sized loop (dynamic batch)
    if cpu_nearest_code_available(rows, centers):
        return cpu_nearest_code(rows, centers, settle=_nearest_codes_torch)
    return _nearest_codes_torch(rows, centers)


def _nearest_codes_torch(rows: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """The reference search: chunked so scores stay ``(chunk, K)``; ``torch.max`` keeps the first maximum."""
    indices = torch.empty(rows.shape[0], dtype=torch.long, device=rows.device)
    budget = _ASSIGN_CHUNK_ELEMENTS if rows.device.type == "cpu" else _ASSIGN_CHUNK_ELEMENTS_GPU
    chunk = max(1, budget // centers.shape[0])
    for start in range(0, rows.shape[0], chunk):
        indices[start : start + chunk] = torch.max(rows[start : start + chunk] @ centers.t(), dim=-1).indices
    return indices


class CompositionalQuantizer(nn.Module):
    """Quantise vectors as concatenations of unit codevectors from one shared codebook.

    Args:
        codebook_size (`int`): number of codevectors ``K``.
        codevector_dim (`int`, *optional*, defaults to 8): sub-vector width ``d*``.
        decay (`float`, *optional*, defaults to 0.99): EMA decay ``γ`` of counts and sums.
        commitment_weight (`float`, *optional*, defaults to 0.25): ``β`` of the commitment loss.
        eps (`float`, *optional*, defaults to 1e-5): Laplace smoothing of the EMA counts.
        usage_decay (`float`, *optional*, defaults to 0.99): EMA decay of code usage for dead-code re-init.
        reinit_temperature (`float`, *optional*, defaults to 10.0): sharpness of ``α_k`` (CVQ-VAE's 10).
        dead_code_alpha (`float`, *optional*, defaults to 1e-3): codes with ``α_k`` at least this are re-initialised.
        raw_codes (`bool`, *optional*, defaults to `False`): keep and output raw (not unit) code vectors.
        reinit (`str`, *optional*, defaults to `"paper"`): ``"paper"`` moves only rarely used codes and resets their
            EMA state; ``"official"`` blends every code toward its anchor by ``α_k`` and keeps the EMA state.
        ema_init_counts (`bool`, *optional*, defaults to `False`): after k-means, ``N_k⁰`` = the cluster sizes and
            ``f_k⁰ = N_k⁰ e_k`` (the authors'); otherwise ``N_k⁰ = 0`` and ``f_k⁰ = e_k`` (the paper).

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf import CompositionalQuantizer
    >>> quantizer = CompositionalQuantizer(codebook_size=16, codevector_dim=8)
    >>> out = quantizer(torch.randn(4, 32))
    >>> out.quantized.shape, out.indices.shape
    (torch.Size([4, 32]), torch.Size([4, 4]))

    ```
    """

    def __init__(
        self,
        codebook_size: int,
        codevector_dim: int = 8,
        decay: float = 0.99,
        commitment_weight: float = 0.25,
        eps: float = 1e-5,
        usage_decay: float = 0.99,
        reinit_temperature: float = 10.0,
        dead_code_alpha: float = 1e-3,
        raw_codes: bool = False,
        reinit: str = "paper",
        ema_init_counts: bool = False,
    ):
        super().__init__()
        if codebook_size < 1 or codevector_dim < 1:
            raise ValueError(f"codebook_size and codevector_dim must be positive, got {codebook_size}, {codevector_dim}")
        if not 0.0 <= decay < 1.0 or not 0.0 <= usage_decay < 1.0:
            raise ValueError(f"decay and usage_decay must lie in [0, 1), got {decay}, {usage_decay}")
        if reinit not in ("paper", "official"):
            raise ValueError(f"reinit must be 'paper' or 'official', got {reinit!r}")
        self.codebook_size = codebook_size
        self.codevector_dim = codevector_dim
        self.decay = decay
        self.commitment_weight = commitment_weight
        self.eps = eps
        self.usage_decay = usage_decay
        self.reinit_temperature = reinit_temperature
        self.dead_code_alpha = dead_code_alpha
        self.raw_codes, self.reinit, self.ema_init_counts = raw_codes, reinit, ema_init_counts
        codebook = initial_codebook(codebook_size, codevector_dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_count", torch.zeros(codebook_size))
        self.register_buffer("ema_sum", codebook.clone())
        # Fraction of assignments each code received, EMA over training steps (CVQ-VAE's "embed_prob").
        self.register_buffer("usage_ema", torch.zeros(codebook_size))
        # Assignments per code accumulated over training steps, for usage()/perplexity().
        self.register_buffer("code_counts", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(False))

    def extra_repr(self) -> str:
        extra = f", raw_codes=True, reinit={self.reinit!r}" if self.raw_codes or self.reinit != "paper" else ""
        return f"codebook_size={self.codebook_size}, codevector_dim={self.codevector_dim}, decay={self.decay}{extra}"

    def unit_codebook(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The codevectors as unit vectors `(K, d*)`: what assignment and distances use (raw codes are normalised)."""
        codebook = self.codebook if dtype is None else self.codebook.to(dtype)
        return F.normalize(codebook, dim=-1) if self.raw_codes else codebook

    # ------------------------------------------------------------------ helpers
    def _sub_vectors(self, z: torch.Tensor, name: str = "z") -> torch.Tensor:
        """``(..., d)`` -> ``(..., m, d*)`` unit sub-vectors, with input checks."""
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if not z.is_floating_point():
            raise TypeError(f"{name} must be a floating point tensor, got dtype {z.dtype}")
        if z.ndim == 0 or z.shape[-1] % self.codevector_dim != 0:
            raise ValueError(
                f"{name} must have shape (..., d) with d divisible by codevector_dim={self.codevector_dim}; "
                f"got shape {tuple(z.shape)}"
            )
        # A value check needs the data: done eagerly, left out of a traced/compiled graph (torch.export, compile).
        if not torch.compiler.is_compiling() and not torch.isfinite(z).all():
            raise ValueError(f"{name} contains NaN or inf values; the quantizer expects finite inputs")
        sub = z.reshape(*z.shape[:-1], z.shape[-1] // self.codevector_dim, self.codevector_dim)
        return F.normalize(sub, dim=-1)

    @torch.no_grad()
    def _assign(self, rows: torch.Tensor) -> torch.Tensor:
        """Nearest codevector (max cosine) of each unit row ``(R, d*)`` -> ``(R,)``; chunked."""
        return nearest_codes(rows, self.unit_codebook(rows.dtype))

    @torch.no_grad()
    def _assign_and_gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the nearest codevectors and the codevectors themselves `(R, d*)`."""
        if self.raw_codes:  # assign by cosine, emit the raw vector
            indices = nearest_codes(rows, self.unit_codebook(rows.dtype))
            return indices, self.codebook.to(rows.dtype).index_select(0, indices)
        codebook = self.codebook.to(rows.dtype)
        if fused_nearest_code_available(rows, codebook):
            return fused_nearest_code(rows, codebook, return_vectors=True)
        indices = nearest_codes(rows, codebook)
        # index_select, not F.embedding: the embedding kernel is ~15x slower for 8-wide rows on CUDA.
        return indices, codebook.index_select(0, indices)

    def _check_indices(self, indices: torch.Tensor) -> None:
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"indices must be an integer tensor, got dtype {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"indices must lie in [0, {self.codebook_size}); got range [{int(indices.min())}, {int(indices.max())}]"
            )

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor, return_distances: bool = False) -> QuantizerOutput:
        """Quantise ``z`` of shape `(..., d)`; see [`QuantizerOutput`]."""
        sub = self._sub_vectors(z)
        lead = sub.shape[:-1]  # (..., m)
        rows = sub.reshape(-1, self.codevector_dim)
        indices, codes = self._assign_and_gather(rows.detach())
        commitment = self.commitment_weight * F.mse_loss(rows, codes.detach()) if rows.numel() else rows.sum()
        # Straight-through: the forward value is the codevector, the gradient goes to the sub-vector.
        quantized = rows + (codes - rows).detach() if rows.requires_grad else codes
        distances = None
        if return_distances:
            # |a - c|^2 = 2 - 2 a.c for unit vectors.
            distances = (2.0 - 2.0 * rows @ self.unit_codebook(rows.dtype).t()).clamp_min(0.0)
            distances = distances.reshape(*lead, self.codebook_size)
        return QuantizerOutput(
            quantized=quantized.reshape(z.shape),
            indices=indices.reshape(lead),
            commitment_loss=commitment,
            distances=distances,
        )

    def codes_to_vectors(self, indices: torch.Tensor) -> torch.Tensor:
        """Decode indices `(..., m)` into the concatenated codevectors `(..., m * d*)`."""
        self._check_indices(indices)
        vectors = self.codebook.index_select(0, indices.reshape(-1).long()).reshape(*indices.shape, -1)
        return vectors.reshape(*indices.shape[:-1], -1)

    # ------------------------------------------------------------------ codebook life cycle
    @torch.no_grad()
    def kmeans_init_(self, samples: torch.Tensor, iters: int = 10) -> None:
        """Spherical k-means on the unit sub-vectors of ``samples`` `(..., d)`; sets the codebook and EMA state
        (``N⁰`` = 0, or the cluster sizes with ``ema_init_counts``).

        Under ``torch.distributed`` the seeds and the per-iteration sums and counts are shared, so
        every rank ends with the same codebook (ranks with no samples still take part).
        """
        rows = self._sub_vectors(samples, "samples").reshape(-1, self.codevector_dim).float()
        centers = _sample_rows_synced(rows, self.codebook_size)
        if centers is None:
            raise ValueError("kmeans_init_ needs at least one sample on some process; got none")
        centers = F.normalize(centers + 1e-4 * torch.randn_like(centers).div(math.sqrt(self.codevector_dim)), dim=-1)
        if _distributed():
            dist.broadcast(centers, src=0)  # the jitter above is rank-local
        counts = torch.zeros(self.codebook_size, device=rows.device)
        for _ in range(iters):
            assignment = nearest_codes(rows, centers)
            sums = torch.zeros_like(centers).index_add_(0, assignment, rows)
            counts = torch.bincount(assignment, minlength=self.codebook_size).to(rows.dtype)
            _all_reduce_sum_(sums)
            _all_reduce_sum_(counts)
            # Empty clusters keep their previous centre.
            centers = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), centers)
        self.codebook.copy_(centers)
        if self.ema_init_counts:  # the authors': N⁰ = the last assignment's cluster sizes, f⁰ = N⁰ e
            self.ema_count.copy_(counts)
            self.ema_sum.copy_(centers * counts[:, None])
        else:
            self.ema_sum.copy_(centers)
            self.ema_count.zero_()
        self.usage_ema.zero_()
        self.code_counts.zero_()
        self.initialized.fill_(True)

    @torch.no_grad()
    def update_ema_(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        """One EMA step (method doc §2) from inputs ``z`` `(..., d)` and their ``indices`` `(..., m)`.

        ``N_k <- γ N_k + (1-γ)|Z_k|``, ``f_k <- γ f_k + (1-γ) Σ_{z∈Z_k} z`` over unit sub-vectors, then
        ``e_k = f_k / Ñ_k`` with Laplace-smoothed counts ``Ñ_k = (N_k + ε) / (n + Kε) · n``, ``n = Σ N_k``,
        and re-normalisation (none with ``raw_codes``). Computed in fp32; counts and sums are all-reduced across processes first.
        """
        rows = self._sub_vectors(z.detach()).reshape(-1, self.codevector_dim).float()
        flat = indices.reshape(-1).long()
        if flat.shape[0] != rows.shape[0]:
            raise ValueError(
                f"indices must have one entry per sub-vector: z gives {rows.shape[0]} sub-vectors, indices {flat.shape[0]}"
            )
        self._check_indices(flat)
        counts = torch.bincount(flat, minlength=self.codebook_size).float()
        sums = torch.zeros(self.codebook_size, self.codevector_dim, device=rows.device).index_add_(0, flat, rows)
        _all_reduce_sum_(counts)
        _all_reduce_sum_(sums)
        gamma = self.decay
        self.ema_count.mul_(gamma).add_(counts, alpha=1 - gamma)
        self.ema_sum.mul_(gamma).add_(sums, alpha=1 - gamma)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (total + self.codebook_size * self.eps) * total
        means = self.ema_sum / smoothed.clamp_min(self.eps)[:, None]
        self.codebook.copy_(means if self.raw_codes else F.normalize(means, dim=-1))
        assigned = counts.sum()
        if assigned > 0:
            self.usage_ema.mul_(self.usage_decay).add_(counts / assigned, alpha=1 - self.usage_decay)
        self.code_counts.add_(counts.long())

    @torch.no_grad()
    def reinit_dead_codes_(self, samples: torch.Tensor) -> torch.Tensor:
        """CVQ-style re-initialisation of rarely used codes toward features of the current batch.

        ``α_k = exp(-p_k K τ / (1 - γ_u) - 1e-3)`` from the usage EMA ``p_k``; ``e_k <- (1-α_k) e_k + α_k a_k``
        with anchors ``a_k`` sampled from the unit sub-vectors of ``samples`` (of all processes).
        Only rarely used codes move (``α_k >= dead_code_alpha``, i.e. ``p_k K`` below about
        ``0.007 / τ · 10``); they get their EMA state reset (count 0, sum = new code). Well-used codes are
        untouched. With ``reinit="official"`` every code moves by its ``α_k`` (tiny for well-used codes) and the EMA
        state is kept, so the next EMA update recomputes every code from it. Returns the boolean mask of moved codes.
        """
        rows = self._sub_vectors(samples.detach(), "samples").reshape(-1, self.codevector_dim).float()
        anchors = _sample_rows_synced(rows, self.codebook_size)
        if anchors is None:
            return torch.zeros(self.codebook_size, dtype=torch.bool, device=self.codebook.device)
        scaled = self.usage_ema * self.codebook_size * self.reinit_temperature / (1 - self.usage_decay)
        alpha = torch.exp(-scaled - 1e-3)
        blended = (1 - alpha)[:, None] * self.codebook + alpha[:, None] * anchors
        new_codes = blended if self.raw_codes else F.normalize(blended, dim=-1)
        if self.reinit == "official":
            self.codebook.copy_(new_codes)
            return torch.ones(self.codebook_size, dtype=torch.bool, device=self.codebook.device)
        moved = alpha >= self.dead_code_alpha
        self.codebook.copy_(torch.where(moved[:, None], new_codes, self.codebook))
        self.ema_sum.copy_(torch.where(moved[:, None], self.codebook, self.ema_sum))
        self.ema_count.masked_fill_(moved, 0.0)
        return moved

    # ------------------------------------------------------------------ statistics
    def usage(self, indices: torch.Tensor | None = None) -> float:
        """Fraction of codes used: in ``indices`` if given, else over the training steps so far."""
        counts = self._counts(indices)
        return float((counts > 0).float().mean())

    def perplexity(self, indices: torch.Tensor | None = None) -> float:
        """``exp(entropy)`` of the code distribution (``K`` when uniform, 1 when one code takes all)."""
        counts = self._counts(indices).double()
        total = counts.sum()
        if total == 0:
            return 0.0
        probs = counts / total
        entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
        return float(entropy.exp())

    def _counts(self, indices: torch.Tensor | None) -> torch.Tensor:
        if indices is None:
            return self.code_counts
        self._check_indices(indices)
        return torch.bincount(indices.reshape(-1).long(), minlength=self.codebook_size)


class MultiCodebookQuantizer(nn.Module):
    """The codebooks of one path: a shared codebook for all its modalities and a specific codebook
    for every modality that has a specific part (text has none).

    Args:
        modalities (`list[str]`): modalities with a specific codebook.
        shared_codebook_size (`int`, *optional*, defaults to 1024)
        specific_codebook_size (`int`, *optional*, defaults to 256)
        shared_per_modality (`list[str]`, *optional*): the ablation of Table 7: a separate "shared" codebook for each
            of these modalities (``shared.<modality>``) instead of one for the path.
        enabled (`bool`, *optional*, defaults to `True`): `False` is the no-codebook ablation: no codebook at all.
        specific_codevector_dims (`dict[str, int]`, *optional*): the codevector width of a modality's specific
            codebook where it differs from ``codevector_dim`` (per-modality widths of the authors' layout).
        **kwargs: forwarded to every [`CompositionalQuantizer`].
    """

    def __init__(self, modalities: list[str], shared_codebook_size: int = 1024, specific_codebook_size: int = 256,
                 shared_per_modality: list[str] | None = None, enabled: bool = True,
                 specific_codevector_dims: dict[str, int] | None = None, **kwargs):
        super().__init__()
        self.enabled = enabled
        if not enabled:
            self.shared, self.specific = None, nn.ModuleDict()
            return
        if shared_per_modality:
            self.shared = nn.ModuleDict({m: CompositionalQuantizer(shared_codebook_size, **kwargs) for m in shared_per_modality})
        else:
            self.shared = CompositionalQuantizer(shared_codebook_size, **kwargs)
        widths = specific_codevector_dims or {}
        self.specific = nn.ModuleDict({
            m: CompositionalQuantizer(specific_codebook_size, **{**kwargs, "codevector_dim": widths.get(m, kwargs.get("codevector_dim", 8))})
            for m in modalities
        })

    @property
    def per_modality_shared(self) -> bool:
        return isinstance(self.shared, nn.ModuleDict)

    def shared_name(self, modality: str) -> str:
        """Name of the codebook quantising the shared part of ``modality`` (``"shared"`` or ``"shared.<m>"``)."""
        return f"shared.{modality}" if self.per_modality_shared else "shared"

    def shared_for(self, modality: str) -> CompositionalQuantizer:
        if not self.enabled:
            raise KeyError("This path has no codebooks (use_codebooks: false)")
        if not self.per_modality_shared:
            return self.shared
        if modality not in self.shared:
            raise KeyError(f"No shared codebook for modality {modality!r} in this path; it has {sorted(self.shared)}")
        return self.shared[modality]

    def specific_for(self, modality: str) -> CompositionalQuantizer:
        if modality not in self.specific:
            raise KeyError(
                f"No specific codebook for modality {modality!r} in this path; it has {sorted(self.specific)}"
            )
        return self.specific[modality]

    def codebooks(self) -> dict[str, CompositionalQuantizer]:
        """All codebooks by name (``"shared"`` or ``"shared.<modality>"``, ``"specific.<modality>"``), for monitoring."""
        if not self.enabled:
            return {}
        books = {f"shared.{m}": q for m, q in self.shared.items()} if self.per_modality_shared else {"shared": self.shared}
        books.update({f"specific.{m}": q for m, q in self.specific.items()})
        return books


def build_path_quantizers(config, target: str) -> MultiCodebookQuantizer:
    """The codebooks of path ``target`` of a `CodeBindConfig` (freshly initialised).

    Sizes and ``codevector_dim`` (``specific_codevector_dims`` per modality) are the model's ``quantizer`` settings
    updated with the path's ``quantizer`` overrides; the path's ablation switches (``use_codebooks``, ``use_decoupling``, ``shared_codebook``) decide which
    codebooks exist, and its variants (``quantizer_output``, ``dead_codes``, ``ema_init``) how they behave.
    """
    path = config.paths[target]
    settings = {**config.quantizer, **(path.get("quantizer") or {})}
    variants = path.get("variants") or {}
    kwargs = {k: v for k, v in settings.items()
              if k not in ("shared_codebook_size", "specific_codebook_size", "specific_codevector_dims")}
    kwargs.update(raw_codes=variants.get("quantizer_output") == "official", reinit=variants.get("dead_codes", "paper"),
                  ema_init_counts=variants.get("ema_init") == "official")
    modalities = config.path_modalities(target)
    with_specific = [m for m in modalities if config.path_has_specific(target, m)]
    per_modality = modalities if path.get("shared_codebook", "path") == "modality" else None
    return MultiCodebookQuantizer(with_specific, settings["shared_codebook_size"], settings["specific_codebook_size"],
                                  shared_per_modality=per_modality, enabled=path.get("use_codebooks", True),
                                  specific_codevector_dims=settings.get("specific_codevector_dims"), **kwargs)


__all__ = ["QuantizerOutput", "CompositionalQuantizer", "MultiCodebookQuantizer", "build_path_quantizers", "nearest_codes",
           "initial_codebook"]
