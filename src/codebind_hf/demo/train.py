"""The demo's two training stages and its arms.

Stage 0 (the bridge): a small ViT image tower is aligned to frozen MiniLM prompt embeddings with a
CLIP-style InfoNCE (the text tower is a lookup of those embeddings, the text head is trained with the
image side), then every bridge weight is frozen.

Stage 1 (the audio path), one arm each, from the same initial weights, over the same rows in the same order
(the path trainer's sampler and collator, same seed), with the same optimiser, schedule and step budget:

- ``codebind``: the library's path trainer, [`codebind_hf.training.train_path.train`], on a `datasets.Dataset`
  of raw waveforms + sampling rate, paired images and digit labels (prompts come from the label and templates);
- ``baseline``: hard alignment, ImageBind style: one projection, InfoNCE to both bridges, no codebook;
- the component ablations (paper Table 6), each the path trainer with one of the path's ablation switches
  (``ARM_SWITCHES``; docs/faithfulness.md): ``codebook_only`` (``use_decoupling: false``: no specific heads, so no
  orthogonality, uniformity or reconstruction), ``decoupling_only`` (``use_codebooks: false``: unquantised heads, no
  vq / ctr / cuni / cm) and ``no_reconstruction`` (``use_reconstruction: false``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..configuration_codebind import CodeBindConfig
from ..encoders import precomputed as _precomputed  # noqa: F401  registers model_type "codebind_precomputed"
from ..losses.functional import info_nce
from ..modalities import INPUT_KEYS
from ..modeling_codebind import CodeBindModel
from .data import DIGIT_WORDS, DemoData

PATH = "audio"
BRIDGES = ("text", "vision")
ARMS = ("codebind", "baseline", "codebook_only", "decoupling_only", "no_reconstruction")
ABLATIONS = ("codebook_only", "decoupling_only", "no_reconstruction")
# The arms the path trainer runs, and the path switches each sets (the model's and codebind-train's ablation keys).
ARM_SWITCHES = {
    "codebind": {},
    "codebook_only": {"use_decoupling": False},
    "decoupling_only": {"use_codebooks": False},
    "no_reconstruction": {"use_reconstruction": False},
}


@dataclass
class DemoBudget:
    """Model sizes and training budget of the demo (one place for every knob the run uses).

    The shared and specific spaces are 64 wide, i.e. ``m = 8`` sub-vectors of ``d* = 8``, with the paper's codebook
    sizes (K = 1024 shared, 256 specific). Loss weights are the paper's audio weights (App. Table 1) except:
    ``vq`` 50 -> 5 (with 8-dim codevectors and 64-wide towers, 50 lets commitment outweigh the alignment it
    regularises), ``recon`` 1 -> 10 and ``uni`` 1 -> 2 (the tiny decoder's MSE on normalised log-mels is small next
    to the alignment terms; measured on one seed: voice probe on the specific part 0.37 -> 0.42, zero-shot
    unchanged). Same optimiser, schedule, batches and steps for every arm. ``path_steps`` 500: at 250, hard
    alignment has converged on all the paired clips (zero-shot 0.97) but CodeBind's larger objective has not (0.69
    on seed 0; 0.94 at 500, the same as at 600), so fewer steps would measure the budget, not the method.
    """

    embed_dim: int = 64
    specific_dim: int = 64
    shared_codebook_size: int = 1024
    specific_codebook_size: int = 256
    codevector_dim: int = 8
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    image_patch: int = 4
    audio_patch: int = 8
    decoder_hidden_size: int = 64
    decoder_layers: int = 2
    batch_size: int = 64
    max_grad_norm: float = 1.0
    bridge_steps: int = 300
    path_steps: int = 500
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    temperature: float = 0.07
    bridge_temperature: float = 0.07
    loss_weights: dict = field(
        default_factory=lambda: {"align": 1.0, "recon": 10.0, "vq": 5.0, "ctr": 0.01, "cuni": 0.01, "cm": 1.0, "orth": 0.1, "uni": 2.0}
    )

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_BUDGET = DemoBudget()
QUICK_BUDGET = DemoBudget(bridge_steps=80, path_steps=60, batch_size=48)


# ---------------------------------------------------------------------------------------------- model
def demo_config(data: DemoData, budget: DemoBudget, switches: dict | None = None) -> CodeBindConfig:
    """A tiny CodeBind config: text = lookup of the MiniLM prompt embeddings, image and audio = ViTs.

    ``switches``: the path's ablation keys (``ARM_SWITCHES[arm]``), e.g. ``{"use_decoupling": False}``.
    """
    spec = data.spec
    vit = {
        "model_type": "vit",
        "hidden_size": budget.hidden_size,
        "num_hidden_layers": budget.num_layers,
        "num_attention_heads": budget.num_heads,
        "intermediate_size": 4 * budget.hidden_size,
        "num_channels": 1,
    }
    text_table = {"model_type": "codebind_precomputed", "num_embeddings": len(data.prompts), "hidden_size": data.text_embeddings.shape[1]}
    modalities = {
        "text": {"family": "hf", "backbone": text_table, "pooling": "cls", "has_specific": False},
        "vision": {"family": "hf", "backbone": {**vit, "image_size": spec.image_size, "patch_size": budget.image_patch}},
        "audio": {
            "family": "hf",
            "backbone": {**vit, "image_size": [spec.n_mels, spec.n_frames], "patch_size": budget.audio_patch},
        },
    }
    return CodeBindConfig(
        modalities=modalities,
        bridges=list(BRIDGES),
        paths={PATH: {"bridges": list(BRIDGES), "temperature": budget.temperature, "loss_weights": dict(budget.loss_weights),
                      **(switches or {})}},
        embed_dim=budget.embed_dim,
        specific_dim=budget.specific_dim,
        quantizer={
            "shared_codebook_size": budget.shared_codebook_size,
            "specific_codebook_size": budget.specific_codebook_size,
            "codevector_dim": budget.codevector_dim,
        },
        decoder={"hidden_size": budget.decoder_hidden_size, "num_layers": budget.decoder_layers, "num_heads": budget.num_heads},
    )


def build_model(data: DemoData, budget: DemoBudget, seed: int, switches: dict | None = None) -> CodeBindModel:
    """A freshly initialised demo model (seeded) whose text tower holds the MiniLM prompt embeddings."""
    torch.manual_seed(seed)
    model = CodeBindModel(demo_config(data, budget, switches))
    model.towers["text"].backbone.load_table(data.text_embeddings)
    model.towers["text"].requires_grad_(False)
    return model


def bridge_state(model: CodeBindModel) -> dict[str, torch.Tensor]:
    """The bridge's weights: text and image towers and their shared heads."""
    prefixes = tuple(f"{part}.{m}." for m in BRIDGES for part in ("towers", "shared_heads", "logit_scales"))
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(prefixes)}


def freeze_bridge(model: CodeBindModel) -> None:
    """Freeze the bridge towers and shared heads (specific heads of bridge modalities stay trainable)."""
    for m in BRIDGES:
        model.towers[m].requires_grad_(False).eval()
        model.shared_heads[m].requires_grad_(False)


def arm_model(reference: CodeBindModel, data: DemoData, budget: DemoBudget, arm: str, seed: int) -> CodeBindModel:
    """The starting point of an arm: the reference's initial weights (bridge included) in the arm's architecture
    (an ablation has a part of the reference's modules: it takes their weights, so every arm starts alike)."""
    if arm not in ARMS:
        raise ValueError(f"Unknown arm {arm!r}; expected one of {ARMS}")
    if not ARM_SWITCHES.get(arm):
        model = copy.deepcopy(reference)
    else:
        model = build_model(data, budget, seed, ARM_SWITCHES[arm])
        state = reference.state_dict()
        missing = model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=False).missing_keys
        if missing:
            raise RuntimeError(f"{arm} arm could not take these weights from the reference: {missing}")
    freeze_bridge(model)
    return model


# ---------------------------------------------------------------------------------------------- batches
class BridgeSampler:
    """Seeded stage-0 batches of (image, prompt of the same digit), and same-digit image picks for audio clips.

    Args:
        data ([`DemoData`]): the dataset; training splits are used.
        seed (`int`): the same seed gives the same batches in every arm.
    """

    def __init__(self, data: DemoData, seed: int):
        self.data = data
        self.generator = torch.Generator().manual_seed(seed)
        self.images_by_digit = [torch.nonzero(data.image_train_labels == d).flatten() for d in range(10)]
        self.templates = len(data.spec.templates)

    def same_digit_images(self, digits: torch.Tensor) -> torch.Tensor:
        picks = torch.empty_like(digits)
        for d in digits.unique().tolist():
            rows = torch.nonzero(digits == d).flatten()
            pool = self.images_by_digit[d]
            picks[rows] = pool[torch.randint(len(pool), (len(rows),), generator=self.generator)]
        return picks

    def _prompts(self, digits: torch.Tensor) -> torch.Tensor:
        return digits * self.templates + torch.randint(self.templates, digits.shape, generator=self.generator)

    def bridge_batch(self, batch_size: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Images with prompts of their digit, and the digits (for class-aware InfoNCE targets)."""
        idx = torch.randint(len(self.data.image_train_labels), (batch_size,), generator=self.generator)
        digits = self.data.image_train_labels[idx]
        return {"input_ids": self._prompts(digits)[:, None], "pixel_values": self.data.images_train[idx]}, digits


# ---------------------------------------------------------------------------------------------- losses
def baseline_loss(model: CodeBindModel, batch: dict[str, torch.Tensor], temperature: float) -> tuple[torch.Tensor, dict]:
    """Hard alignment: InfoNCE of the unquantised audio embedding to both (frozen) bridges."""
    audio = model.get_features("audio", batch["audio_values"], quantize=False)
    text = model.get_features("text", batch["input_ids"], quantize=False)
    image = model.get_features("vision", batch["pixel_values"], quantize=False)
    align = info_nce(audio, text, temperature) + info_nce(audio, image, temperature)
    return align, {"align": align.detach()}


# ---------------------------------------------------------------------------------------------- loops
def _optimizer(params: list[torch.nn.Parameter], budget: DemoBudget, steps: int):
    """AdamW (0.9, 0.95) with the path trainer's schedule: linear warm-up, then cosine to lr / 50."""
    from ..training.path_setup import lr_lambda

    optimizer = torch.optim.AdamW(params, lr=budget.lr, betas=(0.9, 0.95), weight_decay=budget.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(budget.warmup_steps, steps, 1 / 50))


def _progress(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(range(total), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)


def train_bridge(model: CodeBindModel, data: DemoData, budget: DemoBudget, seed: int, progress: bool = True) -> list[float]:
    """Stage 0: align the image tower (and the text head) to the frozen MiniLM prompts, then freeze them.

    InfoNCE with class-aware targets (every same-digit pair is a positive), so repeated digits in a batch are
    not pushed apart. Returns the loss of every step.
    """
    model.train()
    modules = [model.towers["vision"], model.shared_heads["vision"], model.shared_heads["text"]]
    params = [p for module in modules for p in module.parameters() if p.requires_grad]
    optimizer, scheduler = _optimizer(params, budget, budget.bridge_steps)
    sampler = BridgeSampler(data, seed + 10_000)
    losses = []
    for _ in (bar := _progress(budget.bridge_steps, f"stage 0 bridge (seed {seed})", progress)):
        batch, digits = sampler.bridge_batch(budget.batch_size)
        image = model.get_features("vision", batch["pixel_values"], quantize=False)
        text = model.get_features("text", batch["input_ids"], quantize=False)
        targets = (digits[:, None] == digits[None, :]).float()
        loss = info_nce(image, text, budget.bridge_temperature, targets=targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    freeze_bridge(model)
    return losses


# ---------------------------------------------------------------------------------------------- stage 1 data
COLUMNS = {"audio": "audio", "vision": "image", "label": "label", "sampling_rate": "sampling_rate"}


def path_dataset(data: DemoData, seed: int, rows=None):
    """The training split as a `datasets.Dataset` in the trainer's schema: ``audio`` (raw waveform as a float
    sequence), ``sampling_rate``, ``image`` (an image of the same digit, seeded pick) and ``label`` (the digit);
    the trainer makes the text side from the label's class name and the prompt templates.

    ``rows`` (*optional*): indices into the training split, in order (a paired subset of the sweep). Images are
    picked for every clip before the subset is taken, so a clip keeps its image in every subset that holds it.
    """
    import datasets
    import numpy as np
    import pyarrow as pa

    digits = data.audio_train_meta[:, 0]
    images = data.images_train[BridgeSampler(data, seed + 20_000).same_digit_images(digits)]
    rows = torch.arange(len(digits)) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    waves, images, digits = data.waves_train[rows].numpy(), images[rows].numpy(), digits[rows].numpy()
    size = data.spec.image_size
    features = datasets.Features({
        "audio": datasets.Sequence(datasets.Value("float32")),
        "sampling_rate": datasets.Value("int32"),
        "image": datasets.Array3D((1, size, size), "float32"),
        "label": datasets.ClassLabel(names=list(DIGIT_WORDS)),
    })  # fmt: skip

    def nested(values: np.ndarray, sizes: list[int]) -> pa.Array:  # arrow lists over one flat buffer, no copy per row
        array = pa.array(values.reshape(-1))
        for width in reversed(sizes):
            array = pa.ListArray.from_arrays(pa.array(np.arange(0, len(array) + 1, width, dtype=np.int32)), array)
        return array

    table = pa.table({
        "audio": nested(waves, [waves.shape[1]]),
        "sampling_rate": pa.array(np.full(len(digits), data.spec.sample_rate, dtype=np.int32)),
        "image": nested(images, [1, size, size]),
        "label": pa.array(digits),
    }).cast(features.arrow_schema)  # fmt: skip
    # Arrow columns built directly: `Dataset.from_dict` encodes 16k-float rows one by one (20x slower).
    # numpy rows: five times faster to fetch than Python lists of 16k floats
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features)).with_format("numpy")


def train_config(data: DemoData, budget: DemoBudget, arm: str, seed: int, base_dir: Path, output_dir: Path,
                 progress: bool = True):
    """The path trainer's configuration of an arm (every arm shares the optimisation settings; an ablation sets its
    path switches)."""
    from ..training.config import TrainConfig

    switches = ARM_SWITCHES[arm]

    return TrainConfig.from_dict({
        "model": {"name_or_path": str(base_dir)},
        "path": {"target": PATH, "bridges": list(BRIDGES), "mode": "fulltune", "temperature": budget.temperature,
                 "loss_weights": dict(budget.loss_weights), "use_codebooks": switches.get("use_codebooks", True),
                 "use_decoupling": switches.get("use_decoupling", True),
                 "reconstruction": switches.get("use_reconstruction", True) and switches.get("use_decoupling", True)},
        "data": {"columns": dict(COLUMNS), "prompt_templates": list(data.spec.templates), "eval_split": None},
        "codebooks": {"kmeans_init": "always", "kmeans_init_batches": 1},
        "training": {"output_dir": str(output_dir), "seed": seed, "per_device_batch_size": budget.batch_size,
                     "max_train_steps": budget.path_steps, "learning_rate": budget.lr, "learning_rate_new": budget.lr,
                     "weight_decay": budget.weight_decay, "warmup_steps": budget.warmup_steps,
                     "max_grad_norm": budget.max_grad_norm, "checkpointing_steps": None, "logging_steps": budget.path_steps,
                     "save_full_model": False, "report_to": "none", "disable_tqdm": not progress},
    })  # fmt: skip


def train_with_path_trainer(model: CodeBindModel, data: DemoData, budget: DemoBudget, arm: str, seed: int,
                            workdir: Path, progress: bool = True, dataset=None,
                            processor=None) -> tuple[CodeBindModel, dict[str, list[float]]]:
    """Stage 1 of a codebook arm through the library's path trainer; returns the trained model and its losses.

    ``dataset`` / ``processor`` default to [`path_dataset`] of the whole split and `DemoProcessor.from_data`."""
    from ..training.train_path import train
    from .processing import DemoProcessor

    base_dir = workdir / f"{arm}-seed{seed}" / "base"
    model.save_pretrained(base_dir, include_decoder=True)
    config = train_config(data, budget, arm, seed, base_dir, workdir / f"{arm}-seed{seed}" / "run", progress)
    # The trainer's INFO lines show only where the caller set up logging (codebind-demo does not).
    dataset = path_dataset(data, seed) if dataset is None else dataset
    result = train(config, dataset=dataset, processor=processor or DemoProcessor.from_data(data))
    return result.model.eval(), {"loss": list(result.losses)}


def _same_batches(model: CodeBindModel, data: DemoData, budget: DemoBudget, seed: int, dataset=None, processor=None):
    """The trainer's row sampler and collator for this seed: the batches the path-trainer arms see."""
    from ..training.batching import BatchSpec, EpochBatchSampler, PathCollator, RowDataset
    from ..training.config import DataArguments
    from ..training.data import class_names, prepare_columns, resolve_columns
    from .processing import DemoProcessor

    dataset = path_dataset(data, seed) if dataset is None else dataset
    args = DataArguments(columns=dict(COLUMNS), prompt_templates=list(data.spec.templates))
    modalities = model.config.path_modalities(PATH)
    columns = resolve_columns(dataset, modalities, args)
    spec = BatchSpec(live=list(modalities), columns=columns, sample_ndims={m: model.towers[m].sample_ndim for m in modalities},
                     templates=tuple(data.spec.templates), class_names=class_names(dataset, columns, args))  # fmt: skip
    sampler = EpochBatchSampler(range(len(dataset)), budget.batch_size, seed)
    collator = PathCollator(spec, processor or DemoProcessor.from_data(data), seed)
    loader = torch.utils.data.DataLoader(RowDataset(prepare_columns(dataset, columns)), batch_sampler=sampler, collate_fn=collator)
    return sampler, collator, loader


def train_with_own_loss(model: CodeBindModel, data: DemoData, budget: DemoBudget, arm: str, seed: int,
                        progress: bool = True, dataset=None, processor=None) -> dict[str, list[float]]:
    """Stage 1 of the hard-alignment baseline: the trainer's batches, optimiser and schedule, its own loss."""
    from ..training.config import PathArguments, TrainingArguments
    from ..training.path_setup import build_optimizer, configure_trainable

    configure_trainable(model, PATH, PathArguments(target=PATH, mode="fulltune"), list(model.config.path_modalities(PATH)))
    model.train()
    freeze_bridge(model)  # after train(): the bridge stays frozen and in eval mode
    args = TrainingArguments(learning_rate=budget.lr, learning_rate_new=budget.lr, weight_decay=budget.weight_decay,
                             warmup_steps=budget.warmup_steps)  # fmt: skip
    optimizer, scheduler = build_optimizer(model, args, budget.path_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    sampler, collator, loader = _same_batches(model, data, budget, seed, dataset, processor)
    history: dict[str, list[float]] = {"loss": []}
    bar = _progress(budget.path_steps, f"stage 1 {arm} (seed {seed})", progress)
    epoch = 0
    while len(history["loss"]) < budget.path_steps:
        sampler.set_epoch(epoch)
        collator.epoch = epoch
        for batch in loader:
            inputs = {INPUT_KEYS[m]: x for m, x in batch["inputs"].items()}
            loss, terms = baseline_loss(model, inputs, budget.temperature)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{arm}: loss became {loss.item()} at step {len(history['loss'])}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, budget.max_grad_norm)
            optimizer.step()
            scheduler.step()
            history["loss"].append(loss.item())
            for name, value in terms.items():
                history.setdefault(name, []).append(float(value))
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if len(history["loss"]) >= budget.path_steps:
                break
        epoch += 1
    bar.close()
    model.eval()
    return history


def train_arm(model: CodeBindModel, data: DemoData, budget: DemoBudget, arm: str, seed: int, workdir: Path,
              progress: bool = True, dataset=None, processor=None) -> tuple[CodeBindModel, dict[str, list[float]]]:
    """Stage 1 of one arm from ``model`` (see the module docstring); returns the trained model and its losses.

    ``dataset`` (*optional*): the rows to train on ([`path_dataset`], default: the whole split); ``processor``
    (*optional*): what turns them into inputs (default `DemoProcessor.from_data(data)`). Every arm reads them
    through the trainer's sampler and collator."""
    if arm not in ARMS:
        raise ValueError(f"Unknown arm {arm!r}; expected one of {ARMS}")
    if arm in ARM_SWITCHES:
        return train_with_path_trainer(model, data, budget, arm, seed, Path(workdir), progress, dataset, processor)
    return model, train_with_own_loss(model, data, budget, arm, seed, progress, dataset, processor)


__all__ = [
    "PATH",
    "BRIDGES",
    "ARMS",
    "ABLATIONS",
    "ARM_SWITCHES",
    "DemoBudget",
    "DEFAULT_BUDGET",
    "QUICK_BUDGET",
    "demo_config",
    "build_model",
    "bridge_state",
    "freeze_bridge",
    "arm_model",
    "BridgeSampler",
    "COLUMNS",
    "path_dataset",
    "train_config",
    "train_with_path_trainer",
    "train_with_own_loss",
    "baseline_loss",
    "train_bridge",
    "train_arm",
]
