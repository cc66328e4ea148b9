"""Model cards for full CodeBind models and modality paths (Jinja templates + `huggingface_hub.ModelCard`).

Evaluation results are read from the benchmark runner's JSON, ``{"results": {benchmark: {metric: value}}}``
(other keys are ignored; non-numeric values are skipped), and written both as a table and as
``model-index`` metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATES = Path(__file__).parent / "data" / "model_cards"
IMAGEBIND_LICENSE = "cc-by-nc-sa-4.0"
LICENSE_TEXT = {
    IMAGEBIND_LICENSE: "CC BY-NC-SA 4.0 — the weights derive from ImageBind (Meta), released under that licence.",
    "apache-2.0": "Apache-2.0.",
}


def read_eval_results(results: dict | str | Path | None) -> dict[str, dict[str, float]]:
    if results is None:
        return {}
    if not isinstance(results, dict):
        results = json.loads(Path(results).read_text())
    table = results.get("results", results)
    return {
        bench: {m: float(v) for m, v in metrics.items() if isinstance(v, (int, float))}
        for bench, metrics in table.items()
        if isinstance(metrics, dict)
    }


def _eval_entries(model_name: str, results: dict[str, dict[str, float]]) -> list[EvalResult]:
    return [
        EvalResult(task_type="zero-shot-classification", dataset_type=bench, dataset_name=bench, metric_type=metric,
                   metric_value=value, task_name=model_name)
        for bench, metrics in results.items()
        for metric, value in metrics.items()
    ]


def _table(results: dict[str, dict[str, float]]) -> str:
    return "\n".join(f"| {b} | {m} | {v:.4g} |" for b, metrics in results.items() for m, v in metrics.items())


def _card(template: str, data: ModelCardData, **values) -> ModelCard:
    return ModelCard.from_template(data, template_path=TEMPLATES / template, **values)


def render_path_card(path_config: dict, repo_id: str | None = None, results=None, training_data: str = "not recorded",
                     license: str = IMAGEBIND_LICENSE) -> str:
    """README.md for a path artifact from its ``path_config.json`` contents."""
    modality = path_config["modality"]
    base = path_config["base_model"]["name_or_path"] or "<base model>"
    evals = read_eval_results(results)
    data = ModelCardData(
        library_name="codebind_hf", license=license, base_model=base if "/" in base else None,
        tags=["codebind", "multimodal", "modality-path", modality],
        model_name=repo_id or f"codebind-{modality}-path", eval_results=_eval_entries(repo_id or modality, evals) or None,
    )
    lora = path_config.get("lora")
    shapes = path_config["shapes"]
    card = _card(
        "path_card.md.j2", data, modality=modality, bridges=", ".join(path_config["path"]["bridges"]), base_model=base,
        fingerprint=path_config["base_model"]["fingerprint"][:16], repo_id=repo_id or "<this repo>",
        lora_text=f"rank {lora['r']} on the last {lora['last_n_blocks']} blocks" if lora else "none",
        num_tensors=len(shapes), num_parameters=f"{sum(int(__import__('math').prod(s)) for s in shapes.values()):,}",
        mode=path_config["path"]["mode"], temperature=path_config["path"]["temperature"],
        loss_weights=path_config["path"]["loss_weights"], training_data=training_data,
        eval_table=_table(evals), license_text=LICENSE_TEXT.get(license, license),
    )
    return str(card)


def render_base_card(config, repo_id: str | None = None, results=None, training_data: str = "not recorded",
                     license: str = IMAGEBIND_LICENSE) -> str:
    """README.md for a full model from its `CodeBindConfig`."""
    evals = read_eval_results(results)
    name = repo_id or "codebind-model"
    data = ModelCardData(
        library_name="codebind_hf", license=license, tags=["codebind", "multimodal", *sorted(config.modalities)],
        model_name=name, eval_results=_eval_entries(name, evals) or None,
    )
    quantizer = config.quantizer_config
    card = _card(
        "base_card.md.j2", data, title=name, modalities=", ".join(sorted(config.modalities)),
        bridges=", ".join(config.bridges), paths=", ".join(sorted(config.paths)) or "none", embed_dim=config.embed_dim,
        specific_dim=config.specific_dim, shared_k=quantizer.shared_codebook_size, specific_k=quantizer.specific_codebook_size,
        codevector_dim=quantizer.codevector_dim, repo_id=name, training_data=training_data, eval_table=_table(evals),
        license_text=LICENSE_TEXT.get(license, license),
    )
    return str(card)


__all__ = ["render_path_card", "render_base_card", "read_eval_results", "IMAGEBIND_LICENSE"]
