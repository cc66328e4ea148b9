"""CodeBind model: modality towers, shared/specific heads, per-path codebooks, optional decoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .adapters.bond_io import apply_bonds
from .configuration_codebind import CodeBindConfig
from .modules.decoder import ReconstructionDecoder
from .encoders import build_tower
from .losses.objective import CodebookRecord, compute_path_loss
from .modules.heads import LogitScale, ProjectionHead
from .modalities import INPUT_KEYS, VIDEO_INPUT_KEY, canonical_modality
from .adapters.paths import ModalityPathMixin
from .adapters.state import AdapterState
from .quantization.quantizer import CompositionalQuantizer, MultiCodebookQuantizer, QuantizerOutput
from .validation import check_attention_mask, check_batch, check_batch_sizes, check_token_ids

PARTS = ("shared", "specific", "concat")


@dataclass
class CodeBindOutput(ModelOutput):
    """Output of [`CodeBindModel.forward`]; dicts are keyed by modality.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): weighted path loss, with `return_loss=True`.
        loss_breakdown (`dict[str, torch.FloatTensor]`, *optional*): unweighted losses by name.
        shared_embeds (`dict[str, torch.FloatTensor]`): unit shared embeddings `(batch, embed_dim)`.
        specific_embeds (`dict[str, torch.FloatTensor]`): unit specific embeddings `(batch, specific_dim)`.
        embeds (`dict[str, torch.FloatTensor]`): unit shared⊕specific embeddings (shared for text).
        codes (`dict[str, torch.LongTensor]`): shared-codebook indices `(batch, embed_dim // codevector_dim)`.
    """

    loss: torch.FloatTensor | None = None
    loss_breakdown: dict | None = None
    shared_embeds: dict | None = None
    specific_embeds: dict | None = None
    embeds: dict | None = None
    codes: dict | None = None


@dataclass
class ModalityEncoding:
    """Everything the losses need about one modality of a batch ([`CodeBindModel.encode_tower_outputs`])."""

    shared: torch.Tensor  # unit pooled shared embedding (quantised if a path is used)
    specific: torch.Tensor | None
    shared_q: QuantizerOutput | None = None  # pooled shared quantisation, with distances
    specific_q: QuantizerOutput | None = None
    shared_tokens: torch.Tensor | None = None  # unit quantised tokens, for reconstruction
    specific_tokens: torch.Tensor | None = None
    commitment: torch.Tensor | None = None


class CodeBindPreTrainedModel(PreTrainedModel):
    config_class = CodeBindConfig
    base_model_prefix = "codebind"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ModalityTower"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, CompositionalQuantizer):
            module.codebook.copy_(F.normalize(torch.randn_like(module.codebook), dim=-1))
            module.ema_sum.copy_(module.codebook)
            module.ema_count.zero_()
            module.usage_ema.zero_()
            module.code_counts.zero_()
            module.initialized.fill_(False)


class CodeBindModel(ModalityPathMixin, CodeBindPreTrainedModel):
    """CodeBind: towers per modality, a shared head per modality, and per path a shared codebook plus a
    specific head and codebook for each non-text modality.

    Example:

    ```python
    >>> import torch
    >>> from codebind_hf import CodeBindConfig, CodeBindModel
    >>> vit = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    ...        "intermediate_size": 64, "image_size": 16, "patch_size": 8}
    >>> config = CodeBindConfig(
    ...     modalities={"vision": {"family": "hf", "backbone": vit},
    ...                 "depth": {"family": "hf", "backbone": {**vit, "num_channels": 1}}},
    ...     bridges=["vision"], paths={"depth": {"bridges": ["vision"]}}, embed_dim=32, specific_dim=32)
    >>> model = CodeBindModel(config).eval()
    >>> model.get_features("depth", torch.randn(2, 1, 16, 16)).shape
    torch.Size([2, 32])
    >>> model.get_features("depth", torch.randn(2, 1, 16, 16), part="concat").shape
    torch.Size([2, 64])

    ```
    """

    def __init__(self, config: CodeBindConfig):
        super().__init__(config)
        self.adapter_state = AdapterState()  # LoRA, paths, bonds, projectors: outside the module tree
        self.towers = nn.ModuleDict({m: build_tower(m, cfg) for m, cfg in config.modalities.items()})
        self.shared_heads = nn.ModuleDict()
        self.logit_scales = nn.ModuleDict()
        for modality, cfg in config.modalities.items():
            self.shared_heads[modality] = ProjectionHead(
                self.towers[modality].hidden_size,
                config.embed_dim,
                layer_norm_eps=cfg.get("head_layer_norm_eps", 1e-6),
                bias=cfg.get("head_bias", False),
                dropout=cfg.get("head_dropout", 0.0),
            )
            self.logit_scales[modality] = LogitScale(cfg.get("logit_scale", 1.0), cfg.get("logit_scale_learnable", False))
        quantizer = config.quantizer_config
        self.quantizers = nn.ModuleDict()
        self.specific_heads = nn.ModuleDict()
        for target in config.paths:
            with_specific = [m for m in config.path_modalities(target) if config.has_specific(m)]
            self.quantizers[target] = MultiCodebookQuantizer(
                with_specific, quantizer.shared_codebook_size, quantizer.specific_codebook_size, **quantizer.quantizer_kwargs()
            )
            self.specific_heads[target] = nn.ModuleDict(
                {m: ProjectionHead(self.towers[m].hidden_size, config.specific_dim) for m in with_specific}
            )
        self.decoder = self._build_decoder() if config.decoder_config.enabled and config.paths else None
        self.post_init()

    def _build_decoder(self) -> ReconstructionDecoder | None:
        targets = {}
        for modality, tower in self.towers.items():
            if self.config.has_specific(modality) and tower.input_shape is not None and tower.num_patches:
                targets[modality] = (tower.num_patches, tower.patch_dim)
        if not targets:
            return None
        in_dim = self.config.embed_dim + self.config.specific_dim
        return ReconstructionDecoder(in_dim, self.config.decoder_config, targets)

    # ------------------------------------------------------------------ input handling
    def _check_modality(self, modality: str) -> str:
        modality = canonical_modality(modality)
        if modality not in self.towers:
            raise ValueError(f"This model has no tower for modality {modality!r}; it has {sorted(self.towers)}")
        return modality

    def _check_input(self, modality: str, inputs: torch.Tensor) -> None:
        tower = self.towers[modality]
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"{modality} inputs must be a torch.Tensor (use CodeBindProcessor), got {type(inputs).__name__}")
        check_batch(modality, inputs)
        if modality == "text":
            if inputs.is_floating_point():
                raise TypeError(f"text inputs must be integer token ids, got dtype {inputs.dtype}")
            if inputs.ndim >= 2:  # before the embedding, whose own error would not say what was wrong
                check_token_ids(inputs.reshape(-1, inputs.shape[-1]), *tower.token_limits())
        else:
            if not inputs.is_floating_point():
                raise TypeError(f"{modality} inputs must be a floating point tensor, got dtype {inputs.dtype}")
            if not torch.isfinite(inputs).all():
                raise ValueError(f"{modality} inputs contain NaN or inf values")
        if not tower.accepts_ndim(inputs.ndim):
            allowed = [n for n in range(1, 8) if tower.accepts_ndim(n)]
            raise ValueError(
                f"{modality} inputs must have one of {allowed} dims ((batch, ...) or (batch, clips, ...)); "
                f"got shape {tuple(inputs.shape)}"
            )

    def resolve_path(self, modality: str, path: str | None = None) -> str:
        """The path whose codebooks quantise ``modality``: the given one, the modality's own, or the only one."""
        modality = canonical_modality(modality)
        if path is not None:
            path = canonical_modality(path)
            if path not in self.quantizers:
                raise ValueError(f"No codebooks for path {path!r}; loaded paths: {sorted(self.quantizers)}")
            if modality not in self.config.path_modalities(path):
                raise ValueError(f"Path {path!r} does not cover modality {modality!r}; it covers {self.config.path_modalities(path)}")
            return path
        if modality in self.quantizers:
            return modality
        candidates = [p for p in self.quantizers if modality in self.config.path_modalities(p)]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise ValueError(
                f"No path has codebooks for modality {modality!r} (paths: {sorted(self.quantizers)}); "
                "use quantize=False for the unquantised embedding"
            )
        raise ValueError(f"Modality {modality!r} is in several paths {sorted(candidates)}; pass path=... to choose")

    # ------------------------------------------------------------------ encoding
    # `tower_outputs` + `encode_tower_outputs` are the model's one encoder path: `forward`, `get_features` and
    # training (live towers, or pooled outputs read back from the frozen-feature cache) all go through them.
    def tower_outputs(
        self, modality: str, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None, with_tokens: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the tower of ``modality`` on inputs without a clips axis.

        Args:
            modality (`str`): a canonical modality name of this model.
            inputs (`torch.Tensor`): the processor's tensor `(batch, ...)`.
            attention_mask (`torch.Tensor`, *optional*): passed to the tower as given (only text towers take one).
            with_tokens (`bool`, *optional*, defaults to `False`): also return the patch tokens (prefix tokens
                dropped), which the reconstruction decoder needs.

        Returns:
            `tuple`: the pooled token `(batch, hidden)` and the patch tokens `(batch, patches, hidden)` or `None`.
        """
        tower = self.towers[modality]
        out = tower(inputs, attention_mask=attention_mask)
        hidden = out.last_hidden_state
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), out.pooled_index]
        return pooled, (hidden[:, tower.num_prefix_tokens :] if with_tokens else None)

    def encode_tower_outputs(
        self,
        modality: str,
        path: str | None,
        pooled: torch.Tensor,
        patch_tokens: torch.Tensor | None = None,
        with_specific: bool | None = None,
        quantize: bool = True,
        return_distances: bool = False,
    ) -> tuple[ModalityEncoding, list[CodebookRecord]]:
        """Heads -> codebooks of ``path`` for tower outputs (see [`~CodeBindModel.tower_outputs`]).

        Args:
            modality (`str`): the modality the outputs come from.
            path (`str`, *optional*): whose specific head and codebooks to use; may be `None` only when neither
                quantising nor using the specific part.
            pooled (`torch.Tensor` of shape `(batch, hidden)`): pooled tower outputs.
            patch_tokens (`torch.Tensor` of shape `(batch, patches, hidden)`, *optional*): tokens to quantise for
                reconstruction (needs ``quantize`` and the specific part).
            with_specific (`bool`, *optional*): use the specific head (default: whether ``modality`` has one).
            quantize (`bool`, *optional*, defaults to `True`): `False` gives the normalised head outputs only.
            return_distances (`bool`, *optional*, defaults to `False`): keep the pooled quantisations' code
                distances (the path loss needs them).

        Returns:
            `tuple`: the [`ModalityEncoding`] and one `CodebookRecord` per quantisation (detached head outputs and
            their codes, for the trainer's codebook life cycle; empty without ``quantize``).
        """
        if with_specific is None:
            with_specific = self.config.has_specific(modality)
        if patch_tokens is not None and not (quantize and with_specific):
            raise ValueError(f"{modality}: patch tokens are quantised for reconstruction, which needs quantize and a specific part")
        shared = self.shared_heads[modality](pooled)
        specific = self.specific_heads[path][modality](pooled) if with_specific else None
        if not quantize:
            return ModalityEncoding(F.normalize(shared, dim=-1), None if specific is None else F.normalize(specific, dim=-1)), []
        books = self.quantizers[path]
        shared_q = books.shared(shared, return_distances=return_distances)
        encoding = ModalityEncoding(F.normalize(shared_q.quantized, dim=-1), None, shared_q=shared_q)
        commitment = [shared_q.commitment_loss]
        records = [CodebookRecord("shared", modality, shared.detach(), shared_q.indices)]
        if specific is not None:
            specific_q = books.specific_for(modality)(specific, return_distances=return_distances)
            encoding.specific, encoding.specific_q = F.normalize(specific_q.quantized, dim=-1), specific_q
            commitment.append(specific_q.commitment_loss)
            records.append(CodebookRecord(f"specific.{modality}", modality, specific.detach(), specific_q.indices))
        if patch_tokens is not None:
            shared_z = self.shared_heads[modality](patch_tokens)
            specific_z = self.specific_heads[path][modality](patch_tokens)
            shared_tok = books.shared(shared_z)
            specific_tok = books.specific_for(modality)(specific_z)
            encoding.shared_tokens = F.normalize(shared_tok.quantized, dim=-1)
            encoding.specific_tokens = F.normalize(specific_tok.quantized, dim=-1)
            commitment += [shared_tok.commitment_loss, specific_tok.commitment_loss]
            for name, z, q in (("shared", shared_z, shared_tok), (f"specific.{modality}", specific_z, specific_tok)):
                records.append(CodebookRecord(name, modality, z.detach().flatten(0, 1), q.indices.flatten(0, 1)))
        encoding.commitment = torch.stack(commitment).sum()
        return encoding, records

    def _encode(
        self,
        modality: str,
        inputs: torch.Tensor,
        attention_mask: torch.Tensor | None,
        path: str | None,
        quantize: bool,
        with_specific: bool,
        with_tokens: bool = False,
        return_distances: bool = False,
    ) -> ModalityEncoding:
        """Checked inputs of one modality -> encoding; a clips axis is folded into the batch (`_average_clips`)."""
        if self.towers[modality].split_clips(inputs):
            inputs = inputs.flatten(0, 1)
        pooled, patch_tokens = self.tower_outputs(modality, inputs, attention_mask, with_tokens)
        encoding, _ = self.encode_tower_outputs(modality, path, pooled, patch_tokens, with_specific, quantize, return_distances)
        return encoding

    @staticmethod
    def _average_clips(x: torch.Tensor, batch: int) -> torch.Tensor:
        """Unit mean over each sample's clip embeddings `(batch * clips, d)` -> `(batch, d)`; `(batch, d)` passes."""
        if x.shape[0] == batch:
            return x
        return F.normalize(x.reshape(batch, -1, x.shape[-1]).mean(1), dim=-1)

    def get_features(
        self,
        modality: str,
        inputs,
        part: str = "shared",
        quantize: bool = True,
        path: str | None = None,
        attention_mask: torch.Tensor | None = None,
        bonds: dict[str, float] | None = None,
        expert_features=None,
    ) -> torch.Tensor:
        """Unit embeddings of one modality.

        Args:
            modality (`str`): ``"text"``, ``"vision"`` (or ``"image"``/``"video"``), ``"audio"``, ...
            inputs (`torch.Tensor` or `dict`): the processor's tensor for that modality, or its whole output.
                A clips axis `(batch, clips, ...)` is averaged over clips (audio, video).
            part (`str`, *optional*, defaults to `"shared"`): ``"shared"`` for cross-modal work, ``"specific"``
                or ``"concat"`` (shared⊕specific) for fine-grained intra-modal work.
            quantize (`bool`, *optional*, defaults to `True`): ``False`` returns the normalised head output before
                the codebooks (for a converted ImageBind model: ImageBind's embedding direction).
            path (`str`, *optional*): which path's codebooks/specific head to use (default: the modality's own path,
                or the only path containing it).
            bonds (`dict[str, float]`, *optional*): attached expert-space bonds to apply, name -> factor
                (`codebind_hf.adapters.bond_io.apply_bonds`); a combination bond with factor 0 returns the unbonded embedding.
            expert_features (`torch.Tensor` or `dict[str, torch.Tensor]`, *optional*): the expert embeddings of the
                same inputs, for combination bonds without a registered expert encoder.

        Returns:
            `torch.FloatTensor` of shape `(batch, embed_dim)` (shared), `(batch, specific_dim)` (specific) or
            `(batch, embed_dim + specific_dim)` (concat).
        """
        modality = self._check_modality(modality)
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        given = inputs  # what a bond's expert encoder sees
        if isinstance(inputs, dict) or hasattr(inputs, "keys"):
            inputs, attention_mask = self._pick_input(modality, inputs, attention_mask)
        self._check_input(modality, inputs)
        if attention_mask is not None:
            if modality != "text":
                raise ValueError(f"attention_mask is for text inputs; {modality} inputs take none")
            check_attention_mask(attention_mask, inputs)
        need_specific = part != "shared"
        if need_specific and not self.config.has_specific(modality):
            raise ValueError(f"Modality {modality!r} has no specific part; use part='shared'")
        path = self.resolve_path(modality, path) if (need_specific or quantize) else None
        encoding = self._encode(modality, inputs, attention_mask, path, quantize, need_specific)
        if part == "shared":
            out = encoding.shared
        elif part == "specific":
            out = encoding.specific
        else:
            out = F.normalize(torch.cat([encoding.shared, encoding.specific], dim=-1), dim=-1)
        out = self._average_clips(out, inputs.shape[0])
        if bonds:
            out = apply_bonds(self, modality, out, bonds, expert_features=expert_features, inputs=given, part=part)
        return out

    def _pick_input(self, modality: str, batch, attention_mask):
        keys = [INPUT_KEYS[modality]] + ([VIDEO_INPUT_KEY] if modality == "vision" else [])
        present = [k for k in keys if k in batch and batch[k] is not None]
        if len(present) != 1:
            raise ValueError(
                f"Expected exactly one of {keys} for modality {modality!r} in the inputs; got keys {sorted(batch.keys())}"
            )
        if modality == "text" and attention_mask is None:
            attention_mask = batch.get("attention_mask")
        return batch[present[0]], attention_mask

    def get_text_features(self, input_ids, attention_mask=None, **kwargs) -> torch.Tensor:
        return self.get_features("text", input_ids, attention_mask=attention_mask, **kwargs)

    def get_image_features(self, pixel_values, **kwargs) -> torch.Tensor:
        return self.get_features("vision", pixel_values, **kwargs)

    def get_audio_features(self, audio_values, **kwargs) -> torch.Tensor:
        return self.get_features("audio", audio_values, **kwargs)

    # ------------------------------------------------------------------ forward
    def forward(self, return_loss: bool = False, path: str | None = None, attention_mask=None, **inputs) -> CodeBindOutput:
        """Embed every modality present in ``inputs`` (processor keys); with ``return_loss`` also the path loss.

        Args:
            return_loss (`bool`): compute the CodeBind loss of ``path`` (default: the single path whose target
                is in the inputs).
            **inputs: ``input_ids``, ``pixel_values``, ``pixel_values_videos``, ``audio_values``, ...
        """
        present = self._present_modalities(inputs)
        if attention_mask is not None:  # never dropped silently
            if "text" not in present:
                raise ValueError(f"attention_mask was given without input_ids (inputs: {sorted(present)}); it masks text tokens")
            check_attention_mask(attention_mask, present["text"])
        if return_loss:
            check_batch_sizes({m: t.shape[0] for m, t in present.items()},
                              "return_loss pairs row i of every modality, so every modality needs the same batch size")
            path = self._loss_path(present, path)
        encodings: dict[str, ModalityEncoding] = {}
        for modality, tensor in present.items():
            self._check_input(modality, tensor)
            if return_loss and self.towers[modality].split_clips(tensor):
                raise ValueError(f"{modality}: training inputs must not have a clips axis; got shape {tuple(tensor.shape)}")
            mask = attention_mask if modality == "text" else None
            use_path = path if return_loss else self._default_path(modality)
            with_specific = use_path is not None and self.config.has_specific(modality)
            with_tokens = return_loss and with_specific and self.decoder is not None and modality in self.decoder.heads
            encodings[modality] = self._encode(
                modality, tensor, mask, use_path, use_path is not None, with_specific, with_tokens, return_loss
            )
        output = CodeBindOutput(shared_embeds={}, specific_embeds={}, embeds={}, codes={})
        for modality, enc in encodings.items():
            batch = present[modality].shape[0]
            shared = self._average_clips(enc.shared, batch)
            output.shared_embeds[modality] = shared
            output.embeds[modality] = shared
            if enc.specific is not None:
                specific = self._average_clips(enc.specific, batch)
                output.specific_embeds[modality] = specific
                output.embeds[modality] = F.normalize(torch.cat([shared, specific], -1), dim=-1)
            if enc.shared_q is not None and enc.shared_q.indices.shape[0] == batch:
                output.codes[modality] = enc.shared_q.indices
        if return_loss:
            output.loss, output.loss_breakdown = compute_path_loss(self, path, encodings, present)
        return output

    def _present_modalities(self, inputs: dict) -> dict[str, torch.Tensor]:
        by_key = {key: m for m, key in INPUT_KEYS.items()}
        by_key[VIDEO_INPUT_KEY] = "vision"
        present = {}
        for key, value in inputs.items():
            if value is None:
                continue
            if key not in by_key:
                raise TypeError(f"Unexpected input {key!r}; CodeBindModel takes {sorted(by_key)} and attention_mask")
            modality = self._check_modality(by_key[key])
            if modality in present:
                raise ValueError(f"Got both images and videos for {modality!r}; pass one per call")
            present[modality] = value
        if not present:
            raise ValueError(f"No modality inputs given; expected some of {sorted(by_key)}")
        return present

    def _default_path(self, modality: str) -> str | None:
        try:
            return self.resolve_path(modality)
        except ValueError:
            return None

    def _loss_path(self, present: dict, path: str | None) -> str:
        if path is not None:
            return self.resolve_path(path, path)
        targets = [m for m in present if m in self.quantizers]
        if len(targets) != 1:
            raise ValueError(
                f"return_loss needs one path: inputs contain path targets {targets}; pass path=... (paths: {sorted(self.quantizers)})"
            )
        return targets[0]

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, save_directory, include_decoder: bool = False, **kwargs):
        """Save as ``config.json`` + safetensors. The training-only decoder is left out unless ``include_decoder``.

        Atomic (`codebind_hf.adapters.model_files.save_model_folder`): the files are written beside
        ``save_directory`` and switched in as one set, with the weights' sha256 in ``model_checksums.json``; other
        files already in the folder are kept. ``push_to_hub=True`` uploads the saved model afterwards.
        """
        from .adapters.model_files import save_model_folder

        push = {k: kwargs.pop(k) for k in ("repo_id", "commit_message", "private", "token", "create_pr") if k in kwargs}
        if kwargs.pop("push_to_hub", False):
            repo_id = push.pop("repo_id", Path(save_directory).name)
            self.save_pretrained(save_directory, include_decoder=include_decoder, **kwargs)
            return self.push_to_hub(repo_id, include_decoder=include_decoder, **push)
        is_main = kwargs.pop("is_main_process", True)
        return save_model_folder(save_directory, lambda staging: self._save_pretrained_files(staging, include_decoder, **kwargs),
                                 is_main_process=is_main)

    def _save_pretrained_files(self, save_directory, include_decoder: bool, **kwargs):
        if include_decoder or self.decoder is None:
            return super().save_pretrained(save_directory, **kwargs)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("decoder.")}
        decoder_settings = dict(self.config.decoder)
        self.config.decoder = {**decoder_settings, "enabled": False}
        try:
            return super().save_pretrained(save_directory, state_dict=state, **kwargs)
        finally:
            self.config.decoder = decoder_settings

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load strictly: any missing, unexpected or mismatched weight is an error listing the keys. The weights are
        first checked against ``model_checksums.json`` (``verify_checksums=False`` skips that)."""
        from .adapters.model_files import check_model_source, explain_load_failure

        if kwargs.pop("verify_checksums", True):  # heal an interrupted save, check model_checksums.json
            check_model_source(pretrained_model_name_or_path, **kwargs)
        want_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        except Exception as err:  # say which file or tensor (transformers logs it only); else re-raised as it is
            better = explain_load_failure(pretrained_model_name_or_path, cls, err)
            if better is None:
                raise
            raise better from err
        problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if problems:
            raise ValueError(f"Checkpoint {pretrained_model_name_or_path!s} does not match the model: {problems}")
        return (model, info) if want_info else model


__all__ = ["CodeBindPreTrainedModel", "CodeBindModel", "CodeBindOutput", "ModalityEncoding", "PARTS"]
