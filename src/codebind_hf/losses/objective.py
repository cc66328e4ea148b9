"""The CodeBind objective of one bridge-target path, assembled from the loss functions in `losses.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .functional import (
    codevector_contrastive,
    codevector_uniformity,
    cross_modal_code_matching,
    info_nce,
    orthogonality,
    reconstruction,
    uniformity,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..modeling_codebind import CodeBindModel, ModalityEncoding


def _mean(values: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.stack(values).mean() if values else like.new_zeros(())


def alignment_pairs(target: str, bridges: list[str]) -> list[tuple[str, str]]:
    """Pairs aligned by InfoNCE and code matching: target with every bridge, plus image-text in the bridge."""
    pairs = [(target, bridge) for bridge in bridges]
    if "vision" in bridges and "text" in bridges:
        pairs.append(("vision", "text"))
    return pairs


def compute_path_loss(
    model: CodeBindModel,
    path: str,
    encodings: dict[str, ModalityEncoding],
    inputs: dict[str, torch.Tensor],
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted CodeBind loss of ``path`` and the unweighted losses by name (method doc §3).

    ``align``: symmetric InfoNCE of quantised shared CLS embeddings for each pair; ``cm``: cross-modal code
    matching per pair (mean); ``vq``: commitment, summed over codebooks; ``ctr``: codevector contrastive on
    every codebook's pooled distances (mean); ``cuni``: codevector uniformity per codebook (mean; EMA codebooks
    are buffers, so this term is monitored but carries no gradient, as in the authors' code); ``orth`` and
    ``uni``: over modalities with a specific part (mean); ``recon``: decoder MSE to the input patches (mean).
    ``targets`` `(N, N)`, *optional*: graded labels of the target-bridge pairs (`info_nce`'s soft targets), used by
    the target-bridge ``align`` terms; the image-text term inside the bridge keeps hard labels.
    """
    config = model.config.path_config(path)
    if path not in encodings:
        raise ValueError(f"Path {path!r} needs inputs of its target modality {path!r}; got {sorted(encodings)}")
    bridges = [b for b in config.bridges if b in encodings]
    if not bridges:
        raise ValueError(f"Path {path!r} needs inputs of at least one bridge {config.bridges}; got {sorted(encodings)}")
    ref = encodings[path].shared
    pairs = alignment_pairs(path, bridges)
    losses: dict[str, torch.Tensor] = {}
    losses["align"] = torch.stack(
        [info_nce(encodings[a].shared, encodings[b].shared, config.temperature, targets if a == path else None) for a, b in pairs]
    ).sum()
    losses["cm"] = _mean(
        [
            cross_modal_code_matching(
                encodings[a].shared_q.distances, encodings[b].shared_q.distances, config.code_matching_variant
            )
            for a, b in pairs
        ],
        ref,
    )
    used = [encodings[m] for m in (*bridges, path)]
    losses["vq"] = torch.stack([enc.commitment for enc in used]).sum()
    quantized = [q for enc in used for q in (enc.shared_q, enc.specific_q) if q is not None]
    losses["ctr"] = _mean([codevector_contrastive(q.distances) for q in quantized], ref)
    books = model.quantizers[path]
    codebooks = [books.shared.codebook] + [books.specific[m].codebook for m in (*bridges, path) if m in books.specific]
    losses["cuni"] = _mean([codevector_uniformity(c) for c in codebooks], ref)
    with_specific = [m for m in (*bridges, path) if encodings[m].specific is not None]
    if config.orthogonality_variant == "paper":
        orth = [orthogonality(encodings[m].shared, encodings[m].specific) for m in with_specific]
    else:
        orth = [_official_orthogonality(encodings[m]) for m in with_specific]
    losses["orth"] = _mean(orth, ref)
    losses["uni"] = _mean([uniformity(encodings[m].specific) for m in with_specific], ref)
    recon = []
    for m in with_specific:
        enc = encodings[m]
        if enc.shared_tokens is None:
            continue
        cls = torch.cat([enc.shared, enc.specific], dim=-1)
        pred = model.decoder(m, torch.cat([enc.shared_tokens, enc.specific_tokens], dim=-1), cls)
        recon.append(reconstruction(pred, model.towers[m].patchify(inputs[m]).to(pred.dtype)))
    losses["recon"] = _mean(recon, ref)
    weights = config.loss_weights
    total = sum(weights.get(name, 0.0) * value for name, value in losses.items())
    return total, losses


def _official_orthogonality(enc: ModalityEncoding) -> torch.Tensor:
    """Token-level form when tokens are available (CLS + patches), else on the pooled token alone."""
    shared, specific = enc.shared[:, None], enc.specific[:, None]
    if enc.shared_tokens is not None:
        shared = torch.cat([shared, enc.shared_tokens], dim=1)
        specific = torch.cat([specific, enc.specific_tokens], dim=1)
    return orthogonality(shared, specific, variant="official")


__all__ = ["compute_path_loss", "alignment_pairs"]
