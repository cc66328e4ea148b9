"""Zero-shot classification accuracy of a path during training (method doc §5).

Class prompts (every template, averaged per class as in CLIP) and the target's evaluation rows are embedded with
the path's quantised shared embeddings; a row is correct when its most similar class is its label. Each process
scores its share of the rows and the counts are summed across processes.
"""

from __future__ import annotations

import numpy as np
import torch

from ..evaluation.zero_shot import class_embeddings
from .batching import BatchSpec, PathCollator, RowDataset


class ZeroShotEvaluator:
    """Acc@1 of ``target`` against class prompts, on a prepared evaluation split.

    Args:
        dataset (`datasets.Dataset`): the evaluation split, columns prepared (see `data.prepare_columns`).
        spec ([`BatchSpec`]): decoding settings; ``live`` should be ``[target]``.
        processor: the processor (must turn text prompts into token ids).
        class_names (`list[str]`), templates (`tuple[str, ...]`).
        batch_size (`int`), max_samples (`int`, *optional*), skip_bad_rows (`bool`).
        quantize (`bool`, *optional*, defaults to `True`): score quantised embeddings (``False``: the heads' outputs,
            for projector runs, which have no codebooks).
    """

    def __init__(self, dataset, spec: BatchSpec, processor, class_names, templates, batch_size: int,
                 max_samples: int | None = None, skip_bad_rows: bool = False, quantize: bool = True):
        self.dataset = RowDataset(dataset)
        self.spec, self.processor = spec, processor
        self.class_names, self.templates = list(class_names), tuple(templates)
        self.batch_size, self.quantize = batch_size, quantize
        self.count = len(dataset) if max_samples is None else min(max_samples, len(dataset))
        # Evaluation keeps every clip (the model averages clip embeddings), hence sample_ndims = {}.
        eval_spec = BatchSpec(live=list(spec.live), columns=spec.columns, sample_ndims={}, templates=spec.templates,
                              class_names=spec.class_names, vision_input=spec.vision_input, sampling_rate=spec.sampling_rate)
        self.collator = PathCollator(eval_spec, processor, seed=0, skip_bad_rows=skip_bad_rows)

    @torch.no_grad()
    def class_embeddings(self, model, path: str, device) -> torch.Tensor:
        """Unit class embeddings `(classes, embed_dim)`: mean of the unit template embeddings, renormalised."""
        prompts = [t.format(name) for name in self.class_names for t in self.templates]
        processed = dict(self.processor(text=prompts))
        mask = processed.get("attention_mask")
        text = model.get_features("text", torch.as_tensor(processed["input_ids"]).to(device), path=path, quantize=self.quantize,
                                  attention_mask=None if mask is None else torch.as_tensor(mask).to(device))
        return class_embeddings(text, torch.arange(len(self.class_names)).repeat_interleave(len(self.templates)))

    @torch.no_grad()
    def evaluate(self, accelerator, model, path: str, target: str) -> dict[str, float]:
        """``{"zero_shot/acc1": ..., "zero_shot/num_samples": ...}`` over all processes (leaves ``model`` in eval mode)."""
        model.eval()
        device = accelerator.device  # float32: code assignment is precision sensitive
        classes = self.class_embeddings(model, path, device)
        rows = np.arange(self.count)[accelerator.process_index :: accelerator.num_processes]
        correct = total = 0
        for start in range(0, len(rows), self.batch_size):
            batch = self.collator(self.dataset.__getitems__(rows[start : start + self.batch_size].tolist()))
            if not len(batch["rows"]):
                continue
            embeds = model.get_features(target, batch["inputs"][target].to(device), path=path, quantize=self.quantize)
            predicted = (embeds.float() @ classes.float().t()).argmax(-1).cpu()
            correct += int((predicted == batch["labels"]).sum())
            total += len(batch["rows"])
        counts = accelerator.reduce(torch.tensor([correct, total], dtype=torch.float64, device=device), reduction="sum")
        correct, total = float(counts[0]), float(counts[1])
        return {"zero_shot/acc1": correct / max(total, 1.0), "zero_shot/num_samples": total}


__all__ = ["ZeroShotEvaluator"]
