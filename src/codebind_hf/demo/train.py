"""The demo's two training stages and its arms, on in-memory tensors.

Stage 0 (the bridge): a small ViT image tower is aligned to frozen MiniLM prompt embeddings with a
CLIP-style InfoNCE (the text tower is a lookup of those embeddings, the text head is trained with the
image side), then every bridge weight is frozen.

Stage 1 (the audio path), one arm each, same initial weights, batches and optimiser budget:

- ``codebind``: the library's path loss (``model(..., return_loss=True, path="audio")``) with the codebook
  life cycle (k-means init, EMA update, dead-code re-init) run by [`CodebookLifecycle`];
- ``baseline``: hard alignment, ImageBind style: one projection, InfoNCE to both bridges, no codebook;
- ``codebook_only`` (ablation): the path loss of a model without specific heads (no decoupling);
- ``decoupling_only`` (ablation): shared/specific heads, orthogonality, uniformity and reconstruction,
  without any codebook.

TODO: `codebind_hf.training` (train_path.py, written in parallel) will own the codebook life cycle and a
training loop; switch [`CodebookLifecycle`] and [`train_arm`] to it once it exposes a reusable function.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ..configuration_codebind import CodeBindConfig
from ..encoders import mlp as _precomputed  # noqa: F401  registers model_type "codebind_precomputed"
from ..losses import info_nce, orthogonality, reconstruction, uniformity
from ..modeling_codebind import CodeBindModel
from ..path_loss import alignment_pairs
from ..quantization import CompositionalQuantizer
from .data import DemoData

PATH = "audio"
BRIDGES = ("text", "vision")
ARMS = ("codebind", "baseline", "codebook_only", "decoupling_only")
ABLATIONS = ("codebook_only", "decoupling_only")


@dataclass
class DemoBudget:
    """Model sizes and training budget of the demo (one place for every knob the run uses).

    The shared space is ``embed_dim = 64`` wide, i.e. ``m = 8`` sub-vectors of ``d* = 8``; with 10 classes and a
    few thousand training vectors, K = 64 shared and 32 specific codes are enough (capacity ``64^8``) and small
    enough that every code gets used. Loss weights are the paper's audio weights (App. Table 1) except the
    commitment weight ``vq``, lowered from 50 to 5: with 8-dim codevectors and 64-wide towers, 50 lets the
    commitment term outweigh the alignment it regularises.
    """

    embed_dim: int = 64
    shared_codebook_size: int = 64
    specific_codebook_size: int = 32
    codevector_dim: int = 8
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    image_patch: int = 4
    audio_patch: int = 8
    decoder_hidden_size: int = 64
    decoder_layers: int = 2
    batch_size: int = 64
    bridge_steps: int = 300
    path_steps: int = 400
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    temperature: float = 0.07
    bridge_temperature: float = 0.07
    loss_weights: dict = field(
        default_factory=lambda: {"align": 1.0, "recon": 1.0, "vq": 5.0, "ctr": 0.01, "cuni": 0.01, "cm": 1.0, "orth": 0.1, "uni": 1.0}
    )

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_BUDGET = DemoBudget()
QUICK_BUDGET = DemoBudget(bridge_steps=80, path_steps=60, batch_size=48)


# ---------------------------------------------------------------------------------------------- model
def demo_config(data: DemoData, budget: DemoBudget, decoupled: bool = True) -> CodeBindConfig:
    """A tiny CodeBind config: text = lookup of the MiniLM prompt embeddings, image and audio = ViTs.

    ``decoupled=False`` gives the "codebook without decoupling" ablation: no specific heads, hence no
    specific codebooks, no reconstruction, orthogonality or uniformity.
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
        "vision": {"family": "hf", "backbone": {**vit, "image_size": spec.image_size, "patch_size": budget.image_patch}, "has_specific": decoupled},
        "audio": {
            "family": "hf",
            "backbone": {**vit, "image_size": [spec.n_mels, spec.n_frames], "patch_size": budget.audio_patch},
            "has_specific": decoupled,
        },
    }
    return CodeBindConfig(
        modalities=modalities,
        bridges=list(BRIDGES),
        paths={PATH: {"bridges": list(BRIDGES), "temperature": budget.temperature, "loss_weights": dict(budget.loss_weights)}},
        embed_dim=budget.embed_dim,
        specific_dim=budget.embed_dim,
        quantizer={
            "shared_codebook_size": budget.shared_codebook_size,
            "specific_codebook_size": budget.specific_codebook_size,
            "codevector_dim": budget.codevector_dim,
        },
        decoder={"hidden_size": budget.decoder_hidden_size, "num_layers": budget.decoder_layers, "num_heads": budget.num_heads},
    )


def build_model(data: DemoData, budget: DemoBudget, seed: int, decoupled: bool = True) -> CodeBindModel:
    """A freshly initialised demo model (seeded) whose text tower holds the MiniLM prompt embeddings."""
    torch.manual_seed(seed)
    model = CodeBindModel(demo_config(data, budget, decoupled))
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
    """The starting point of an arm: the reference's initial weights (bridge included) in the arm's architecture."""
    if arm not in ARMS:
        raise ValueError(f"Unknown arm {arm!r}; expected one of {ARMS}")
    if arm != "codebook_only":
        model = copy.deepcopy(reference)
    else:
        model = build_model(data, budget, seed, decoupled=False)
        state = reference.state_dict()
        missing = model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=False).missing_keys
        if missing:
            raise RuntimeError(f"codebook_only arm could not take these weights from the reference: {missing}")
    freeze_bridge(model)
    return model


# ---------------------------------------------------------------------------------------------- batches
class PairSampler:
    """Seeded batches of (audio clip, image of the same digit, prompt of the same digit).

    Args:
        data ([`DemoData`]): the dataset; training splits are used.
        seed (`int`): the same seed gives the same batches in every arm.
    """

    def __init__(self, data: DemoData, seed: int):
        self.data = data
        self.generator = torch.Generator().manual_seed(seed)
        self.audio_digits = data.audio_train_meta[:, 0]
        self.images_by_digit = [torch.nonzero(data.image_train_labels == d).flatten() for d in range(10)]
        self.templates = len(data.spec.templates)

    def _same_digit_images(self, digits: torch.Tensor) -> torch.Tensor:
        picks = torch.empty_like(digits)
        for d in digits.unique().tolist():
            rows = torch.nonzero(digits == d).flatten()
            pool = self.images_by_digit[d]
            picks[rows] = pool[torch.randint(len(pool), (len(rows),), generator=self.generator)]
        return picks

    def _prompts(self, digits: torch.Tensor) -> torch.Tensor:
        return digits * self.templates + torch.randint(self.templates, digits.shape, generator=self.generator)

    def path_batch(self, batch_size: int) -> dict[str, torch.Tensor]:
        """``input_ids`` `(B, 1)` prompt ids, ``pixel_values`` `(B, 1, s, s)`, ``audio_values`` `(B, 1, mels, frames)`."""
        idx = torch.randint(len(self.audio_digits), (batch_size,), generator=self.generator)
        digits = self.audio_digits[idx]
        return {
            "input_ids": self._prompts(digits)[:, None],
            "pixel_values": self.data.images_train[self._same_digit_images(digits)],
            "audio_values": self.data.audio_train[idx],
        }

    def bridge_batch(self, batch_size: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Images with prompts of their digit, and the digits (for class-aware InfoNCE targets)."""
        idx = torch.randint(len(self.data.image_train_labels), (batch_size,), generator=self.generator)
        digits = self.data.image_train_labels[idx]
        return {"input_ids": self._prompts(digits)[:, None], "pixel_values": self.data.images_train[idx]}, digits


# ---------------------------------------------------------------------------------------------- codebooks
class CodebookLifecycle:
    """k-means init, then after every optimiser step an EMA update and a dead-code re-init of each codebook.

    Forward hooks record every codebook's inputs (the pre-quantisation head outputs, pooled and token) and
    indices during the step's forward; :meth:`step` feeds them to ``update_ema_`` and ``reinit_dead_codes_``.
    """

    def __init__(self, model: CodeBindModel, path: str = PATH):
        self.model, self.path = model, path
        self.books: dict[str, CompositionalQuantizer] = model.quantizers[path].codebooks()
        self.seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in self.books}
        self.handles = [book.register_forward_hook(self._recorder(name)) for name, book in self.books.items()]

    def _recorder(self, name: str):
        def hook(module, args, output):
            if module.training:
                z = args[0].detach()
                self.seen[name].append((z.reshape(-1, z.shape[-1]), output.indices.reshape(-1, output.indices.shape[-1])))

        return hook

    @torch.no_grad()
    def kmeans_init(self, batch: dict[str, torch.Tensor]) -> None:
        """Shared codebook on the text shared-head sub-vectors, specific ones on their modality's (all tokens)."""
        model = self.model
        text = model.towers["text"](batch["input_ids"]).last_hidden_state
        self.books["shared"].kmeans_init_(model.shared_heads["text"](text).flatten(0, 1))
        keys = {"vision": "pixel_values", "audio": "audio_values"}
        for modality, book in model.quantizers[self.path].specific.items():
            hidden = model.towers[modality](batch[keys[modality]]).last_hidden_state
            book.kmeans_init_(model.specific_heads[self.path][modality](hidden).flatten(0, 1))

    @torch.no_grad()
    def step(self) -> None:
        for name, book in self.books.items():
            if self.seen[name]:
                z = torch.cat([s[0] for s in self.seen[name]])
                indices = torch.cat([s[1] for s in self.seen[name]])
                book.update_ema_(z, indices)
                book.reinit_dead_codes_(z)
            self.seen[name].clear()

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------- losses
def baseline_loss(model: CodeBindModel, batch: dict[str, torch.Tensor], temperature: float) -> tuple[torch.Tensor, dict]:
    """Hard alignment: InfoNCE of the unquantised audio embedding to both (frozen) bridges."""
    audio = model.get_features("audio", batch["audio_values"], quantize=False)
    text = model.get_features("text", batch["input_ids"], quantize=False)
    image = model.get_features("vision", batch["pixel_values"], quantize=False)
    align = info_nce(audio, text, temperature) + info_nce(audio, image, temperature)
    return align, {"align": align.detach()}


def _unquantised_parts(model: CodeBindModel, modality: str, inputs: torch.Tensor):
    """Unit pooled shared/specific embeddings and unit patch tokens of both heads."""
    hidden = model.towers[modality](inputs).last_hidden_state
    shared = F.normalize(model.shared_heads[modality](hidden), dim=-1)
    if not model.config.has_specific(modality):
        return shared[:, 0], None, None, None
    specific = F.normalize(model.specific_heads[PATH][modality](hidden), dim=-1)
    return shared[:, 0], specific[:, 0], shared[:, 1:], specific[:, 1:]


def decoupling_loss(model: CodeBindModel, batch: dict[str, torch.Tensor], budget: DemoBudget) -> tuple[torch.Tensor, dict]:
    """Ablation "decoupling without codebook": the path loss's align, orth, uni and recon terms, unquantised."""
    keys = {"text": "input_ids", "vision": "pixel_values", "audio": "audio_values"}
    parts = {m: _unquantised_parts(model, m, batch[k]) for m, k in keys.items()}
    pairs = alignment_pairs(PATH, list(BRIDGES))
    losses = {"align": torch.stack([info_nce(parts[a][0], parts[b][0], budget.temperature) for a, b in pairs]).sum()}
    decoupled = [m for m in ("vision", "audio") if parts[m][1] is not None]
    losses["orth"] = torch.stack([orthogonality(parts[m][0], parts[m][1]) for m in decoupled]).mean()
    losses["uni"] = torch.stack([uniformity(parts[m][1]) for m in decoupled]).mean()
    recon = []
    for m in decoupled:
        pred = model.decoder(m, torch.cat([parts[m][2], parts[m][3]], dim=-1))
        recon.append(reconstruction(pred, model.towers[m].patchify(batch[keys[m]])))
    losses["recon"] = torch.stack(recon).mean()
    total = sum(budget.loss_weights.get(name, 0.0) * value for name, value in losses.items())
    return total, {k: v.detach() for k, v in losses.items()}


# ---------------------------------------------------------------------------------------------- loops
def _optimizer(params: list[torch.nn.Parameter], budget: DemoBudget, steps: int):
    optimizer = torch.optim.AdamW(params, lr=budget.lr, betas=(0.9, 0.95), weight_decay=budget.weight_decay)

    def schedule(step: int) -> float:  # linear warm-up, then cosine to lr / 50 (the paper's schedule)
        if step < budget.warmup_steps:
            return (step + 1) / budget.warmup_steps
        progress = (step - budget.warmup_steps) / max(1, steps - budget.warmup_steps)
        return 1 / 50 + (1 - 1 / 50) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


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
    sampler = PairSampler(data, seed + 10_000)
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


def train_arm(
    model: CodeBindModel, data: DemoData, budget: DemoBudget, arm: str, seed: int, progress: bool = True
) -> dict[str, list[float]]:
    """Stage 1 for one arm; returns the total loss and each loss term per step."""
    if arm not in ARMS:
        raise ValueError(f"Unknown arm {arm!r}; expected one of {ARMS}")
    model.train()
    freeze_bridge(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = _optimizer(params, budget, budget.path_steps)
    sampler = PairSampler(data, seed)  # same seed, same batches in every arm
    uses_codebooks = arm in ("codebind", "codebook_only")
    lifecycle = CodebookLifecycle(model) if uses_codebooks else None
    history: dict[str, list[float]] = {"loss": []}
    try:
        for step in (bar := _progress(budget.path_steps, f"stage 1 {arm} (seed {seed})", progress)):
            batch = sampler.path_batch(budget.batch_size)
            if uses_codebooks:
                if step == 0:
                    lifecycle.kmeans_init(batch)
                out = model(return_loss=True, path=PATH, **batch)
                loss, terms = out.loss, out.loss_breakdown
            elif arm == "baseline":
                loss, terms = baseline_loss(model, batch, budget.temperature)
            else:
                loss, terms = decoupling_loss(model, batch, budget)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{arm}: loss became {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if lifecycle is not None:
                lifecycle.step()
            history["loss"].append(loss.item())
            for name, value in terms.items():
                history.setdefault(name, []).append(float(value))
            bar.set_postfix(loss=f"{loss.item():.3f}")
    finally:
        if lifecycle is not None:
            lifecycle.close()
    model.eval()
    return history


__all__ = [
    "PATH",
    "BRIDGES",
    "ARMS",
    "ABLATIONS",
    "DemoBudget",
    "DEFAULT_BUDGET",
    "QUICK_BUDGET",
    "demo_config",
    "build_model",
    "bridge_state",
    "freeze_bridge",
    "arm_model",
    "PairSampler",
    "CodebookLifecycle",
    "baseline_loss",
    "decoupling_loss",
    "train_bridge",
    "train_arm",
]
