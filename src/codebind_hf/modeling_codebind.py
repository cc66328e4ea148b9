"""CodeBind model: modality towers, shared/specific heads, per-path codebooks, optional decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .adapters.bond_io import apply_bonds
from .configuration_codebind import CodeBindConfig
from .modules.decoder import ReconstructionDecoder
from .losses.objective import CodebookRecord, compute_path_loss
from .modeling_codebind_base import CodeBindPreTrainedModel
from .modeling_codebind_outputs import CodeBindOutput, ModalityEncoding, average_clips
from .modules.heads import ProjectionHead
from .modalities import canonical_modality, is_known
from .modeling_codebind_modalities import ModalitySetMixin
from .adapters.path_owned import path_owned_names
from .adapters.paths import ModalityPathMixin
from .adapters.state import AdapterState
from .quantization.quantizer import build_path_quantizers
from .validation import check_attention_mask, check_batch, check_batch_sizes, check_token_ids

PARTS = ("shared", "specific", "concat")


class CodeBindModel(ModalitySetMixin, ModalityPathMixin, CodeBindPreTrainedModel):
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
        config = self.config  # attn_implementation resolved
        self.towers = nn.ModuleDict()
        for modality in config.modalities:  # every tower first, then the heads (the order the weights are drawn in)
            self.towers[modality] = self._build_modality_tower(modality)
        self.shared_heads = nn.ModuleDict()
        self.logit_scales = nn.ModuleDict()
        for modality in config.modalities:
            self.shared_heads[modality], self.logit_scales[modality] = self._modality_heads(modality, self.towers[modality])
        self.quantizers = nn.ModuleDict()
        self.specific_heads = nn.ModuleDict()
        for target in config.paths:
            with_specific = [m for m in config.path_modalities(target) if config.path_has_specific(target, m)]
            self.quantizers[target] = build_path_quantizers(config, target)
            self.specific_heads[target] = nn.ModuleDict(
                {m: ProjectionHead(self.towers[m].hidden_size, config.specific_width(m, target)) for m in with_specific}
            )
        self.decoder = self._build_decoder() if config.decoder_config.enabled and config.paths else None
        # Base tensors a path carries its own copy of (`codebind_hf.adapters.path_owned`); after the base modules,
        # whose initialised values the copies start from.
        self.path_owned = nn.ModuleDict()
        for target in config.paths:
            if path_owned_names(self, target):
                self.sync_path_owned(target)
        self.post_init()

    def _build_decoder(self) -> ReconstructionDecoder | None:
        targets = {}
        for modality, tower in self.towers.items():
            if self.config.has_specific(modality) and tower.input_shape is not None and tower.num_patches:
                targets[modality] = (tower.num_patches, tower.patch_dim)
        if not targets:
            return None
        config = self.config
        widths = {f"{p}.{m}" if len(config.paths) > 1 else m: config.specific_width(m, p)
                  for p in config.paths for m in config.path_modalities(p) if m in targets and config.path_has_specific(p, m)}
        widths = widths or {m: config.specific_width(m) for m in targets}
        if len(set(widths.values())) > 1:  # one decoder trunk reads every modality's shared ⊕ specific tokens
            raise ValueError(
                f"the reconstruction decoder needs one specific width for the modalities it reconstructs; got {widths} "
                "(set decoder.enabled false or the paths' use_reconstruction false, or give them equal specific_dims)"
            )
        in_dim = self.config.embed_dim + next(iter(widths.values()))
        return ReconstructionDecoder(in_dim, self.config.decoder_config, targets)

    # ------------------------------------------------------------------ input handling
    def _check_modality(self, modality: str) -> str:
        modality = canonical_modality(modality)
        if modality not in self.towers:
            unknown = "" if is_known(modality) else f"Unknown modality {modality!r} (add a new one with add_modality): "
            raise ValueError(f"{unknown}This model has no tower for modality {modality!r}; it has {sorted(self.towers)}")
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
            # A value check needs the data: done eagerly, left out of a traced/compiled graph.
            if not torch.compiler.is_compiling() and not torch.isfinite(inputs).all():
                raise ValueError(f"{modality} inputs contain NaN or inf values")
            self._check_sample_shape(modality, inputs)
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
        self, modality: str, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None, with_tokens: bool = False,
        path: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the tower of ``modality`` on inputs without a clips axis.

        Args:
            modality (`str`): a canonical modality name of this model.
            inputs (`torch.Tensor`): the processor's tensor `(batch, ...)`.
            attention_mask (`torch.Tensor`, *optional*): passed to the tower as given (only text towers take one).
            with_tokens (`bool`, *optional*, defaults to `False`): also return the patch tokens (prefix tokens
                dropped), which the reconstruction decoder needs.
            path (`str`, *optional*): run with this path's own copies of tower tensors (its CLS token, see
                `codebind_hf.adapters.path_owned`); default the base tower as it is.

        Returns:
            `tuple`: the pooled token `(batch, hidden)` and the patch tokens `(batch, patches, hidden)` or `None`.
        """
        out = self.run_tower(modality, inputs, attention_mask, path=path)
        return self._pooled(out), (out.last_hidden_state[:, self.towers[modality].num_prefix_tokens :] if with_tokens else None)

    def run_tower(self, modality: str, inputs: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  output_hidden_states: bool | list[int] = False, output_attentions: bool = False, path: str | None = None):
        """The tower of ``modality`` on inputs without a clips axis (with ``path``'s own tower tensors, if it has
        some): its whole `TowerOutput` (tokens, pooled index, and the hidden states / attention weights when asked),
        which `tower_outputs` reduces to what training needs."""
        return self.run_path_module(path, f"towers.{modality}", inputs, attention_mask=attention_mask,
                                    output_hidden_states=output_hidden_states, output_attentions=output_attentions)

    def shared_head_output(self, modality: str, path: str | None, hidden: torch.Tensor) -> torch.Tensor:
        """The shared head of ``modality`` on tower states: path ``path``'s own copy where it has one, else the base's."""
        return self.run_path_module(path, f"shared_heads.{modality}", hidden)

    @staticmethod
    def _pooled(tower_out) -> torch.Tensor:
        if tower_out.pooled_output is not None:  # mean / pooler / projected pooling (encoders/hf_backbone.py)
            return tower_out.pooled_output
        hidden = tower_out.last_hidden_state
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), tower_out.pooled_index]

    def encode_tower_outputs(
        self,
        modality: str,
        path: str | None,
        pooled: torch.Tensor,
        patch_tokens: torch.Tensor | None = None,
        with_specific: bool | None = None,
        quantize: bool = True,
        return_distances: bool = False,
        clips: int = 1,
    ) -> tuple[ModalityEncoding, list[CodebookRecord]]:
        """Heads -> codebooks of ``path`` for tower outputs (see [`~CodeBindModel.tower_outputs`]).

        Args:
            modality (`str`): the modality the outputs come from.
            path (`str`, *optional*): whose specific head and codebooks to use; may be `None` only when neither
                quantising nor using the specific part.
            pooled (`torch.Tensor` of shape `(batch * clips, hidden)`): pooled tower outputs.
            patch_tokens (`torch.Tensor` of shape `(batch, patches, hidden)`, *optional*): tokens to quantise for
                reconstruction (needs the specific part; unquantised without codebooks).
            with_specific (`bool`, *optional*): use the specific head (default: whether ``modality`` has one in ``path``).
            quantize (`bool`, *optional*, defaults to `True`): `False` gives the normalised head outputs only; so does
                a path without codebooks (``use_codebooks: false``).
            return_distances (`bool`, *optional*, defaults to `False`): keep the pooled quantisations' code
                distances (the path loss needs them).
            clips (`int`, *optional*, defaults to 1): rows per sample; their head outputs are averaged before the
                codebooks (`average_clips`), so a clip input's embedding is a code, as in the authors' code.

        Returns:
            `tuple`: the [`ModalityEncoding`] and one `CodebookRecord` per quantisation (detached head outputs and
            their codes, for the trainer's codebook life cycle; empty without codebooks).
        """
        if with_specific is None:
            with_specific = self.config.path_has_specific(path, modality) if path is not None else self.config.has_specific(modality)
        if patch_tokens is not None and not with_specific:
            raise ValueError(f"{modality}: patch tokens are quantised for reconstruction, which needs a specific part")
        books = self.quantizers[path] if path is not None else None
        official = path is not None and self.config.paths[path]["variants"]["quantizer_output"] == "official"
        # The authors L2-normalise [shared | specific] jointly per token (and clip): the weights need both parts.
        joint = official
        own_specific = path is not None and self.config.path_has_specific(path, modality)
        shared = self.shared_head_output(modality, path, pooled)
        specific = self.specific_heads[path][modality](pooled) if (with_specific or (joint and own_specific)) else None
        if clips > 1 or joint:
            shared, specific = average_clips(shared, specific, clips, joint)
        specific = specific if with_specific else None
        if not quantize or books is None or not books.enabled:  # no codebooks (or the no-codebook ablation)
            encoding = ModalityEncoding(F.normalize(shared, dim=-1), None if specific is None else F.normalize(specific, dim=-1),
                                        shared_z=shared, specific_z=specific)
            encoding.concat = None if specific is None else _joint(shared, specific) if official else _joint(
                encoding.shared, encoding.specific)
            if patch_tokens is not None:  # reconstruction from the unquantised tokens
                encoding.shared_tokens = F.normalize(self.shared_head_output(modality, path, patch_tokens), dim=-1)
                encoding.specific_tokens = F.normalize(self.specific_heads[path][modality](patch_tokens), dim=-1)
            encoding.commitment = shared.new_zeros(())
            return encoding, []
        shared_name, shared_book = books.shared_name(modality), books.shared_for(modality)
        shared_q = shared_book(shared, return_distances=return_distances)
        encoding = ModalityEncoding(F.normalize(shared_q.quantized, dim=-1), None, shared_q=shared_q, shared_z=shared,
                                    specific_z=specific)
        commitment = [shared_q.commitment_loss]
        records = [CodebookRecord(shared_name, modality, shared.detach(), shared_q.indices)]
        if specific is not None:
            specific_q = books.specific_for(modality)(specific, return_distances=return_distances)
            encoding.specific, encoding.specific_q = F.normalize(specific_q.quantized, dim=-1), specific_q
            # the authors normalise the raw code vectors of both parts together; the paper, two unit parts
            encoding.concat = (_joint(shared_q.quantized, specific_q.quantized) if official
                               else _joint(encoding.shared, encoding.specific))
            commitment.append(specific_q.commitment_loss)
            records.append(CodebookRecord(f"specific.{modality}", modality, specific.detach(), specific_q.indices))
        if patch_tokens is not None:
            shared_z = self.shared_head_output(modality, path, patch_tokens)
            specific_z = self.specific_heads[path][modality](patch_tokens)
            shared_tok = shared_book(shared_z)
            specific_tok = books.specific_for(modality)(specific_z)
            encoding.shared_tokens = F.normalize(shared_tok.quantized, dim=-1)
            encoding.specific_tokens = F.normalize(specific_tok.quantized, dim=-1)
            commitment += [shared_tok.commitment_loss, specific_tok.commitment_loss]
            for name, z, q in ((shared_name, shared_z, shared_tok), (f"specific.{modality}", specific_z, specific_tok)):
                records.append(CodebookRecord(name, modality, z.detach().flatten(0, 1), q.indices.flatten(0, 1), tokens=True))
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
        output_hidden_states: bool | list[int] = False,
        output_attentions: bool = False,
    ):
        """Checked inputs of one modality -> (encoding, tower output); a clips axis is folded into the batch, the head
        outputs averaged over it before the codebooks (`encode_tower_outputs`). ``quantize`` may be a 0-dim bool tensor
        inside a traced graph (see `codebooks_trained`): both encodings are computed and selected, as `initialized` is
        data there."""
        clips = 1
        if self.towers[modality].split_clips(inputs):
            clips, inputs = inputs.shape[1], inputs.flatten(0, 1)
        out = self.run_tower(modality, inputs, attention_mask, output_hidden_states, output_attentions, path=path)
        pooled = self._pooled(out)
        patch_tokens = out.last_hidden_state[:, self.towers[modality].num_prefix_tokens :] if with_tokens else None
        if isinstance(quantize, torch.Tensor):
            raw, _ = self.encode_tower_outputs(modality, path, pooled, None, with_specific, False, clips=clips)
            encoding, _ = self.encode_tower_outputs(modality, path, pooled, None, with_specific, True, clips=clips)
            encoding.shared = torch.where(quantize, encoding.shared, raw.shared)
            if with_specific:
                encoding.specific = torch.where(quantize, encoding.specific, raw.specific)
                encoding.concat = torch.where(quantize, encoding.concat, raw.concat)
            return encoding, out
        encoding, _ = self.encode_tower_outputs(modality, path, pooled, patch_tokens, with_specific, quantize, return_distances,
                                                clips=clips)
        return encoding, out

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
                the codebooks (for a converted ImageBind model: ImageBind's embedding direction). Codebooks that were
                never trained (no path covers the modality, or its codebooks have ``initialized == False``) are
                never used: the unquantised head output is returned, with a one-time warning.
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
        return self._embed_with_tower_output(modality, inputs, part, quantize, path, attention_mask, bonds,
                                             expert_features)[0]

    def _embed_with_tower_output(
        self,
        modality: str,
        inputs,
        part: str = "shared",
        quantize: bool = True,
        path: str | None = None,
        attention_mask: torch.Tensor | None = None,
        bonds: dict[str, float] | None = None,
        expert_features=None,
        output_hidden_states: bool | list[int] = False,
        output_attentions: bool = False,
    ):
        """`get_features` and the tower output it came from (for `get_*_features`)."""
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
        path, quantize = self._feature_codebooks(modality, path, quantize, need_specific)
        if need_specific and not self.config.path_has_specific(path, modality):
            raise ValueError(f"Path {path!r} has no specific part (use_decoupling: false); use part='shared'")
        encoding, tower_out = self._encode(modality, inputs, attention_mask, path, quantize, need_specific,
                                           output_hidden_states=output_hidden_states,
                                           output_attentions=output_attentions)
        out = {"shared": encoding.shared, "specific": encoding.specific, "concat": encoding.concat}[part]
        if bonds:
            out = apply_bonds(self, modality, out, bonds, expert_features=expert_features, inputs=given, part=part)
        return out, tower_out

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        audio_values: torch.FloatTensor | None = None,
        depth_values: torch.FloatTensor | None = None,
        thermal_values: torch.FloatTensor | None = None,
        imu_values: torch.FloatTensor | None = None,
        tactile_values: torch.FloatTensor | None = None,
        eeg_values: torch.FloatTensor | None = None,
        point_values: torch.FloatTensor | None = None,
        return_loss: bool | None = None,
        path: str | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CodeBindOutput | tuple:
        """Embed every modality given (processor keys); with ``return_loss`` also the path loss.

        Args:
            input_ids, attention_mask, pixel_values, pixel_values_videos, audio_values, depth_values, ...: the
                processor's tensors, one per modality (images or videos for vision); a new modality's under its input
                key, through ``**kwargs`` (``radar_values=...``).
            return_loss (`bool`, *optional*): compute the CodeBind loss of ``path`` (default: the single path whose
                target is in the inputs). Training quantises through the path's codebooks whatever their state.
            path (`str`, *optional*): the path whose loss to compute.
            output_hidden_states, output_attentions (`bool`, *optional*): per-modality tower hidden states /
                attention weights (eager attention) in the output (default: the config's).
            return_dict (`bool`, *optional*): a [`CodeBindOutput`] (default) or a tuple (``loss`` first when given).

        Without ``return_loss``, a modality whose codebooks were never trained gets its unquantised embedding and
        no codes (see [`~CodeBindModel.get_features`]).
        """
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        return_dict = self.config.return_dict if return_dict is None else return_dict
        inputs = {"input_ids": input_ids, "pixel_values": pixel_values, "pixel_values_videos": pixel_values_videos,
                  "audio_values": audio_values, "depth_values": depth_values, "thermal_values": thermal_values,
                  "imu_values": imu_values, "tactile_values": tactile_values, "eeg_values": eeg_values,
                  "point_values": point_values, **self._extra_inputs(kwargs)}
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
        towers_out = {}
        for modality, tensor in present.items():
            self._check_input(modality, tensor)
            if return_loss and self.towers[modality].split_clips(tensor):
                raise ValueError(f"{modality}: training inputs must not have a clips axis; got shape {tuple(tensor.shape)}")
            mask = attention_mask if modality == "text" else None
            use_path = path if return_loss else self._default_path(modality)
            with_specific = use_path is not None and self.config.path_has_specific(use_path, modality)
            quantize = use_path is not None and (bool(return_loss) or self._trained_for_inference(use_path, modality))
            with_tokens = (bool(return_loss) and with_specific and self.decoder is not None and modality in self.decoder.heads
                           and self.config.paths[use_path]["use_reconstruction"])
            encodings[modality], towers_out[modality] = self._encode(
                modality, tensor, mask, use_path, quantize, with_specific, with_tokens, bool(return_loss),
                output_hidden_states or False, bool(output_attentions),
            )
        fields = {"shared_embeds": {}, "specific_embeds": {}, "embeds": {}, "codes": {}}
        for modality, enc in encodings.items():  # clips were averaged before the codebooks: one row per sample
            shared = enc.shared
            fields["shared_embeds"][modality] = shared
            fields["embeds"][modality] = shared
            if enc.specific is not None:
                fields["specific_embeds"][modality] = enc.specific
                fields["embeds"][modality] = enc.concat
            if enc.shared_q is not None:
                fields["codes"][modality] = enc.shared_q.indices
        if output_hidden_states or output_attentions:
            for modality, out in towers_out.items():
                tower_output = BaseModelOutputWithPooling(
                    last_hidden_state=out.last_hidden_state, pooler_output=fields["embeds"][modality],
                    hidden_states=out.hidden_states, attentions=out.attentions)
                if f"{modality}_model_output" in CodeBindOutput.__dataclass_fields__:
                    fields[f"{modality}_model_output"] = tower_output
                else:
                    fields.setdefault("modality_model_outputs", {})[modality] = tower_output
        if return_loss:
            fields["loss"], fields["loss_breakdown"] = compute_path_loss(self, path, encodings, present)
        # Built in one go so that `loss` comes first in the output (and in `to_tuple()`), as transformers expects.
        output = CodeBindOutput(**{k: fields[k] for k in ("loss", "loss_breakdown") if k in fields},
                                **{k: v for k, v in fields.items() if k not in ("loss", "loss_breakdown")})
        return output if return_dict else output.to_tuple()

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


def _joint(shared: torch.Tensor, specific: torch.Tensor) -> torch.Tensor:
    return F.normalize(torch.cat([shared, specific], dim=-1), dim=-1)


__all__ = ["CodeBindPreTrainedModel", "CodeBindModel", "CodeBindOutput", "ModalityEncoding", "PARTS", "average_clips"]
