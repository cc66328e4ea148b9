"""Zero-shot classification helpers: class names and prompt templates shipped with the package, prompt building,
the averaged text classifier (one for the benchmark runner, the trainer's evaluation and the demo) and the scores.

The data lives in ``codebind_hf/data/benchmarks/``: ``templates.json`` (named prompt lists, each with its source)
and ``classes/<benchmark>.json`` (the class names of one benchmark, with their source, optional ids such as
WordNet ids or AudioSet MIDs, and optional ``prompt_names``: the names embedded for each class when a class is
represented by several names, e.g. NYU-D's "other").

The recipe is CLIP's: for every class, embed each ``template.format(name)``, L2-normalise each prompt embedding,
average, and L2-normalise the mean. A class with several names gets one row per name; its score is the maximum
over its rows (the official NYU-D protocol: an argmax over all names, then names mapped to their class).

Example:

```python
>>> import torch
>>> from codebind_hf.evaluation.zero_shot import build_prompts, load_class_names, load_templates, zero_shot_classifier
>>> len(load_class_names("esc50")), len(load_templates("openai_imagenet"))
(50, 80)
>>> build_prompts(["dog", "cat"], ["a photo of a {}.", "the {}."])
[['a photo of a dog.', 'the dog.'], ['a photo of a cat.', 'the cat.']]
>>> classifier = zero_shot_classifier(torch.eye(4).reshape(2, 2, 4))
>>> classifier.shape, torch.allclose(classifier.norm(dim=-1), torch.ones(2))
(torch.Size([2, 4]), True)

```
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

DATA_DIR = Path(__file__).parent.parent / "data" / "benchmarks"
TEMPLATES_FILE = DATA_DIR / "templates.json"
CLASSES_DIR = DATA_DIR / "classes"


@functools.lru_cache(maxsize=None)
def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def list_class_files() -> list[str]:
    """Names of the benchmarks with a shipped class list (``"in1k"``, ``"esc50"``, ...)."""
    return sorted(p.stem for p in CLASSES_DIR.glob("*.json"))


def list_templates() -> list[str]:
    """Names of the shipped prompt-template lists (``"openai_imagenet"``, ``"scene"``, ...)."""
    return sorted(_read_json(TEMPLATES_FILE)["templates"])


def load_class_info(benchmark: str) -> dict:
    """The whole class file of a benchmark: ``class_names``, ``num_classes``, ``source``, ``notes`` and, when the
    benchmark has them, ``ids`` / ``ids_kind`` and ``prompt_names``. Returns a copy."""
    path = CLASSES_DIR / f"{benchmark}.json"
    if not path.is_file():
        raise KeyError(f"no class list for benchmark {benchmark!r}; available: {list_class_files()}")
    return json.loads(json.dumps(_read_json(path)))


def load_class_names(benchmark: str) -> list[str]:
    """The class names of a benchmark, in label-index order (e.g. 1000 for ``"in1k"``)."""
    return load_class_info(benchmark)["class_names"]


def load_prompt_names(benchmark: str) -> list[list[str]]:
    """The names embedded for each class: ``prompt_names`` when the class file has them, else ``[[name], ...]``."""
    info = load_class_info(benchmark)
    return info.get("prompt_names") or [[name] for name in info["class_names"]]


def load_templates(name: str) -> list[str]:
    """A shipped prompt-template list; each template holds exactly one ``{}``."""
    templates = _read_json(TEMPLATES_FILE)["templates"]
    if name not in templates:
        raise KeyError(f"unknown template list {name!r}; available: {sorted(templates)}")
    return list(templates[name]["templates"])


def _check_templates(templates: Sequence[str]) -> None:
    if isinstance(templates, str) or not templates:
        raise ValueError("templates must be a non-empty list of strings, each with one '{}'")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"template {template!r} must be a string with exactly one '{{}}' placeholder")


def build_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """``prompts[c][t] = templates[t].format(class_names[c])``: one list of prompts per class."""
    _check_templates(templates)
    if isinstance(class_names, str) or not class_names:
        raise ValueError("class_names must be a non-empty list of strings")
    for name in class_names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"class names must be non-empty strings, got {name!r}")
    return [[template.format(name) for template in templates] for name in class_names]


def expand_prompt_names(prompt_names: Sequence[Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """Flatten per-class name lists into classifier rows.

    Returns:
        `(names, class_index)`: the names in row order and a `torch.LongTensor` of shape `(rows,)` giving each row's
        class, for [`zero_shot_scores`].

    Example:

    ```python
    >>> expand_prompt_names([["person", "man"], ["street"]])
    (['person', 'man', 'street'], tensor([0, 0, 1]))

    ```
    """
    names, index = [], []
    for class_id, group in enumerate(prompt_names):
        if isinstance(group, str) or not group:
            raise ValueError(f"prompt names of class {class_id} must be a non-empty list of strings, got {group!r}")
        names.extend(group)
        index.extend([class_id] * len(group))
    return names, torch.tensor(index, dtype=torch.long)


def class_embeddings(text_embeds: torch.Tensor, class_of_prompt: torch.Tensor,
                     num_classes: int | None = None) -> torch.Tensor:
    """One unit vector per class: the L2-normalised mean of the embeddings of its prompts.

    Prompts may come in any order; the embeddings are averaged as given (normalise them first for CLIP's recipe,
    as [`zero_shot_classifier`] does).

    Args:
        text_embeds (`torch.Tensor` of shape `(num_prompts, dim)`): embeddings of the prompts.
        class_of_prompt (`torch.LongTensor` of shape `(num_prompts,)`): the class of every prompt.
        num_classes (`int`, *optional*): defaults to ``class_of_prompt.max() + 1``; every class needs a prompt.

    Returns:
        `torch.FloatTensor` of shape `(num_classes, dim)`.

    Example:

    ```python
    >>> class_embeddings(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]), torch.tensor([0, 1, 0]))
    tensor([[1., 0.],
            [0., 1.]])

    ```
    """
    text_embeds, class_of_prompt = torch.as_tensor(text_embeds), torch.as_tensor(class_of_prompt, dtype=torch.long)
    if text_embeds.ndim != 2 or not len(text_embeds) or class_of_prompt.shape != (text_embeds.shape[0],):
        raise ValueError(f"expected text_embeds (num_prompts >= 1, dim) and class_of_prompt (num_prompts,), got "
                         f"{tuple(text_embeds.shape)} and {tuple(class_of_prompt.shape)}")
    num_classes = int(class_of_prompt.max()) + 1 if num_classes is None else num_classes
    if class_of_prompt.min() < 0 or class_of_prompt.max() >= num_classes:
        raise ValueError(f"class_of_prompt must hold class ids in 0..{num_classes - 1}")
    counts = torch.bincount(class_of_prompt.cpu(), minlength=num_classes)
    if not counts.all():
        raise ValueError(f"classes {torch.nonzero(counts == 0).flatten().tolist()[:10]} have no prompt")
    # A stable sort keeps each class's prompts in their order, so the means are those of the per-class slices.
    order = torch.argsort(class_of_prompt.cpu(), stable=True).to(text_embeds.device)
    grouped = text_embeds.float()[order].split(counts.tolist())
    return F.normalize(torch.stack([prompts.mean(0) for prompts in grouped]), dim=-1)


def zero_shot_classifier(text_embeddings_per_class_prompts) -> torch.Tensor:
    """Average normalised prompt embeddings into one unit vector per class (CLIP's recipe, [`class_embeddings`]
    of the L2-normalised prompt embeddings).

    Args:
        text_embeddings_per_class_prompts (`torch.Tensor` of shape `(num_classes, num_prompts, dim)`, or a list of
            `num_classes` tensors of shape `(num_prompts_c, dim)`): text embeddings of every class's prompts.

    Returns:
        `torch.FloatTensor` of shape `(num_classes, dim)`: per class, the L2-normalised mean of the L2-normalised
        prompt embeddings.
    """
    items = text_embeddings_per_class_prompts
    if isinstance(items, torch.Tensor):
        if items.ndim != 3:
            raise ValueError(f"expected a (num_classes, num_prompts, dim) tensor, got shape {tuple(items.shape)}")
        items = list(items)
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("expected a non-empty (num_classes, num_prompts, dim) tensor or list of (num_prompts, dim) tensors")
    rows = []
    for class_id, prompts in enumerate(items):
        prompts = torch.as_tensor(prompts)
        if prompts.ndim != 2 or prompts.shape[0] == 0:
            raise ValueError(f"class {class_id}: expected a (num_prompts, dim) tensor with num_prompts >= 1, got {tuple(prompts.shape)}")
        if not prompts.is_floating_point() or not torch.isfinite(prompts).all():
            raise ValueError(f"class {class_id}: prompt embeddings must be finite floats")
        if rows and prompts.shape[1] != rows[0].shape[1]:
            raise ValueError(f"class {class_id}: embedding dim {prompts.shape[1]} differs from class 0's {rows[0].shape[1]}")
        rows.append(F.normalize(prompts.float(), dim=-1))
    class_of_prompt = torch.arange(len(rows)).repeat_interleave(torch.tensor([len(r) for r in rows]))
    return class_embeddings(torch.cat(rows), class_of_prompt, len(rows))


def zero_shot_scores(embeddings, classifier, class_index=None) -> torch.Tensor:
    """Cosine similarity of embeddings to the classifier rows, optionally reduced to classes.

    Args:
        embeddings (`torch.Tensor` of shape `(batch, dim)`): embeddings of the inputs (normalised here).
        classifier (`torch.Tensor` of shape `(rows, dim)`): from [`zero_shot_classifier`].
        class_index (`torch.LongTensor` of shape `(rows,)`, *optional*): the class of each row (from
            [`expand_prompt_names`]); rows of one class are reduced by their maximum.

    Returns:
        `torch.FloatTensor` of shape `(batch, rows)`, or `(batch, num_classes)` with ``class_index``, where
        ``num_classes = class_index.max() + 1``.
    """
    embeddings, classifier = torch.as_tensor(embeddings), torch.as_tensor(classifier)
    if embeddings.ndim != 2 or classifier.ndim != 2:
        raise ValueError(f"expected embeddings (batch, dim) and classifier (rows, dim), got {tuple(embeddings.shape)} and {tuple(classifier.shape)}")
    if embeddings.shape[1] != classifier.shape[1]:
        raise ValueError(f"embedding dim {embeddings.shape[1]} does not match classifier dim {classifier.shape[1]}")
    if not torch.isfinite(embeddings).all():
        raise ValueError("embeddings contain NaN or inf")
    scores = F.normalize(embeddings.float(), dim=-1) @ classifier.float().T
    if class_index is None:
        return scores
    class_index = torch.as_tensor(class_index, dtype=torch.long)
    if class_index.shape != (classifier.shape[0],):
        raise ValueError(f"class_index must have shape ({classifier.shape[0]},), got {tuple(class_index.shape)}")
    num_classes = int(class_index.max()) + 1
    if class_index.min() < 0 or set(class_index.tolist()) != set(range(num_classes)):
        raise ValueError("class_index must cover every class 0..num_classes-1 with no negative entries")
    out = scores.new_full((scores.shape[0], num_classes), float("-inf"))
    return out.scatter_reduce(1, class_index.expand_as(scores), scores, reduce="amax")


__all__ = [
    "DATA_DIR",
    "list_class_files",
    "list_templates",
    "load_class_info",
    "load_class_names",
    "load_prompt_names",
    "load_templates",
    "build_prompts",
    "expand_prompt_names",
    "class_embeddings",
    "zero_shot_classifier",
    "zero_shot_scores",
]
