"""Model cards for full CodeBind models and modality paths: Jinja templates rendered with `huggingface_hub.ModelCard`.

The templates ship inside the package (``codebind_hf/data/model_cards/base_card.md.j2`` and ``path_card.md.j2``).
Cards carry ``library_name: codebind_hf``, the licence (CC BY-NC-SA 4.0 by default: weights derived from
ImageBind inherit it), tags, the base model when it is a Hub repo, training datasets when given as Hub ids, and
evaluation results both as a table and as ``model-index`` metadata.

Evaluation results come from the benchmark runner's JSON; `read_eval_results` documents what it accepts.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from ..encoders.pretrained import checkpoint_source
from ..version import __version__
from .fingerprint import short_fingerprint

TEMPLATES = Path(__file__).parent.parent / "data" / "model_cards"
IMAGEBIND_LICENSE = "cc-by-nc-sa-4.0"
LICENSE_TEXT = {
    IMAGEBIND_LICENSE: (
        "CC BY-NC-SA 4.0 (non-commercial, share-alike): the weights derive from ImageBind (Meta AI), released "
        "under that licence, and so does anything trained on top of them. The `codebind_hf` code is Apache-2.0."
    ),
    "apache-2.0": "Apache-2.0.",
    "mit": "MIT.",
}
DEFAULT_TASK = "zero-shot-classification"


# ---------------------------------------------------------------------------- evaluation results
def read_eval_results(results: dict | str | os.PathLike | None) -> list[EvalResult]:
    """Evaluation results from the benchmark runner's JSON, read tolerantly.

    Accepted input:

    - ``None``: no results; a `str`/`os.PathLike`: a JSON file (a missing file or invalid JSON is an error naming
      the file); a `dict`: the parsed JSON.
    - The expected layout is ``{"results": {benchmark: {metric: value}}, ...}``. Optional top-level maps
      ``"tasks": {benchmark: task_type}`` (default ``"zero-shot-classification"``) and
      ``"datasets": {benchmark: hub_dataset_id}`` (default: the benchmark name) refine the ``model-index``;
      any other top-level key (model name, date, settings) is ignored. A dict without ``"results"`` is read as
      the ``{benchmark: {metric: value}}`` table itself.
    - A metric value is a number, or a dict with a numeric ``"value"`` (e.g. ``{"value": 0.61, "stderr": 0.01}``);
      other dicts are flattened (``{"retrieval": {"R@1": 0.3}}`` -> metric ``"retrieval/R@1"``). Booleans,
      strings, ``None``, NaN and infinities are skipped, and so are benchmarks whose entry is not a dict.

    Returns:
        `list[huggingface_hub.EvalResult]`: one entry per (benchmark, metric), in the input's order.

    Example:

    ```python
    >>> rows = read_eval_results({"results": {"ESC-50": {"top1": 0.66, "note": "n/a"}}, "model": "x"})
    >>> [(r.dataset_name, r.metric_type, r.metric_value, r.task_type) for r in rows]
    [('ESC-50', 'top1', 0.66, 'zero-shot-classification')]

    ```
    """
    if results is None:
        return []
    if isinstance(results, (str, os.PathLike)):
        file = Path(results)
        if not file.is_file():
            raise FileNotFoundError(f"Evaluation results file {file} not found")
        try:
            results = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"Evaluation results file {file} is not valid JSON: {err}") from err
    if not isinstance(results, dict):
        raise TypeError(f"Evaluation results must be a dict or a JSON file path, got {type(results).__name__}")
    table = results.get("results", results)
    tasks = results.get("tasks") if isinstance(results.get("tasks"), dict) else {}
    datasets = results.get("datasets") if isinstance(results.get("datasets"), dict) else {}
    if not isinstance(table, dict):
        return []
    rows = []
    for benchmark, metrics in table.items():
        if not isinstance(metrics, dict):
            continue
        for metric, value in _flat_metrics(metrics):
            rows.append(EvalResult(
                task_type=str(tasks.get(benchmark, DEFAULT_TASK)), dataset_type=str(datasets.get(benchmark, benchmark)),
                dataset_name=str(benchmark), metric_type=metric, metric_name=metric, metric_value=value,
            ))
    return rows


def _flat_metrics(metrics: dict, prefix: str = "") -> list[tuple[str, float]]:
    out = []
    for name, value in metrics.items():
        if isinstance(value, dict) and _number(value.get("value")) is not None:
            value = value["value"]
        if isinstance(value, dict):
            out += _flat_metrics(value, f"{prefix}{name}/")
        elif _number(value) is not None:
            out.append((f"{prefix}{name}", _number(value)))
    return out


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _eval_table(rows: list[EvalResult]) -> str:
    return "\n".join(f"| {r.dataset_name} | {r.metric_type} | {r.metric_value:.4g} |" for r in rows)


# ---------------------------------------------------------------------------- helpers
def hub_repo_id(name: str | os.PathLike | None) -> str | None:
    """``name`` if it is a Hub repo id (``"org/name"``, not a local path), else None."""
    if not name:
        return None
    name = str(name)
    if name.count("/") != 1 or name.startswith((".", "~", "/")) or os.path.exists(name):
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _training_data(training_data: str | list[str] | None) -> tuple[str, list[str] | None]:
    """(text for the card, Hub dataset ids for the metadata)."""
    if training_data is None:
        return "Not recorded for this upload.", None
    if isinstance(training_data, str):
        return training_data, None
    ids = [str(d) for d in training_data]
    return "\n".join(f"- [`{d}`](https://huggingface.co/datasets/{d})" for d in ids), ids


def pretrained_towers(config) -> list[dict]:
    """The towers of ``config`` that come from a transformers checkpoint: ``modality``, ``pretrained`` (Hub id or
    folder), ``revision`` (as asked), ``commit`` (resolved, for a Hub checkpoint) and ``text`` (what the card shows)."""
    towers = []
    for modality, spec in (config.to_dict().get("modalities") or {}).items():
        source = checkpoint_source(spec) if spec.get("family") == "hf" else None
        if source is None:
            continue
        pinned = [f"{what} `{source[what]}`" for what in ("revision", "commit") if source.get(what)]
        text = f"`{source['pretrained']}`" + (f" ({', '.join(pinned)})" if pinned else "")
        towers.append({"modality": modality, **source, "text": text})
    return towers


def _render(template: str, data: ModelCardData, **values) -> str:
    return str(ModelCard.from_template(data, template_path=str(TEMPLATES / template), **values))


# ---------------------------------------------------------------------------- cards
def render_path_card(
    path_config: dict,
    repo_id: str | None = None,
    training_data: str | list[str] | None = None,
    results: dict | str | os.PathLike | None = None,
    license: str | None = None,
) -> str:
    """``README.md`` of a modality path, from its ``path_config.json`` contents.

    Args:
        path_config (`dict`): what `ModalityPathMixin.path_config_dict` returns.
        repo_id (`str`, *optional*): the path's Hub repo (for the title and the loading snippet).
        training_data (`str` or `list[str]`, *optional*): free text, or Hub dataset ids (also put in the metadata).
        results (`dict`, `str` or `os.PathLike`, *optional*): benchmark results, see `read_eval_results`.
        license (`str`, *optional*, defaults to ``"cc-by-nc-sa-4.0"``): a Hub licence id.

    Returns:
        `str`: the card, YAML metadata included.
    """
    license = license or IMAGEBIND_LICENSE
    modality = path_config["modality"]
    path = path_config["path"]
    base = path_config["base_model"]
    base_name = base.get("name_or_path") or "<base model>"
    name = repo_id or f"codebind-{modality}-path"
    rows = read_eval_results(results)
    for row in rows:
        row.task_name = row.task_name or f"{modality} {row.task_type}"
    data_text, dataset_ids = _training_data(training_data)
    lora = path_config.get("lora")
    tags = ["codebind", "multimodal", "modality-path", modality, *(["lora", "peft"] if lora else [])]
    data = ModelCardData(
        library_name="codebind_hf", license=license, base_model=hub_repo_id(base_name), tags=tags,
        pipeline_tag="feature-extraction", datasets=dataset_ids, model_name=name, eval_results=rows or None,
    )
    num_values = sum(math.prod(shape) for shape in path_config["shapes"].values())
    quantizer = path_config["quantizer"]
    return _render(
        "path_card.md.j2", data,
        title=name, modality=modality, bridges=", ".join(path["bridges"]), base_model=base_name,
        base_revision=base.get("revision") or "—", fingerprint=short_fingerprint(base["fingerprint"]),
        load_from=repo_id or "path/to/this/folder", mode=path.get("mode", "lora"),
        lora_text=(f"rank {lora['r']}, alpha {lora['lora_alpha']}, last {lora['last_n_blocks']} blocks" if lora else "none"),
        num_tensors=len(path_config["shapes"]), num_values=f"{num_values:,}",
        embed_dim=path_config["dims"]["embed_dim"], specific_dim=path_config["dims"]["specific_dim"],
        shared_k=quantizer["shared_codebook_size"], specific_k=quantizer["specific_codebook_size"],
        codevector_dim=quantizer["codevector_dim"], temperature=path.get("temperature"),
        loss_weights=", ".join(f"{k} {v:g}" for k, v in path.get("loss_weights", {}).items()),
        library_version=path_config.get("library_version", "unknown"), training_data=data_text,
        eval_table=_eval_table(rows), license_text=LICENSE_TEXT.get(license, license),
    )


def render_base_card(
    config,
    repo_id: str | None = None,
    results: dict | str | os.PathLike | None = None,
    training_data: str | list[str] | None = None,
    license: str | None = None,
    tags: list[str] | None = None,
    revision: str | None = None,
) -> str:
    """``README.md`` of a full CodeBind model, from its [`CodeBindConfig`].

    Args:
        config ([`CodeBindConfig`]): the model's configuration; its ``_name_or_path`` becomes ``base_model`` when
            it is another Hub repo (the checkpoint this one was loaded from).
        repo_id (`str`, *optional*): the model's Hub repo.
        results, training_data, license: see `render_path_card`.
        tags (`list[str]`, *optional*): extra tags.
        revision (`str`, *optional*): commit of the checkpoint this model was loaded from.
    """
    license = license or IMAGEBIND_LICENSE
    name = repo_id or "codebind-model"
    rows = read_eval_results(results)
    data_text, dataset_ids = _training_data(training_data)
    parent = hub_repo_id(getattr(config, "_name_or_path", None))
    parent = parent if parent != repo_id else None
    modalities = sorted(config.modalities)
    data = ModelCardData(
        library_name="codebind_hf", license=license, base_model=parent,
        tags=list(dict.fromkeys(["codebind", "multimodal", *modalities, *(tags or [])])),
        pipeline_tag="feature-extraction", datasets=dataset_ids, model_name=name, eval_results=rows or None,
    )
    quantizer = config.quantizer_config
    return _render(
        "base_card.md.j2", data,
        title=name, modalities=", ".join(modalities), bridges=", ".join(config.bridges) or "none",
        paths=", ".join(sorted(config.paths)) or "none", first_path=next(iter(sorted(config.paths)), None),
        embed_dim=config.embed_dim, specific_dim=config.specific_dim, shared_k=quantizer.shared_codebook_size,
        specific_k=quantizer.specific_codebook_size, codevector_dim=quantizer.codevector_dim,
        parent=parent, parent_revision=revision, load_from=repo_id or "path/to/this/folder",
        pretrained_towers=pretrained_towers(config),
        library_version=__version__, training_data=data_text, eval_table=_eval_table(rows),
        license_text=LICENSE_TEXT.get(license, license),
    )


__all__ = ["render_path_card", "render_base_card", "read_eval_results", "hub_repo_id", "pretrained_towers",
           "IMAGEBIND_LICENSE", "TEMPLATES"]
