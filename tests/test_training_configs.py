"""Every shipped training config runs: 2 steps on generated data of its schema, on a tiny model with its towers.

Only the model (tiny random towers for the config's modalities), the decoder size, the batch size and the run
length are overridden; the path (mode, weights, temperature, LoRA, variants), the data columns, templates and
repeat are the config's own. A config whose schema cannot run (a bridge without a column, a template set that does
not exist) fails here.
"""

import datasets
import numpy as np
import pytest
import torch

from codebind_hf.training.config import CONFIG_DIR, TrainConfig, load_config_file
from codebind_hf.training.data import PROCESSOR_ARGS
from codebind_hf.training.train_path import train
from tiny_models import BERT, VIT

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
CHANNELS = {"vision": 3, "audio": 1, "depth": 1, "thermal": 1, "tactile": 3, "eeg": 1, "imu": 1, "point": 1}
RATE = 16000


class SchemaProcessor:
    """Words hashed to ids; arrays (audio: a waveform of 256 samples) reshaped to the tiny towers' (C, 16, 16)."""

    def __call__(self, text=None, sampling_rate=None, videos=None, **arrays):
        out = {}
        if text is not None:
            ids = torch.zeros(len(text), 8, dtype=torch.long)
            for i, sentence in enumerate(text):
                tokens = [2 + sum(map(ord, w)) % 98 for w in sentence.split()][:8]
                ids[i, : len(tokens)] = torch.tensor(tokens)
            out["input_ids"], out["attention_mask"] = ids, (ids > 0).long()
        if videos is not None:
            out["pixel_values_videos"] = torch.from_numpy(np.stack([np.asarray(v, np.float32) for v in videos]))
        by_arg = {arg: m for m, arg in PROCESSOR_ARGS.items()}
        keys = {"vision": "pixel_values", "audio": "audio_values"}
        for arg, values in arrays.items():
            modality = by_arg[arg]
            stacked = np.stack([np.asarray(v, np.float32).reshape(CHANNELS[modality], 16, 16) for v in values])
            out[keys.get(modality, f"{modality}_values")] = torch.from_numpy(stacked)
        return out


def _tiny_model(modalities: list[str]) -> dict:
    towers = {m: {"family": "hf", "backbone": BERT if m == "text" else {**VIT, "num_channels": CHANNELS[m]}} for m in modalities}
    return {"config": {"modalities": towers, "bridges": [m for m in ("text", "vision") if m in modalities],
                       "embed_dim": 32, "specific_dim": 32, "quantizer": {"shared_codebook_size": 32, "specific_codebook_size": 16}}}


def _column(modality: str, rows: int, rng, shape=None):
    if modality == "audio":
        return [rng.normal(size=256).astype(np.float32).tolist() for _ in range(rows)]
    shape = shape or (CHANNELS[modality], 16, 16)  # a new sensor's (its `modality` block): its sample_shape
    return [rng.normal(size=shape).astype(np.float32).tolist() for _ in range(rows)]


def _generated_data(config: TrainConfig, rows: int = 8) -> datasets.DatasetDict:
    """Rows holding exactly the columns the config's ``data.columns`` names (its schema, not its path's modalities):
    arrays per modality (videos of 2 frames), strings or caption lists, a sampling rate, a 3-class label."""
    rng = np.random.default_rng(0)
    table, features = {}, {}
    for key, name in config.data.columns.items():
        if key == "text":
            captions = [f"a caption number {i}" for i in range(rows)]
            table[name] = [[c, c + " again"] for c in captions] if name == "captions" else captions
        elif key == "label":
            table[name] = [i % 3 for i in range(rows)]
            features[name] = datasets.ClassLabel(names=["oak", "pine", "elm"])
        elif key == "sampling_rate":
            table[name] = [RATE] * rows
        elif key == "vision" and config.data.vision_input == "videos":
            table[name] = [rng.normal(size=(2, 3, 16, 16)).astype(np.float32).tolist() for _ in range(rows)]
        else:
            new = config.modality.name == key
            table[name] = _column(key, rows, rng, config.modality.sample_shape if new else None)
    inferred = datasets.Dataset.from_dict(table).features.copy()
    inferred.update(features)
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(table, features=inferred)})


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_runs_two_steps_on_data_of_its_schema(name, tmp_path):
    values = load_config_file(name)
    shipped = TrainConfig.from_dict(values)
    path = shipped.path
    # A new sensor's tower comes from the config's own `modality` block, added to the tiny model by the run.
    values["model"] = _tiny_model([m for m in dict.fromkeys([*path.bridges, path.target]) if m != shipped.modality.name])
    values["path"]["decoder"] = {"hidden_size": 32, "num_layers": 1, "num_heads": 4}
    values["data"]["num_workers"] = 0
    values.setdefault("codebooks", {})["kmeans_init_batches"] = 1
    values["training"].update(output_dir=str(tmp_path), max_train_steps=2, per_device_batch_size=4, checkpointing_steps=None,
                              eval_steps=None, report_to="none", save_full_model=False, logging_steps=1, disable_tqdm=True)
    config = TrainConfig.from_dict(values)
    result = train(config, dataset=_generated_data(shipped), processor=SchemaProcessor())
    assert result.global_step == 2 and len(result.losses) == 2 and all(np.isfinite(result.losses)), name
    logged = result.log_history[-1]
    assert {f"loss/{k}" for k in ("align", "vq", "cm")} <= set(logged), name  # the CodeBind terms were summed
    assert (tmp_path / "path" / "path_config.json").is_file()


def test_shipped_recipes_follow_the_authors_scripts_and_prompts():
    cfg = {name: TrainConfig.from_dict(load_config_file(name)) for name in CONFIGS}
    # epochs of the official training scripts (scripts/train/exp_*.sh), where they differ from cfg_*.yaml
    assert cfg["flir_v2"].training.num_train_epochs == cfg["in_eeg"].training.num_train_epochs == 30
    assert cfg["in1k"].training.num_train_epochs == cfg["p365"].training.num_train_epochs == 40
    # class-label text as the authors' datasets draw it: one of CLIP's 80 templates, or their fixed EEG/tactile prompt
    from codebind_hf.training.data import prompt_templates

    for name in ("in1k", "p365", "sun_d", "nyu_d", "flir_v2", "llvip", "vggsound", "audioset"):
        assert len(prompt_templates(cfg[name].data.prompt_templates)) == 80, name
    assert prompt_templates(cfg["in_eeg"].data.prompt_templates) == prompt_templates(cfg["touch_and_go"].data.prompt_templates) \
        == ("an image of {}.",)
    assert prompt_templates(cfg["k400"].data.prompt_templates) == prompt_templates(cfg["esc"].data.prompt_templates) == ("{}",)
    assert cfg["esc"].path.bridges == ["text"]  # ESC-50 has no images
    # LoRA scale 1 (alpha = rank) everywhere: no config pins lora_alpha
    assert all(c.path.lora_alpha is None for n, c in cfg.items() if n != "tiny")
