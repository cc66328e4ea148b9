"""Modality towers by family. ``build_tower`` dispatches on the tower config's ``family``."""

from __future__ import annotations

from .base import ModalityTower, TowerOutput


def build_tower(modality: str, config: dict, typed_config=None) -> ModalityTower:
    """Build the tower of ``modality`` from its config dict (``family``: ``"hf"``, ``"imagebind"`` or ``"vitlens"``).

    ``typed_config`` (*optional*): the tower's typed view (`CodeBindConfig.tower_config`); an HF backbone is built
    from that very object, so the model's config and the backbone's stay one.
    """
    family = config.get("family")
    if family == "hf":
        from .hf_backbone import HFBackboneTower

        return HFBackboneTower(modality, config, backbone_config=typed_config)
    if family == "imagebind":
        from .imagebind import build_imagebind_tower

        return build_imagebind_tower(modality, config)
    if family == "vitlens":
        from .vitlens import build_vitlens_tower

        return build_vitlens_tower(modality, config)
    raise ValueError(f"Unknown tower family {family!r} for modality {modality!r}; expected 'hf', 'imagebind' or 'vitlens'")


__all__ = ["ModalityTower", "TowerOutput", "build_tower"]
