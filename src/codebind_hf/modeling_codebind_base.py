"""What a [`CodeBindModel`] owes transformers besides the CodeBind computation.

- initialisation of every parameter and buffer through `transformers.initialization` (so a meta-device model, or
  one whose checkpoint lacks some weights, is initialised like a normal one and loaded weights are never touched);
- the save/load contract: `save_pretrained` takes every argument transformers passes and saves what the model
  holds (the decoder included); `drop_decoder()` makes the inference artifact; `from_pretrained` is strict unless
  asked (``strict=False``, ``ignore_mismatched_sizes``) and honours ``output_loading_info``;
- attention backends: ``attn_implementation="eager" | "sdpa"`` at load time and `set_attn_implementation` at run
  time reach every tower (ImageBind layers read their tower's typed config; HF backbones are sub-models);
- no untrained codebooks used silently: `get_features` and inference `forward` quantise only through codebooks
  that were trained (``initialized``), and otherwise give the unquantised head output with a one-time warning;
- ``get_text_features`` / ``get_image_features`` / ``get_audio_features`` in the CLIP/CLAP convention of
  transformers 5: a `BaseModelOutputWithPooling` whose ``pooler_output`` is the embedding.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import logging

from .adapters.path_owned import PathOwnedTensors
from .configuration_codebind import CodeBindConfig
from .modalities import canonical_modality
from .encoders.imagebind_layers import ImageBindAttention, ImageBindBlock
from .encoders.vitlens_layers import EEGPatchEmbed, PerceiverResampler
from .modules.heads import LogitScale
from .quantization.quantizer import CompositionalQuantizer, initial_codebook

logger = logging.get_logger(__name__)

_LOAD_PROBLEMS = ("missing_keys", "unexpected_keys", "mismatched_keys")


def _conv_default_init(module: nn.Module) -> None:
    """PyTorch's own convolution initialisation (kaiming-uniform, a=sqrt(5)), through the loaded-aware helpers."""
    init.kaiming_uniform_(module.weight, a=math.sqrt(5))
    if module.bias is not None:
        fan_in = module.weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(module.bias, -bound, bound)


class CodeBindPreTrainedModel(PreTrainedModel):
    config_class = CodeBindConfig
    base_model_prefix = "codebind"
    main_input_name = "input_ids"
    input_modalities = ("text", "image", "video", "audio")
    supports_gradient_checkpointing = True
    _no_split_modules = ["ImageBindBlock", "ReconstructionDecoder"]
    # ImageBind layers run "eager" or "sdpa"; HF backbones follow the same choice as sub-models.
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the tensors ``module`` owns directly (children are visited on their own).

        Linear and LayerNorm layers, convolution stems, the ImageBind tokens/positions/causal mask, key/value bias
        tokens and LayerScale, the logit scales, the decoder's positions and packed attention, the codebooks
        (random unit codevectors, EMA state reset, ``initialized = False``) and the paths' own copies of base tensors
        (the base values). HF backbones initialise themselves.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            _conv_default_init(module)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=std)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):  # ViT-Lens's point lens
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.MultiheadAttention):
            # The decoder's packed projection, initialised as `nn.MultiheadAttention` does it.
            if module.in_proj_weight is not None:
                init.xavier_uniform_(module.in_proj_weight)
            if module.in_proj_bias is not None:
                init.zeros_(module.in_proj_bias)
        elif hasattr(module, "init_embeddings_"):  # ImageBind and ViT-Lens towers: tokens, CLS, positions, mask
            module.init_embeddings_()
        elif isinstance(module, EEGPatchEmbed):
            init.normal_(module.pos_emb, std=module.pos_emb.shape[-1] ** -0.5)
        elif isinstance(module, PerceiverResampler):
            init.normal_(module.latents, std=1.0)
        elif isinstance(module, ImageBindAttention):
            if module.bias_k is not None:
                init.xavier_normal_(module.bias_k)
                init.xavier_normal_(module.bias_v)
        elif isinstance(module, ImageBindBlock):
            for gamma in (module.layer_scale_gamma1, module.layer_scale_gamma2):
                if gamma is not None:
                    init.constant_(gamma, module.layer_scale_init_value)
        elif isinstance(module, LogitScale):
            init.constant_(module.log_logit_scale, math.log(module.init_scale))
        elif isinstance(module, nn.ParameterDict):
            # The decoder's position embeddings (its only ParameterDict); transformers visits the module that holds
            # the tensors, not the decoder above it.
            for position in module.values():
                init.zeros_(position)
        elif isinstance(module, PathOwnedTensors):  # a path's copies start as the base tensors they copy
            self._init_path_owned(module)
        elif isinstance(module, CompositionalQuantizer):
            codebook = initial_codebook(*module.codebook.shape).to(module.codebook.device)
            init.copy_(module.codebook, codebook)
            init.copy_(module.ema_sum, codebook)
            init.zeros_(module.ema_count)
            init.zeros_(module.usage_ema)
            init.zeros_(module.code_counts)
            init.zeros_(module.initialized)

    # ------------------------------------------------------------------ untrained codebooks
    def codebooks_trained(self, path: str, modality: str, with_specific: bool = False):
        """Whether ``path``'s codebooks that quantise ``modality`` were trained (``initialized``): a bool, or a
        0-dim bool tensor inside a traced graph (where the buffer's value is data)."""
        books = self.quantizers[path]
        if not books.enabled:  # the no-codebook ablation: nothing is quantised, so nothing untrained is used
            return True
        flags = [books.shared_for(modality).initialized] + ([books.specific_for(modality).initialized] if with_specific else [])
        trained = torch.stack(flags).all()
        return trained if torch.compiler.is_compiling() else bool(trained)

    def _feature_codebooks(self, modality: str, path: str | None, quantize: bool, with_specific: bool):
        """The path to use and whether to quantise: never through codebooks that were not trained. Unquantised
        shared features use the given path where it is loaded and covers the modality (its own heads,
        `codebind_hf.adapters.path_owned`), else the modality's unambiguous one, else none (the base's heads)."""
        covering = [p for p in self.quantizers if modality in self.config.path_modalities(p)]
        if quantize and path is None and not with_specific and not covering:
            self._warn_untrained(modality, "no path has codebooks for it")
            return None, False
        if not (quantize or with_specific):
            if path is not None:  # e.g. a projector run names its target, which has no codebooks
                return (canonical_modality(path) if canonical_modality(path) in covering else None), False
            return self._default_path(modality), False
        path = self.resolve_path(modality, path)
        if with_specific and not self.config.path_has_specific(path, modality):
            raise ValueError(f"Path {path!r} has no specific part (use_decoupling: false); use part='shared'")
        if not quantize:
            return path, False
        trained = self.codebooks_trained(path, modality, with_specific)
        if isinstance(trained, torch.Tensor):
            return path, trained
        if not trained:
            self._warn_untrained(modality, f"the {path!r} path's codebooks were never trained (initialized == False)")
        return path, trained

    @staticmethod
    def _warn_untrained(modality: str, why: str) -> None:
        logger.warning_once(
            f"CodeBindModel gives the unquantised {modality} embedding (the head output, not snapped to codevectors): "
            f"{why}. Load a trained path with model.load_path(...), or pass quantize=False to ask for it."
        )

    def _trained_for_inference(self, path: str, modality: str) -> bool:
        with_specific = self.config.path_has_specific(path, modality)
        if self.codebooks_trained(path, modality, with_specific):
            return True
        self._warn_untrained(modality, f"the {path!r} path's codebooks were never trained (initialized == False)")
        return False

    # ------------------------------------------------------------------ attention backends
    def _typed_tower_configs(self):
        """(modality, tower, typed config) for every tower whose attention reads a config we keep in sync (this
        package's families; HF backbones are sub-models that transformers updates itself)."""
        for modality, tower in self.towers.items():
            if self.config.modalities[modality].get("family") != "hf":
                yield modality, tower, self.config.tower_config(modality)

    def _sync_tower_attention(self, requested=None) -> None:
        """Give each ImageBind tower's typed config the implementation of the top level (or its own entry of a
        per-sub-config dict)."""
        top = self.config._attn_implementation
        for modality, tower, typed in self._typed_tower_configs():
            own = requested.get(f"{modality}_config", top) if isinstance(requested, dict) else top
            typed._attn_implementation_internal = own
            tower.set_attention_config(typed)

    def set_attn_implementation(self, attn_implementation: str | dict, allow_all_kernels: bool = False):
        """`PreTrainedModel.set_attn_implementation`, reaching the ImageBind towers as well as the HF backbones."""
        super().set_attn_implementation(attn_implementation, allow_all_kernels=allow_all_kernels)
        self._sync_tower_attention(attn_implementation)

    # ------------------------------------------------------------------ save / load
    def drop_decoder(self):
        """Remove the training-only reconstruction decoder (and mark it disabled in the config): the step that
        makes an inference artifact. Returns the model."""
        self.decoder = None
        self.config.decoder = {**self.config.decoder.settings(), "enabled": False}
        return self

    def save_pretrained(self, save_directory, *args, include_decoder: bool | None = None, **kwargs):
        """`PreTrainedModel.save_pretrained` (every argument, ``state_dict`` included): saves what the model holds, so
        loading gives it back exactly, decoder included. ``include_decoder=False`` saves without the decoder (as
        `drop_decoder` would, leaving this model as it is).

        Atomic and checksummed (`codebind_hf.adapters.model_files.save_model_folder`): the files are written beside
        ``save_directory`` and switched in as one set, with the weights' sha256 in ``model_checksums.json``; other
        files already in the folder are kept. ``push_to_hub=True`` uploads the saved model afterwards.
        """
        from .adapters.model_files import save_model_folder

        if args:  # transformers' positional order (is_main_process, state_dict, ...)
            names = [n for n in inspect.signature(PreTrainedModel.save_pretrained).parameters
                     if n not in ("self", "save_directory")]
            for name, value in zip(names, args):
                if name in kwargs:
                    raise TypeError(f"save_pretrained() got multiple values for argument {name!r}")
                kwargs[name] = value
        if kwargs.pop("push_to_hub", False):
            push = {k: kwargs.pop(k) for k in ("repo_id", "commit_message", "private", "create_pr", "revision",
                                                "commit_description") if k in kwargs}
            if kwargs.get("token") is not None:
                push["token"] = kwargs["token"]
            repo_id = push.pop("repo_id", Path(save_directory).name)
            self.save_pretrained(save_directory, include_decoder=include_decoder, **kwargs)
            return self._push_saved_folder(save_directory, repo_id, **push)
        is_main = kwargs.pop("is_main_process", True)
        return save_model_folder(
            save_directory, lambda staging: self._save_pretrained_files(staging, include_decoder, **kwargs),
            is_main_process=is_main,
        )

    def _push_saved_folder(self, save_directory, repo_id: str, **push):
        """Upload the folder `save_pretrained` just wrote (checksums included) as one commit."""
        from .adapters.io import push_folder

        return push_folder(lambda _tmp: str(save_directory), repo_id, token=push.pop("token", None),
                           private=push.pop("private", None), **push)

    def _save_pretrained_files(self, save_directory, include_decoder: bool | None, **kwargs):
        """transformers' own save into ``save_directory`` (the staging folder), without the decoder when asked."""
        if include_decoder is not False or self.decoder is None:
            return super().save_pretrained(save_directory, **kwargs)
        state = kwargs.pop("state_dict", None)
        state = self.state_dict() if state is None else state
        kwargs["state_dict"] = {k: v for k, v in state.items() if not k.startswith("decoder.")}
        settings = self.config.decoder
        self.config.decoder = {**settings.settings(), "enabled": False}
        try:
            return super().save_pretrained(save_directory, **kwargs)
        finally:
            self.config.decoder = settings

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, strict: bool = True, **kwargs):
        """`PreTrainedModel.from_pretrained`, strict by default: a missing, unexpected or mis-shaped weight is an
        error listing the keys. A non-strict load has to be asked for: ``strict=False`` loads anyway (missing weights
        initialised) and logs what was missing; ``output_loading_info=True`` returns ``(model, loading_info)``
        without raising, the caller getting the lists; ``ignore_mismatched_sizes=True`` allows re-initialised
        mis-shaped weights.

        The weights are first checked against ``model_checksums.json`` and an interrupted local save is healed
        (``verify_checksums=False`` skips that); an unreadable or wrongly shaped weights file is named."""
        from .adapters.model_files import check_model_source, explain_load_failure

        if kwargs.pop("verify_checksums", True):
            hub = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only", "subfolder") if k in kwargs}
            check_model_source(pretrained_model_name_or_path, **hub)
        want_info = kwargs.pop("output_loading_info", False)
        strict = strict and not want_info
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        except Exception as err:  # say which file or tensor (transformers logs it only); else re-raised as it is
            better = explain_load_failure(pretrained_model_name_or_path, cls, err)
            if better is None:
                raise
            raise better from err
        allowed = {"mismatched_keys"} if kwargs.get("ignore_mismatched_sizes") else set()
        problems = {k: sorted(map(str, info[k])) for k in _LOAD_PROBLEMS if info.get(k) and k not in allowed}
        if problems and strict:
            raise ValueError(
                f"Checkpoint {pretrained_model_name_or_path!s} does not match the model: {problems} "
                "(pass strict=False to load it anyway, initialising what is missing)"
            )
        if problems:
            logger.warning("Loaded %s non-strictly: %s", pretrained_model_name_or_path, problems)
        return (model, info) if want_info else model

    # ------------------------------------------------------------------ transformers' feature getters
    def _features_output(self, modality: str, inputs, attention_mask, output_hidden_states, output_attentions,
                         return_dict, **kwargs):
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        return_dict = self.config.return_dict if return_dict is None else return_dict
        embeds, tower_out = self._embed_with_tower_output(
            modality, inputs, attention_mask=attention_mask, output_hidden_states=bool(output_hidden_states),
            output_attentions=bool(output_attentions), **kwargs
        )
        output = BaseModelOutputWithPooling(
            last_hidden_state=tower_out.last_hidden_state,
            pooler_output=embeds,
            hidden_states=tower_out.hidden_states,
            attentions=tower_out.attentions,
        )
        return output if return_dict else output.to_tuple()

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                          output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                          return_dict: bool | None = None, **kwargs) -> BaseModelOutputWithPooling | tuple:
        """Text embeddings in transformers' convention (as `CLIPModel.get_text_features`).

        Returns:
            [`~transformers.modeling_outputs.BaseModelOutputWithPooling`] (a tuple with ``return_dict=False``):
            ``pooler_output`` is the unit embedding [`~CodeBindModel.get_features`] returns (same keyword arguments:
            ``part``, ``quantize``, ``path``, ...), ``last_hidden_state`` the text tower's tokens, plus
            ``hidden_states``/``attentions`` when asked.
        """
        return self._features_output("text", input_ids, attention_mask, output_hidden_states, output_attentions,
                                     return_dict, **kwargs)

    def get_image_features(self, pixel_values: torch.Tensor, *, output_hidden_states: bool | None = None,
                           output_attentions: bool | None = None, return_dict: bool | None = None,
                           **kwargs) -> BaseModelOutputWithPooling | tuple:
        """Image (or video clip) embeddings in transformers' convention; see [`~CodeBindModel.get_text_features`]."""
        return self._features_output("vision", pixel_values, None, output_hidden_states, output_attentions,
                                     return_dict, **kwargs)

    def get_audio_features(self, audio_values: torch.Tensor, *, output_hidden_states: bool | None = None,
                           output_attentions: bool | None = None, return_dict: bool | None = None,
                           **kwargs) -> BaseModelOutputWithPooling | tuple:
        """Audio embeddings in transformers' convention (as `ClapModel.get_audio_features`); see
        [`~CodeBindModel.get_text_features`]."""
        return self._features_output("audio", audio_values, None, output_hidden_states, output_attentions,
                                     return_dict, **kwargs)


__all__ = ["CodeBindPreTrainedModel"]
