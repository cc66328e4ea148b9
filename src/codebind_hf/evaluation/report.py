"""The benchmark runner's outputs: ``results.json``, the markdown table next to the paper's numbers, model cards.

``results.json`` holds ``{"model", "part", "quantize", "paths", "limit", "benchmarks", "results": {benchmark:
{metric: value}}, "splits", "num_items", "tasks", "datasets", "paper", "notes", "codebind_hf_version"}``. Our values are
fractions in ``[0, 1]`` (what the metric modules return); ``"paper"`` holds the paper's percentages, as printed. The
file is what `codebind_hf.adapters.model_cards.read_eval_results` reads, so it goes straight into a card's ``model-index``.

Example:

```python
>>> payload = {"results": {"esc50": {"accuracy@1": 0.5}}, "benchmarks": ["esc50"]}
>>> print(markdown_table(payload))
| benchmark | metric | ours (%) | ImageBind (paper) | CodeBind-IB (paper) |
|---|---|---|---|---|
| ESC | accuracy@1 | 50.0 | 66.9 | 71.0 |

```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import ModelCard

from ..adapters.io import write_file_atomically
from ..adapters.model_cards import read_eval_results, render_base_card

from .suite import get_benchmark

PAPER_COLUMNS = ("ImageBind", "CodeBind-IB")
TASK_TYPES = {"zero_shot_classification": "zero-shot-classification", "retrieval": "retrieval"}


def build_payload(model: str, settings, definitions, results: dict, splits: dict, num_items: dict,
                  paths: dict, datasets: dict, notes: list[str], analysis_tasks=()) -> dict:
    """The ``results.json`` document (see the module docstring); ``analysis_tasks`` (probes, fine-grained retrieval,
    fusion) are listed after the benchmarks, with their task type and no paper numbers."""
    from .. import __version__
    from .analysis import TASK_TYPES as ANALYSIS_TASK_TYPES

    payload = {
        "model": model,
        "part": settings.part,
        "quantize": settings.quantize,
        "templates": settings.templates or "per benchmark",
        "paths": paths,
        "limit": settings.limit,
        "benchmarks": [d.name for d in definitions],
        "results": results,
        "splits": splits,
        "num_items": num_items,
        "tasks": {d.name: TASK_TYPES[d.task] for d in definitions},
        "datasets": datasets,
        "paper": {d.name: {m: dict(v) for m, v in d.paper_results.items()} for d in definitions},
        "notes": notes,
        "codebind_hf_version": __version__,
    }
    for task in analysis_tasks:
        payload["benchmarks"].append(task.name)
        payload["tasks"][task.name] = ANALYSIS_TASK_TYPES[task.kind]
        payload["paper"][task.name] = {}
    return payload


def _definition(name: str):
    """The benchmark's definition, or for an analysis task (``probe:...``) a stand-in with its display name."""
    from types import SimpleNamespace

    from .analysis import parse_analysis

    task = parse_analysis(name)
    return get_benchmark(name) if task is None else SimpleNamespace(display_name=task.display_name, paper_results={})


def _paper_columns(names: list[str]) -> list[str]:
    extra = [m for name in names for m in _definition(name).paper_results if m not in PAPER_COLUMNS]
    return [*PAPER_COLUMNS, *dict.fromkeys(extra)]


def markdown_table(payload: dict) -> str:
    """One row per (benchmark, metric): our value and the paper's, all in percent (``—``: the paper has none)."""
    names = list(payload.get("benchmarks") or payload["results"])
    columns = _paper_columns(names)
    lines = ["| benchmark | metric | ours (%) | " + " | ".join(f"{c} (paper)" for c in columns) + " |",
             "|---" * (3 + len(columns)) + "|"]
    for name in names:
        definition = _definition(name)
        for metric, value in payload["results"].get(name, {}).items():
            base = metric.split("/")[-1]  # "val/accuracy@1" (splits reported separately) -> "accuracy@1"
            paper = [definition.paper_results.get(c, {}).get(base) for c in columns]
            cells = ["—" if v is None else f"{v:.1f}" for v in paper]
            lines.append(f"| {definition.display_name} | {metric} | {100 * value:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(output_dir: str | os.PathLike, payload: dict) -> tuple[Path, Path]:
    """``results.md`` (the table), then ``results.json``, in ``output_dir``, each written atomically: the JSON is
    written last, so a run whose ``results.json`` is there is complete (``codebind-bench`` then refuses to overwrite
    it without ``--overwrite_output_dir``)."""
    output_dir = Path(output_dir)
    title = f"# Benchmark results: {payload['model']} (part={payload['part']}, quantize={payload['quantize']})\n\n"
    notes = "".join(f"- {n}\n" for n in payload.get("notes", []))
    md_path = write_file_atomically(output_dir / "results.md",
                                    title + markdown_table(payload) + "\n" + (f"\nNotes:\n{notes}" if notes else ""))
    json_path = write_file_atomically(output_dir / "results.json", json.dumps(payload, indent=2) + "\n", fsync=True)
    return json_path, md_path


def update_model_card(readme: str | os.PathLike, payload: dict, config=None, model_name: str | None = None) -> Path:
    """Put the results into a model card's ``model-index`` (``eval_results``), atomically.

    An existing ``README.md`` keeps its text and other metadata; results of the same (benchmark, metric) are
    replaced, others kept. Without one, a full card is generated from ``config`` (`render_base_card`).
    """
    readme = Path(readme)
    rows = read_eval_results(payload)
    if not rows:
        raise ValueError("no numeric results to write into the model card")
    if readme.is_file():
        card = ModelCard.load(readme)
        new = {(r.dataset_name, r.metric_type) for r in rows}
        kept = [r for r in (card.data.eval_results or []) if (r.dataset_name, r.metric_type) not in new]
        card.data.eval_results = kept + rows
        card.data.model_name = card.data.model_name or model_name or readme.parent.name
        text = str(card)
    elif config is not None:
        from ..adapters.model_cards import hub_repo_id

        text = render_base_card(config, repo_id=hub_repo_id(model_name), results=payload)
    else:
        raise FileNotFoundError(f"{readme} not found, and no model config was given to generate a card")
    return write_file_atomically(readme, text)


__all__ = ["build_payload", "markdown_table", "write_outputs", "update_model_card"]
