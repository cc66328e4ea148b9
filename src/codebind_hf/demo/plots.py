"""The demo's figures (matplotlib, Agg backend): t-SNE of shared embeddings, codebook usage, probe accuracies,
training losses. Every function writes one PNG atomically and returns its path."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from ..adapters.io import write_file_atomically
from .evaluate import ArmEmbeddings
from .sweep import sweep_entry

ARM_LABELS = {
    "baseline": "hard alignment (baseline)",
    "codebind": "CodeBind",
    "codebook_only": "codebook, no decoupling",
    "decoupling_only": "decoupling, no codebook",
    "no_reconstruction": "no reconstruction",
}
MODALITY_COLORS = {"audio": "tab:red", "image": "tab:blue", "text": "black"}


def _subplots(*args, **kwargs):
    """``plt.subplots`` without pyplot: a bare `Figure` draws off-screen and leaves the process's backend alone."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(*args, **kwargs)


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, bbox_inches="tight", format="png")
    return write_file_atomically(path, buffer.getvalue())


def plot_tsne(
    embeddings: dict[str, ArmEmbeddings],
    audio_labels: torch.Tensor,
    image_labels: torch.Tensor,
    prompt_labels: torch.Tensor,
    path: str | os.PathLike,
    seed: int = 0,
    title: str = "Shared embeddings (t-SNE): held-out voices, held-out images, class prompts",
) -> Path:
    """t-SNE of the shared embeddings of test audio, test images and prompts, one column per arm.

    Top row coloured by modality (a well-aligned space mixes them), bottom row by digit.
    """
    from sklearn.manifold import TSNE

    arms = list(embeddings)
    fig, axes = _subplots(2, len(arms), figsize=(5.2 * len(arms), 9.5), squeeze=False)
    for col, arm in enumerate(arms):
        emb = embeddings[arm]
        points = torch.cat([emb.audio_shared, emb.image_shared, emb.text_shared]).double().numpy()
        perplexity = min(30.0, (len(points) - 1) / 3)
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
        n_a, n_i = len(emb.audio_shared), len(emb.image_shared)
        groups = {"audio": slice(0, n_a), "image": slice(n_a, n_a + n_i), "text": slice(n_a + n_i, None)}
        labels = torch.cat([audio_labels, image_labels, prompt_labels]).numpy()
        for name, rows in groups.items():
            axes[0, col].scatter(*xy[rows].T, s=18 if name == "text" else 6, c=MODALITY_COLORS[name], alpha=0.9 if name == "text" else 0.5,
                                 marker="*" if name == "text" else "o", label=name)  # fmt: skip
        scatter = axes[1, col].scatter(*xy.T, s=6, c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, alpha=0.7)
        axes[0, col].set_title(f"{ARM_LABELS.get(arm, arm)}: by modality")
        axes[1, col].set_title(f"{ARM_LABELS.get(arm, arm)}: by digit")
        for ax in axes[:, col]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].legend(loc="best", markerscale=2)
    fig.colorbar(scatter, ax=axes[1, :].tolist(), ticks=range(10), label="digit", shrink=0.8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_codebook_usage(stats: dict[str, dict], path: str | os.PathLike) -> Path:
    """Per codebook, how often each code is used on the evaluation data (codes sorted by count); ``stats`` is
    `codebook_stats` output (`codebind_hf.demo.evaluate`)."""
    fig, axes = _subplots(1, len(stats), figsize=(4.8 * len(stats), 3.6), squeeze=False)
    for ax, (name, book) in zip(axes[0], stats.items()):
        ax.bar(np.arange(book["size"]), np.sort(book["counts"].numpy())[::-1], width=1.0, color="tab:purple")
        ax.set_title(f"{name} (K={book['size']}): {book['usage']:.0%} used, perplexity {book['perplexity']:.0f}", fontsize=9)
        ax.set_xlabel("code (sorted by use)")
        ax.set_ylabel("assignments")
    fig.suptitle("CodeBind codebook usage on the evaluation data (all tokens)")
    return _save(fig, path)


def plot_probes(results: dict, arms: list[str], path: str | os.PathLike, attributes=("voice", "speed", "pitch")) -> Path:
    """Linear-probe accuracy (mean ± std over seeds) per attribute, arm and embedding part; hatched bars are the
    codebook arms' embeddings before the codebooks (``get_features(..., quantize=False)``)."""
    colors = {"shared": "tab:blue", "specific": "tab:orange", "concat": "tab:green"}
    fig, axes = _subplots(1, len(attributes), figsize=(5.2 * len(attributes), 4.0), squeeze=False)
    for ax, attribute in zip(axes[0], attributes):
        bars = []
        for arm in arms:
            for part in ("shared", "specific", "concat"):
                for suffix in ("", "_prequant"):
                    entry = results[arm].get(f"probe_{attribute}_{part}{suffix}")
                    if entry is not None and entry["mean"] is not None:
                        bars.append((arm, part, suffix, entry))
        for i, (arm, part, suffix, entry) in enumerate(bars):
            ax.bar(i, entry["mean"], yerr=entry["std"], color=colors[part], alpha=0.5 if arm == "baseline" else 0.9,
                   hatch="//" if suffix else None, edgecolor="black" if suffix else None, capsize=3)  # fmt: skip
        ax.set_xticks(range(len(bars)))
        ax.set_xticklabels([f"{arm}\n{part}{' (pre-VQ)' if suffix else ''}" for arm, part, suffix, _ in bars], rotation=70, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"{attribute} probe accuracy")
    fig.suptitle("What the audio embeddings keep of voice, speed and pitch (held-out voices, 5-fold CV)")
    return _save(fig, path)


SWEEP_PANELS = (
    ("zero_shot_acc", "zero-shot digit accuracy"),
    ("probe_voice_specific", "voice probe, specific part"),
    ("probe_speed_specific", "speed probe, specific part"),
)


def plot_sweep(sweep: dict, arms: list[str], path: str | os.PathLike, panels=SWEEP_PANELS) -> Path:
    """Metrics against the paired fraction (log axis), one line per arm with error bars (std over seeds); a row per
    condition of ``sweep`` (``{condition: {fraction: {arm: {metric: {"mean", "std"}}}}}``), a column per metric.

    For a specific-part probe, an arm without a specific part shows its one embedding's probe (dotted), and the
    codebook arms also show their specific part before the codebook (dashed).
    """
    conditions = list(sweep)
    fig, axes = _subplots(len(conditions), len(panels), figsize=(4.6 * len(panels), 3.4 * len(conditions) + 0.8), squeeze=False)
    fig.set_layout_engine("constrained")  # room for the figure legend below the panels
    colors = {"codebind": "tab:red", "baseline": "tab:blue", "codebook_only": "tab:green", "decoupling_only": "tab:purple",
              "no_reconstruction": "tab:orange"}

    def series(condition, fractions, arm, metric, fallback: bool):
        get = sweep_entry if fallback else (lambda results, name: results.get(name, {"mean": None}))
        entries = [get(sweep[condition][f].get(arm, {}), metric) for f in fractions]
        return None if any(e.get("mean") is None for e in entries) else entries

    for row, condition in enumerate(conditions):
        fractions = sorted(sweep[condition], key=float)
        x = np.array([float(f) for f in fractions])
        for col, (metric, title) in enumerate(panels):
            ax = axes[row, col]
            for arm in arms:
                label = ARM_LABELS.get(arm, arm)
                specific = metric.startswith("probe_") and metric.endswith("_specific")
                own = series(condition, fractions, arm, metric, fallback=False)
                lines = [(own, "-", label)] if own else [(series(condition, fractions, arm, metric, True), ":", f"{label} (its one embedding)")]
                if specific:
                    lines.append((series(condition, fractions, arm, f"{metric}_prequant", False), "--", f"{label}, before the codebook"))
                for entries, style, name in lines:
                    if entries is not None:
                        ax.errorbar(x, [e["mean"] for e in entries], yerr=[e["std"] for e in entries], capsize=3, marker="o",
                                    ms=4, color=colors.get(arm), linestyle=style, label=name)  # fmt: skip
            ax.set_xscale("log")
            ax.set_xticks(x, [f"{v:.0%}" for v in x])
            ax.minorticks_off()
            ax.set_ylim(0, 1)
            ax.set_title(f"{condition}: {title}", fontsize=9)
            ax.set_xlabel("paired training clips (fraction)")
    handles, labels = axes[0, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8)
    fig.suptitle("CodeBind vs hard alignment as paired data gets scarce (held-out voices; mean ± std over seeds)")
    return _save(fig, path)


def plot_losses(histories: dict[str, dict[str, list[float]]], path: str | os.PathLike, window: int = 20) -> Path:
    """Training loss per arm (moving average over ``window`` steps)."""
    fig, ax = _subplots(figsize=(6, 3.6))
    for arm, history in histories.items():
        loss = np.asarray(history["loss"])
        w = max(1, min(window, len(loss) // 5))
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(len(smooth)) + w - 1, smooth, label=ARM_LABELS.get(arm, arm))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (arm's own objective)")
    ax.legend(fontsize=8)
    return _save(fig, path)


__all__ = ["ARM_LABELS", "SWEEP_PANELS", "plot_tsne", "plot_codebook_usage", "plot_probes", "plot_sweep", "plot_losses"]
