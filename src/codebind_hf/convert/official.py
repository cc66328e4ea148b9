"""One-way converter: experiment folders of the released CodeBind code (Visual-AI/CodeBind) + their ImageBind base
-> a CodeBind model holding the base and one path per experiment, and each path as its own artifact.

The released layout (one experiment = one path, named by its target modality ``modality_eval``)::

    <experiment>/cfg_all_train.yaml                         the merged settings the authors' eval loader reads back
    <experiment>/checkpoints/imagebind-<module>-<m>_best.pth  module in preprocessors, heads, heads_mvq,
                                                            postprocessors, postprocessors_new; m in modality_train
    <experiment>/checkpoints/imagebind-lora-<target>_last.safetensors
    <experiment>/checkpoints/imagebind-vector_quantise-_best.pth   (mind the dash)

read exactly as the authors' loader does: every ``.pth`` with ``_best``, the LoRA factors with ``_last``. The
``_last`` ``.pth`` files, the ``_best`` LoRA file and the decoder files (never read at evaluation) are known and
skipped; any other file, any missing one and any unexpected key or shape is refused, naming the file.

What goes where: ``heads`` are the shared heads (the target's own, the bridges' as the path's own copies),
``heads_mvq`` the specific heads, the ``cls_token`` of each ``preprocessors`` file the path's own CLS token (every
other preprocessor tensor, and the unused in-encoder ``postprocessors``, must equal the base checkpoint's),
``postprocessors_new`` the logit scales, the ``vector_quantise`` ``mvq_dict`` the codebooks with their EMA state
(``initted`` -> ``initialized``). The paths get ``variants: official`` (the authors' quantiser output, bridge heads
and loss forms), their widths, codebook sizes, temperature, loss weights and LoRA settings from the YAML.

LoRA: kept as peft LoRA (rank ``lora_rank``, scale 1 as the authors' ``W += up @ down``) in the path artifacts
``OUTPUT_DIR/paths/<target>/``, so they stay small, load onto the plain converted ImageBind base whose fingerprint
they record (``codebind-convert-imagebind`` of the same ``.pth``) and can be fine-tuned further; merged into the
target towers in the model folder, which then loads with ``from_pretrained`` alone, as the trainer's full model.

Command line::

    codebind-convert-official --base imagebind_huge.pth --imagebind-config kwargs.json \\
        --experiment exp/audio_lora_MVQ1024x8_256x8 --experiment exp/depth_lora_... --output ./codebind-official \\
        [--push-to-hub org/name]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from ..adapters.io import push_folder
from ..adapters.lora import add_lora, merge_lora
from ..encoders.imagebind import CODEBIND_EXTRA_MODALITIES, IMAGEBIND_MODALITIES
from ..modalities import canonical_modality
from ._common import account_weights, write_model_folder_atomically
from .imagebind import convert_imagebind_checkpoint, imagebind_key_to_codebind

logger = logging.getLogger(__name__)

CONFIG_FILE = "cfg_all_train.yaml"
_MODULES = ("preprocessors", "heads", "heads_mvq", "postprocessors", "postprocessors_new")
# What the authors' LoRA file calls each wrapped linear, and its name in our ImageBind blocks.
_LORA_LINEARS = {"attn.in_proj": "attn.qkv", "attn.out_proj": "attn.out_proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_LORA_KEY = re.compile(r"blocks\.(\d+)\.(attn\.in_proj|attn\.out_proj|mlp\.fc1|mlp\.fc2)_lora_(down|up)")
# The authors' EMA codebook buffers and ours.
_CODEBOOK = {"embedding.weight": "codebook", "embedding.cluster_size": "ema_count", "embedding.embed_avg": "ema_sum",
             "embed_prob": "usage_ema", "initted": "initialized"}
# Settings of the released code this converter reads; other values mean a layout it does not know.
_REQUIRED = {("train_mode",): "lora", ("encoder", "add_new_output_head"): True, ("encoder", "use_both_head"): True,
             ("encoder", "use_postprocessors_outencoder"): True, ("vector_quantise", "use_mvq"): True,
             ("vector_quantise", "seg_type"): 1, ("vector_quantise", "distance"): "cos",
             ("vector_quantise", "norm_code"): True, ("vector_quantise", "share_codebook"): False,
             ("vector_quantise", "seperate_codebook"): False}


@dataclass
class OfficialExperiment:
    """One experiment folder, read and checked: its settings and the tensors the authors' loader reads."""

    folder: Path
    cfg: dict
    target: str
    bridges: list[str]
    trained: list[str]  # modality_train
    files: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # file name -> its tensors

    def width(self, modality: str) -> int:
        """Specific width of ``modality`` (0: no specific part), as the authors' quantiser builds it."""
        vq = self.cfg["vector_quantise"]
        return int(vq["input_vector_dim"].get(modality, 0)) if vq["codevector_dim"].get(modality, 0) else 0

    def file(self, name: str) -> dict[str, torch.Tensor]:
        return self.files[name]


def _setting(cfg: dict, keys: tuple[str, ...], where: Path):
    value = cfg
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"{where} lacks {'.'.join(keys)}; it is not a cfg_all_train.yaml of the released CodeBind code")
        value = value[key]
    return value


def read_official_experiment(folder: str | os.PathLike) -> OfficialExperiment:
    """Read one experiment folder of the released code: ``cfg_all_train.yaml`` and the files its eval loader reads
    (``_best`` modules, ``_last`` LoRA), refusing a layout or setting this converter does not know, a missing file
    and any unknown file, each named."""
    folder = Path(folder)
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: an experiment folder of the released CodeBind code has it")
    cfg = yaml.safe_load(config_file.read_text())
    for keys, wanted in _REQUIRED.items():
        if _setting(cfg, keys, config_file) != wanted:
            raise ValueError(f"{config_file}: {'.'.join(keys)} is {_setting(cfg, keys, config_file)!r}; this converter "
                             f"reads the layout with {'.'.join(keys)}: {wanted!r}")
    target = canonical_modality(_setting(cfg, ("modality_eval",), config_file))
    pair = [canonical_modality(m) for m in _setting(cfg, ("modality_pair",), config_file)]
    trained = [canonical_modality(m) for m in _setting(cfg, ("modality_train",), config_file)]
    if target not in pair or not set(trained) <= set(pair):
        raise ValueError(f"{config_file}: modality_eval {target!r} and modality_train {trained} must be in modality_pair {pair}")
    if target in CODEBIND_EXTRA_MODALITIES:
        raise ValueError(f"{config_file}: a {target} path cannot be converted: the released code builds the {target} "
                         "tower from a seeded random init and, in LoRA mode, never saves its trunk")
    if [canonical_modality(m) for m in _setting(cfg, ("lora_modality_names",), config_file)] != [target]:
        raise ValueError(f"{config_file}: lora_modality_names must be [{target!r}] (LoRA on the target tower only)")
    experiment = OfficialExperiment(folder, cfg, target, [m for m in pair if m != target], trained)
    _read_files(experiment)
    return experiment


def _read_files(experiment: OfficialExperiment) -> None:
    checkpoints = experiment.folder / "checkpoints"
    wanted = [f"imagebind-{module}-{m}_best.pth" for m in experiment.trained for module in _MODULES]
    wanted += [f"imagebind-lora-{experiment.target}_last.safetensors", "imagebind-vector_quantise-_best.pth"]
    known = {name.replace("_best.pth", "_last.pth") for name in wanted if name.endswith("_best.pth")}
    known |= {f"imagebind-lora-{experiment.target}_best.safetensors"}  # written, never read by the eval loader
    known |= {f"imagebind-decoder_{part}-{m}_{post}.pth" for m in experiment.cfg.get("modality_reconstruction") or []
              for part in ("trunk", "head") for post in ("best", "last")}  # training only: never read at evaluation
    present = {p.name for p in checkpoints.iterdir()} if checkpoints.is_dir() else set()
    missing = [name for name in wanted if name not in present]
    if missing:
        raise FileNotFoundError(f"{checkpoints} lacks {missing} (the released loader reads every module with _best "
                                "and the LoRA factors with _last)")
    unknown = sorted(present - set(wanted) - known)
    if unknown:
        raise ValueError(f"{checkpoints} holds files this converter does not know: {unknown}")
    for name in wanted:
        file = checkpoints / name
        try:
            if name.endswith(".safetensors"):
                tensors = load_file(file)
            else:
                tensors = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{file} could not be read as a state dict ({type(err).__name__}: {err})") from err
        if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise ValueError(f"{file} is not a state dict of tensors")
        experiment.files[name] = dict(tensors)


# ---------------------------------------------------------------------------------------------- settings
def official_path_settings(experiment: OfficialExperiment, embed_dim: int) -> dict:
    """The `PathConfig` of an experiment: its bridges, temperature, loss weights (the authors' ``loss_*_weight``),
    LoRA rank and blocks, specific widths, codebook sizes, and every variant ``official``."""
    cfg, where = experiment.cfg, experiment.folder / CONFIG_FILE
    widths = official_widths(experiment)
    specific = [m for m in [*experiment.bridges, experiment.target] if experiment.width(m)]
    reg = float(cfg.get("loss_vq_reg_weight", 1.0))  # the authors weigh ctr + cuni as one term
    weights = {"align": 1.0, "recon": 1.0, "vq": float(cfg.get("loss_vq_weight", 1.0)), "ctr": reg, "cuni": reg,
               "cm": float(cfg.get("loss_cmcm_weight", 1.0)), "orth": float(cfg.get("loss_modal_decomp_weight", 1.0)),
               "uni": float(cfg.get("loss_uniform_weight", 1.0))}
    narrow = {m: widths[m] for m in specific if widths[m] != embed_dim}
    if narrow and weights["orth"] > 0:
        # Their loss pairs the dimensions of the shared and the specific tokens (an einsum over a common width), so
        # it cannot run on these widths there either.
        logger.warning("%s: loss_modal_decomp_weight=%s set to 0: the orthogonality loss needs specific widths equal "
                       "to the shared width %s, got %s", where, weights["orth"], embed_dim, narrow)
        weights["orth"] = 0.0
    blocks = [int(i) for i in _setting(cfg, (f"lora_layer_idxs_{experiment.target}",), where)]
    rank = int(_setting(cfg, ("lora_rank",), where))
    decoder = cfg.get("decoder") or {}
    return {
        "bridges": list(experiment.bridges), "temperature": float(cfg.get("temperature", 0.05)), "loss_weights": weights,
        "variants": "official", "mode": "lora", "lora_rank": rank, "lora_alpha": rank,
        "lora_last_n_blocks": len(blocks),
        "use_reconstruction": bool(decoder.get("use_decoder", False) and cfg.get("modality_reconstruction")),
        "specific_dims": {m: w for m, w in widths.items() if m != "text"},
        "quantizer": official_quantizer_settings(experiment),
    }


def official_quantizer_settings(experiment: OfficialExperiment) -> dict:
    """The experiment's codebooks as `QuantizerConfig` settings: sizes and codevector widths (``common`` for the
    shared codebook, per modality for the specific ones where they differ)."""
    vq = experiment.cfg["vector_quantise"]
    specific = [m for m in [*experiment.bridges, experiment.target] if experiment.width(m)]
    sizes = {int(vq["codevector_num"][m]) for m in specific}
    if len(sizes) > 1:
        raise ValueError(f"{experiment.folder / CONFIG_FILE}: vector_quantise.codevector_num differs between {specific}; "
                         "this library has one specific codebook size per path")
    common = int(vq["codevector_dim"]["common"])
    return {"shared_codebook_size": int(vq["codevector_num"]["common"]),
            "specific_codebook_size": sizes.pop() if sizes else int(vq["codevector_num"]["common"]),
            "codevector_dim": common,
            "specific_codevector_dims": {m: int(vq["codevector_dim"][m]) for m in specific
                                         if int(vq["codevector_dim"][m]) != common}}


def official_widths(experiment: OfficialExperiment) -> dict[str, int]:
    """The specific width of every modality of the experiment's path (the path's ``specific_dims``; text 0)."""
    where = experiment.folder / CONFIG_FILE
    encoder, vq = experiment.cfg["encoder"], experiment.cfg["vector_quantise"]
    if int(encoder["output_embed_dim"]["common"]) != int(vq["input_vector_dim"]["common"]):
        raise ValueError(f"{where}: encoder.output_embed_dim.common and vector_quantise.input_vector_dim.common differ")
    widths = {m: experiment.width(m) for m in [*experiment.bridges, experiment.target]}
    for modality, width in widths.items():
        if width != int(encoder["output_embed_dim"].get(modality, 0)):
            raise ValueError(f"{where}: the {modality} specific head width encoder.output_embed_dim.{modality} and its "
                             f"quantiser's vector_quantise.input_vector_dim.{modality} differ")
    if widths.get("text"):
        raise ValueError(f"{where}: a specific part for text (width {widths['text']}) has no counterpart here (text "
                         "has none)")
    return widths


# ---------------------------------------------------------------------------------------------- tensors
def _specific_head_names(tensors: dict[str, torch.Tensor], where: str) -> dict[str, str]:
    """Keys of a ``heads_mvq`` file -> ``norm.*`` / ``proj.*``: the LayerNorm is the module with a 1-d weight and a
    bias, the Linear the one with a 2-d weight (``0.``/``1.``, or ``proj.0``/``proj.1`` for text)."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        prefix, _, leaf = key.rpartition(".")
        modules.setdefault(prefix, {})[leaf] = value
    names = {}
    for prefix, leaves in modules.items():
        role = "proj" if leaves.get("weight") is not None and leaves["weight"].ndim == 2 else "norm"
        if role in names.values():
            raise ValueError(f"{where}: more than one {'linear' if role == 'proj' else 'LayerNorm'} ({sorted(modules)})")
        names.update({f"{prefix}.{leaf}": f"{role}.{leaf}" for leaf in leaves})
    return names


def official_path_tensors(model, experiment: OfficialExperiment) -> tuple[dict, dict]:
    """The experiment's tensors under our names (``path_state_dict`` names of its path), and each one's source
    (``file: key``). Preprocessor tensors other than the CLS token and the in-encoder postprocessors are checked
    against the base model instead: they must be the base checkpoint's."""
    target, base = experiment.target, model.state_dict()
    ours, sources = {}, {}

    def put(name: str, value: torch.Tensor, file: str, key: str) -> None:
        ours[name], sources[name] = value, f"{file}: {key}"

    for modality in experiment.trained:
        owner = "" if modality == target else f"path_owned.{target}."
        for module in _MODULES:
            file = f"imagebind-{module}-{modality}_best.pth"
            tensors = experiment.file(file)
            if module == "heads_mvq":
                for key, name in _specific_head_names(tensors, file).items():
                    if experiment.width(modality) == 0:  # the authors' (0, D) head of a modality without a part
                        if tensors[key].ndim == 2 and tensors[key].shape[0] != 0:
                            raise ValueError(f"{file}: {key} has {tensors[key].shape[0]} rows, the width is 0")
                        continue
                    put(f"specific_heads.{target}.{modality}.{name}", tensors[key], file, key)
                continue
            if module == "postprocessors_new":
                for key, value in tensors.items():
                    put(f"{owner}logit_scales.{modality}.{key}", value.float(), file, key)
                continue
            group = {"preprocessors": "modality_preprocessors", "heads": "modality_heads",
                     "postprocessors": "modality_postprocessors"}[module]
            for key, value in tensors.items():
                name = imagebind_key_to_codebind(f"{group}.{modality}.{key}")
                if name is None:
                    raise ValueError(f"{file}: key {key!r} is no ImageBind {module} tensor this converter knows")
                if module == "heads":
                    put(owner + name, value, file, key)
                elif module == "preprocessors" and key == "cls_token":
                    put(f"path_owned.{target}.{name}", value, file, key)
                elif name not in base or base[name].shape != value.shape or not torch.equal(base[name], value):
                    raise ValueError(
                        f"{file}: {key} differs from the base checkpoint's {name}: the experiment was trained on another "
                        "base (or trained a tensor this converter cannot carry; only CLS tokens are per path)")
    vq_file = "imagebind-vector_quantise-_best.pth"
    for key, value in experiment.file(vq_file).items():
        match = re.fullmatch(r"mvq_dict\.(\w+)\.(.+)", key)
        if not match or match.group(2) not in _CODEBOOK:
            raise ValueError(f"{vq_file}: key {key!r} is no codebook tensor this converter knows")
        book, leaf = match.groups()
        if leaf == "initted":
            if not bool(value.reshape(-1)[0]):
                raise ValueError(f"{vq_file}: codebook {book!r} has initted = 0 (never initialised: the reference would "
                                 "re-run k-means at its first forward)")
            value = torch.tensor(True)
        prefix = f"quantizers.{target}.shared." if book == "common" else f"quantizers.{target}.specific.{canonical_modality(book)}."
        put(prefix + _CODEBOOK[leaf], value, vq_file, key)
    lora_file = f"imagebind-lora-{target}_last.safetensors"
    for key, value in experiment.file(lora_file).items():
        match = _LORA_KEY.fullmatch(key)
        if not match:
            raise ValueError(f"{lora_file}: key {key!r} is no LoRA factor this converter knows")
        block, linear, side = match.groups()
        put(f"towers.{target}.blocks.{block}.{_LORA_LINEARS[linear]}.lora_{'A' if side == 'down' else 'B'}.default.weight",
            value, lora_file, key)
    return ours, sources


def _install_experiment(model, experiment: OfficialExperiment, settings: dict) -> None:
    """Build the path's modules to learn what it needs, account for every tensor, then install it."""
    target = experiment.target
    blocks = sorted(int(i) for i in experiment.cfg[f"lora_layer_idxs_{target}"])
    total = model.towers[target].num_blocks
    if blocks != list(range(total - len(blocks), total)):
        raise ValueError(f"{experiment.folder / CONFIG_FILE}: lora_layer_idxs_{target}={blocks} are not the last blocks "
                         f"of the {total}-block {target} tower; this library's LoRA covers the last n blocks")
    lora = {"r": settings["lora_rank"], "lora_alpha": settings["lora_alpha"], "last_n_blocks": len(blocks), "dropout": 0.0}
    model.add_path(target, settings)
    add_lora(model, target, r=lora["r"], lora_alpha=lora["lora_alpha"], last_n_blocks=lora["last_n_blocks"])
    fresh = model.path_state_dict(target)
    model.remove_path(target)
    state, sources = official_path_tensors(model, experiment)
    # LoRA factors of linears the file leaves out (another lora_module_mode) add nothing: both zero.
    linears = {k.rsplit(".lora_", 1)[0] for k in fresh if ".lora_" in k}
    absent_lora = {f"{linear}.lora_{side}.default.weight" for linear in linears for side in "AB"
                   if not any(k.startswith(linear + ".lora_") for k in state)}
    # Never in the release: code-use counters (ours), and copies of base tensors no file trains (a bridge left out
    # of modality_train, the vision logit scale the authors do not have); they keep the base's values.
    synthesized = {k for k in fresh if k.endswith(".code_counts") or (k.startswith("path_owned.") and k not in state)}
    account_weights(
        {sources[k]: v for k, v in state.items()}, state, {k: v.shape for k, v in fresh.items()},
        to_ours={s: k for k, s in sources.items()}.get, to_reference=lambda k: sources.get(k, k),
        disagreement=f"{experiment.folder} and the model built for its path disagree",
        mismatch_hint="a base checkpoint or --imagebind-config of other sizes?", synthesized=synthesized | absent_lora,
    )
    for key in synthesized:
        state[key] = fresh[key]
    for key in absent_lora:
        state[key] = torch.zeros_like(fresh[key])
    model.install_path(target, settings, {k: v.to(fresh[k].dtype) for k, v in state.items()}, lora)


def convert_official_experiments(base_checkpoint, imagebind_config, experiments):
    """Convert the base ``.pth`` and experiment folders of the released code into a `CodeBindModel` holding one path
    per experiment (LoRA as peft LoRA). ``imagebind_config``: the reference constructor's keyword arguments (as for
    `convert_imagebind_checkpoint`); ``experiments``: folders or `OfficialExperiment`s.

    Example:

    ```python
    >>> from codebind_hf.convert.official import convert_official_experiments  # doctest: +SKIP
    >>> model = convert_official_experiments("imagebind_huge.pth", None, ["exp/audio_lora_MVQ1024x8_256x8"])  # doctest: +SKIP
    >>> model.get_features("vision", pixel_values, path="audio", part="concat")  # doctest: +SKIP

    ```
    """
    experiments = [e if isinstance(e, OfficialExperiment) else read_official_experiment(e) for e in experiments]
    targets = [e.target for e in experiments]
    if len(set(targets)) != len(targets):
        raise ValueError(f"two experiments train the same target: {targets} (a model holds one path per target)")
    # The base keeps the default quantizer settings and every path carries its own (path.quantizer), so each path
    # artifact loads onto the plain converted ImageBind base.
    model = convert_imagebind_checkpoint(base_checkpoint, imagebind_config)
    for experiment in experiments:
        common = int(experiment.cfg["encoder"]["output_embed_dim"]["common"])
        if common != model.config.embed_dim:
            raise ValueError(f"{experiment.folder / CONFIG_FILE}: the shared width {common} is not the base's "
                             f"out_embed_dim {model.config.embed_dim} (another --imagebind-config?)")
        missing = [m for m in experiment.trained if m not in IMAGEBIND_MODALITIES]
        if missing:
            raise ValueError(f"{experiment.folder}: modalities {missing} have no ImageBind tower in the base")
        settings = official_path_settings(experiment, model.config.embed_dim)
        _install_experiment(model, experiment, settings)
    return model.eval()


# ---------------------------------------------------------------------------------------------- output
def save_official_conversion(model, processor, output_dir: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Write ``output_dir``: ``paths/<target>/`` (each path artifact, peft LoRA) and, with LoRA merged into the
    target towers, the model folder and its processor. Atomic: the folder appears whole or not at all.
    ``repo_id`` only names the Hub repos in the path cards (``<repo_id>-<target>``)."""
    targets = model.list_paths()

    def write(staging: Path) -> None:
        for target in targets:
            model.save_path(target, staging / "paths" / target, repo_id=f"{repo_id}-{target}" if repo_id else None)
        for target in targets:  # path artifacts first: they record LoRA and the unmerged base
            if target in model.lora_settings:
                merge_lora(model, target)
        model.save_pretrained(staging, max_shard_size="2GB")
        processor.save_pretrained(staging)

    return write_model_folder_atomically(output_dir, write, folders=("paths",))


def push_official_conversion(model, processor, output_dir: str | os.PathLike, repo_id: str, token=None) -> list:
    """Push the model and its processor to ``repo_id`` (one commit, with a model card) and each saved path artifact
    of ``output_dir/paths`` to ``<repo_id>-<target>``. Returns the commits."""
    commits = [model.push_to_hub(repo_id, processor=processor, token=token)]
    for folder in sorted((Path(output_dir) / "paths").iterdir()):
        commits.append(push_folder(lambda _tmp, folder=folder: folder, f"{repo_id}-{folder.name}", token=token,
                                   commit_message=f"Upload CodeBind {folder.name} path (converted from the released code)"))
    return commits


def main(argv: list[str] | None = None) -> int:
    """Console script ``codebind-convert-official``."""
    parser = argparse.ArgumentParser(description="Convert experiment folders of the released CodeBind code (and their "
                                                 "ImageBind base) into a CodeBind model with one path per experiment.")
    parser.add_argument("--base", required=True, help="the ImageBind .pth the experiments were trained on")
    parser.add_argument("--imagebind-config", default=None,
                        help="the reference constructor's keyword arguments: a JSON file or inline JSON (default imagebind_huge)")
    parser.add_argument("--experiment", action="append", required=True, metavar="DIR",
                        help="an experiment folder (cfg_all_train.yaml + checkpoints/); repeat for several paths")
    parser.add_argument("--output", required=True, metavar="OUTPUT_DIR",
                        help="the model folder to write (with the processor, and each path under paths/<target>/)")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO",
                        help="also push the model and processor to REPO and each path to REPO-<target>")
    args = parser.parse_args(argv)
    from ..processing_codebind import CodeBindProcessor

    model = convert_official_experiments(args.base, args.imagebind_config, args.experiment)
    processor = CodeBindProcessor.imagebind()
    save_official_conversion(model, processor, args.output, args.push_to_hub)
    for target in model.list_paths():
        print(f"path {target}: bridges {model.config.paths[target]['bridges']}, saved to {Path(args.output) / 'paths' / target}")
    print(f"saved the CodeBind model with paths {model.list_paths()} and its processor to {args.output}")
    if args.push_to_hub:
        push_official_conversion(model, processor, args.output, args.push_to_hub)
        print(f"pushed to {args.push_to_hub} (paths to {args.push_to_hub}-<target>)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "OfficialExperiment",
    "read_official_experiment",
    "official_path_settings",
    "official_quantizer_settings",
    "official_widths",
    "official_path_tensors",
    "convert_official_experiments",
    "save_official_conversion",
    "push_official_conversion",
    "main",
]
