"""``codebind-bench``: evaluate a CodeBind model on the paper's benchmarks and compare with the paper's numbers.

Run it on one process, or on several with ``accelerate launch`` (the items of each benchmark are sharded and the
embeddings gathered in item order, so the numbers do not depend on the number of processes):

```bash
codebind-bench --model org/codebind-ib --benchmarks ib17 --data-root /data/benchmarks --output-dir results/
accelerate launch --num_processes 4 -m codebind_hf.evaluation.cli --model ./my-model --benchmarks esc50,clotho \\
    --data-root /data/benchmarks --part concat --update-model-card
```

Sections: 1. arguments, 2. data sources (checked before the model loads), 3. processor and model, 4. evaluation,
5. outputs (``results.json``, ``results.md``, the table on the terminal, the model card).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .analysis import AnalysisTask, evaluate_task, parse_analysis, read_items
from .datasets import BenchmarkAdapter, BenchmarkDataError, open_benchmark
from .loop import BenchmarkConfigError, EvalSettings, SplitEvaluator, aggregate
from ..validation import check_output_dir_free
from .report import build_payload, markdown_table, update_model_card, write_outputs
from .suite import SUITES, BenchmarkDefinition, get_benchmark

logger = logging.getLogger("codebind_hf.evaluation")


# ---------------------------------------------------------------------------------------------- 1. arguments
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codebind-bench", description="Evaluate a CodeBind model on the paper's benchmarks, next to the paper's numbers."
    )
    parser.add_argument("--model", required=True, help="Hub id or local folder of a CodeBindModel and its processor")
    parser.add_argument("--revision", default=None, help="Hub revision of --model")
    parser.add_argument("--processor", default=None,
                        help="the processor: a folder or Hub id written by CodeBindProcessor.save_pretrained, or "
                             "'imagebind' / 'vitlens' for the packaged ones (default: the one saved with --model)")
    parser.add_argument("--benchmarks", nargs="+", default=["ib17"],
                        help=f"benchmark names and/or suites {sorted(SUITES)}, comma or space separated; 'available': "
                             "every benchmark the model has a tower for (a suite's benchmarks for modalities the model "
                             "has no tower for are skipped with a warning); also the paper's other evaluations: "
                             "probe:<kind>:<folder>, finegrained:<name or kind:folder>, fusion:<kind>+<kind>:<folder> "
                             "(codebind_hf.evaluation.analysis)")
    parser.add_argument("--data-root", default=None,
                        help="folder with one sub-folder per benchmark in the local layout (BenchmarkDefinition.local_schema)")
    parser.add_argument("--use-hub-sources", action="store_true",
                        help="read a benchmark missing under --data-root from its known Hugging Face dataset")
    parser.add_argument("--part", choices=("shared", "concat"), default="shared",
                        help="embedding of the benchmark modality: shared, or shared+specific (text stays shared)")
    parser.add_argument("--path", default=None,
                        help="path whose codebooks to use: one name for all, or modality=path pairs (vision=vision,depth=depth); "
                             "default: the modality's own path, else the only path containing it")
    parser.add_argument("--no-quantize", action="store_true", help="skip the codebooks (normalised head outputs)")
    parser.add_argument("--batch-size", type=int, default=32, help="items per process and step")
    parser.add_argument("--text-batch-size", type=int, default=256, help="prompts or captions per process and step")
    parser.add_argument("--templates", default=None,
                        help="a shipped prompt-template list for every classification benchmark instead of each one's "
                             "own (e.g. codebind_simple, identity: quick runs)")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loader workers per process")
    parser.add_argument("--limit", type=int, default=None, help="at most this many items per benchmark split (smoke runs)")
    parser.add_argument("--output-dir", default="benchmark_results", help="where results.json and results.md go")
    parser.add_argument("--overwrite_output_dir", "--overwrite-output-dir", action="store_true",
                        help="replace the results of a finished run in --output-dir (refused otherwise)")
    parser.add_argument("--update-model-card", action="store_true",
                        help="write the results into the model folder's README.md (model-index); for a Hub id, into "
                             "<output-dir>/README.md")
    return parser


def parse_benchmarks(values: list[str]) -> list[BenchmarkDefinition]:
    """Names and suites, comma or space separated, expanded and de-duplicated in order (analysis names left out:
    `parse_analysis_tasks`)."""
    names = [n.strip() for value in values for n in value.split(",") if n.strip()]
    if not names:
        raise BenchmarkConfigError(f"--benchmarks is empty; give names or suites {sorted(SUITES)}")
    expanded = [m for n in names for m in (SUITES[n.lower()] if n.lower() in SUITES else [n])]
    try:
        return [get_benchmark(n) for n in dict.fromkeys(expanded) if not _is_analysis(n)]
    except KeyError as err:
        raise BenchmarkConfigError(f"{err.args[0]}; suites: {sorted(SUITES)}") from None


def _is_analysis(name: str) -> bool:
    try:
        return parse_analysis(name) is not None
    except ValueError:
        return True  # malformed analysis names are reported by parse_analysis_tasks


def parse_analysis_tasks(values: list[str]) -> list[AnalysisTask]:
    """The probe / fine-grained / fusion entries of ``--benchmarks``, in order."""
    names = dict.fromkeys(n.strip() for value in values for n in value.split(",") if n.strip())
    try:
        return [task for n in names if (task := parse_analysis(n)) is not None]
    except ValueError as err:
        raise BenchmarkConfigError(str(err)) from None


def select_benchmarks(values: list[str], towers) -> list[BenchmarkDefinition]:
    """`parse_benchmarks` for a model with these towers: ``available`` means every benchmark it has a tower for; a
    suite's benchmark it has no tower for is skipped with a warning naming it; one named on its own is an error."""
    towers = set(towers)
    everything = list(dict.fromkeys(name for suite in SUITES.values() for name in suite))
    expanded, named, suites = [], [], []
    for token in (n.strip() for value in values for n in value.split(",") if n.strip()):
        key = token.lower()
        expanded += everything if key == "available" else SUITES.get(key, [token])
        named += [] if key == "available" or key in SUITES or _is_analysis(token) else [token]
        suites += SUITES.get(key, [])
    definitions = parse_benchmarks(expanded)  # checks the names (and refuses an empty list)
    if not definitions:  # analysis tasks only
        return []
    named = {get_benchmark(n).name for n in named}
    lacking = [d for d in definitions if d.modality not in towers]
    refused = sorted(d.name for d in lacking if d.name in named)
    if refused:
        raise BenchmarkConfigError(f"the model has no tower for {sorted({d.modality for d in lacking if d.name in refused})} "
                                   f"(it has {sorted(towers)}), which {refused} need; drop them or use --benchmarks available")
    skipped = [d for d in lacking if d.name in suites]  # `available` asked for what the model can do: no warning
    if skipped:
        logger.warning("skipping %s: the model has no %s tower (it has %s)", [d.name for d in skipped],
                       sorted({d.modality for d in skipped}), sorted(towers))
    kept = [d for d in definitions if d.modality in towers]
    if not kept:
        raise BenchmarkConfigError(f"none of the benchmarks {[d.name for d in definitions]} has a tower in the model "
                                   f"(it has {sorted(towers)})")
    return kept


def parse_paths(value: str | None) -> dict[str, str]:
    """``"depth"`` -> ``{"*": "depth"}``; ``"vision=vision,depth=depth"`` -> per modality."""
    from ..modalities import canonical_modality

    if not value:
        return {}
    out = {}
    for piece in (p.strip() for p in value.split(",") if p.strip()):
        modality, sep, path = piece.partition("=")
        if not sep:
            out["*"] = piece
        elif not modality.strip() or not path.strip():
            raise BenchmarkConfigError(f"--path entry {piece!r} must be <modality>=<path>")
        else:
            try:
                out[canonical_modality(modality.strip())] = path.strip()
            except (KeyError, ValueError) as err:
                raise BenchmarkConfigError(f"--path entry {piece!r}: {err}") from None
    return out


# ---------------------------------------------------------------------------------------------- 2. data sources
def open_sources(definitions, data_root: str | None, use_hub: bool) -> dict[str, tuple[list[BenchmarkAdapter], str | None]]:
    """Every split's adapter, opened (and its layout checked) before any model work; also the Hub dataset id used."""
    out = {}
    for definition in definitions:
        local = Path(data_root) / definition.name if data_root else None
        if local is not None and local.is_dir():
            out[definition.name] = ([open_benchmark(definition, data_root, split) for split in definition.splits], None)
            continue
        if use_hub and definition.hf_sources:
            source = definition.hf_sources[0]
            adapters = [open_benchmark(definition, source, split) for split in definition.splits]
            out[definition.name] = (adapters, source.dataset_id)
            continue
        where = f"--data-root {data_root} has no folder {definition.name!r}" if data_root else "no --data-root was given"
        if definition.hf_sources:
            hint = f"or pass --use-hub-sources to read {definition.hf_sources[0].dataset_id}"
        else:
            hint = f"no Hugging Face dataset is known for it ({definition.hf_notes})"
        raise BenchmarkDataError(f"benchmark {definition.name} ({definition.display_name}): {where}. Expected the "
                                 f"local layout: {definition.local_schema} ({hint})")
    return out


# ---------------------------------------------------------------------------------------------- 3. processor
def load_processor(spec: str | None, model: str, revision: str | None = None):
    """``--processor``: the packaged ``imagebind`` / ``vitlens`` processor, a saved one (folder or Hub id), or by
    default the one saved beside ``--model``; a model without one is a `BenchmarkConfigError` saying what to save."""
    from ..processing_codebind import CodeBindProcessor

    if spec in ("imagebind", "vitlens"):
        return getattr(CodeBindProcessor, spec)()
    source = spec or model
    try:
        return CodeBindProcessor.from_pretrained(source, revision=None if spec else revision)
    except (OSError, ValueError) as err:  # a folder or repo without processor_config.json
        hint = ("save the model's processor beside it, e.g. CodeBindProcessor.imagebind().save_pretrained"
                f"({model!r}) for ImageBind towers (the converters and codebind-train do this), or pass "
                "--processor imagebind | vitlens | <folder>")
        raise BenchmarkConfigError(f"no processor in {source} (processor_config.json): {hint}. ({err})") from err


# ---------------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict | None:
    """Evaluate; return the results document on the main process (``None`` on the others)."""
    from accelerate import Accelerator

    from .. import CodeBindModel
    from ..configuration_codebind import CodeBindConfig
    from .zero_shot import load_templates

    check_output_dir_free(args.output_dir, "results.json", "benchmark run", overwrite=getattr(args, "overwrite_output_dir", False),
                          resumable=False)
    try:  # the towers decide which benchmarks run; read before any data or weights
        towers = list(CodeBindConfig.from_pretrained(args.model, revision=args.revision).modalities)
    except OSError:  # no readable config: the data checks still run first, the model load then says what is wrong
        towers = None
    definitions = parse_benchmarks(args.benchmarks) if towers is None else select_benchmarks(args.benchmarks, towers)
    tasks = parse_analysis_tasks(args.benchmarks)
    settings = EvalSettings(part=args.part, quantize=not args.no_quantize, paths=parse_paths(args.path),
                            batch_size=args.batch_size, text_batch_size=args.text_batch_size, templates=args.templates,
                            limit=args.limit, num_workers=args.num_workers)
    if min(settings.batch_size, settings.text_batch_size, settings.limit or 1) < 1:
        raise BenchmarkConfigError(f"--batch-size, --text-batch-size and --limit must be positive, got {settings.batch_size}, "
                                   f"{settings.text_batch_size} and {settings.limit}")
    if settings.templates:
        try:
            load_templates(settings.templates)
        except KeyError as err:
            raise BenchmarkConfigError(f"--templates: {err.args[0]}") from None
    sources = open_sources(definitions, args.data_root, args.use_hub_sources)
    for task in tasks:  # layouts checked before the model loads, as the benchmarks'
        read_items(task, args.data_root, args.use_hub_sources)

    # 3. model and processor
    processor = load_processor(args.processor, args.model, args.revision)
    accelerator = Accelerator()
    model = CodeBindModel.from_pretrained(args.model, revision=args.revision).eval().to(accelerator.device)
    from .suite import KIND_MODALITY

    wanted = {d.modality for d in definitions} | {KIND_MODALITY[k] for t in tasks for k in t.input_kinds}
    missing = sorted(wanted - set(model.towers))
    if missing:
        raise BenchmarkConfigError(f"model {args.model} has no tower for {missing} (it has {sorted(model.towers)}); drop those benchmarks")

    # 4. evaluation
    evaluate_split = SplitEvaluator(accelerator, model, processor, settings)
    results, splits, num_items, paths, notes = {}, {}, {}, {}, []
    for definition in definitions:
        adapters, _ = sources[definition.name]
        per_split = {}
        for adapter in adapters:
            per_split[adapter.split] = evaluate_split(definition, adapter, notes)
        num_items[definition.name] = {a.split: min(len(a), settings.limit or len(a)) for a in adapters}
        paths[definition.name] = evaluate_split.path_of(definition)
        if accelerator.is_main_process:
            results[definition.name] = aggregate(definition, per_split)
            if len(per_split) > 1:
                splits[definition.name] = per_split
            logger.info("%s: %s", definition.name, results[definition.name])
    for task in tasks:
        out = evaluate_task(task, accelerator, model, processor, settings, args.data_root, use_hub=args.use_hub_sources)
        if accelerator.is_main_process:
            results[task.name] = out
            logger.info("%s: %s", task.name, out)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None

    # 5. outputs
    datasets = {name: dataset_id for name, (_, dataset_id) in sources.items() if dataset_id}
    payload = build_payload(args.model, settings, definitions, results, splits, num_items, paths, datasets, notes, tasks)
    json_path, _ = write_outputs(args.output_dir, payload)
    print(markdown_table(payload))
    print(f"\nours: this run ({'limit ' + str(settings.limit) + ' items per split, ' if settings.limit else ''}part="
          f"{settings.part}); paper: CodeBind Table 1/2. Written to {json_path} and results.md.")
    if args.update_model_card:
        local = Path(args.model).is_dir()
        readme = Path(args.model if local else args.output_dir) / "README.md"
        update_model_card(readme, payload, config=model.config, model_name=args.model)
        print(f"model card updated: {readme}")
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if os.environ.get("CODEBIND_BENCH_VERBOSE") else logging.WARNING)
    try:
        run(args)
    except (BenchmarkDataError, BenchmarkConfigError, FileExistsError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
