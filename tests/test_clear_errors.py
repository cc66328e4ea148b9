"""Nothing silent: every class of bad input is refused before any computation, and the message names what was
wrong, what was expected and, for files, which file. One test per class."""

import json
import re

import numpy as np
import pytest
import torch

from codebind_hf import CodeBindConfig, CodeBindModel
from codebind_hf.feature_extraction_codebind import CodeBindFeatureExtractor
from codebind_hf.feature_extraction_sensors import CodeBindSensorFeatureExtractor
from codebind_hf.image_processing_codebind import CodeBindImageProcessor
from tiny_models import tiny_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CodeBindModel(tiny_config(decoder=False)).eval()


def _saved_config(tmp_path) -> dict:
    tiny_config().save_pretrained(tmp_path)
    return json.loads((tmp_path / "config.json").read_text())


# ---------------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("rate, hint", [(16, "16 kHz is 16000"), (44.1, "44.1 kHz is 44100")])
def test_a_sampling_rate_in_khz_is_refused_with_a_hint(rate, hint):
    extractor = CodeBindFeatureExtractor()
    with pytest.raises((ValueError, TypeError), match="sampling_rate") as error:
        extractor([np.zeros(16000, np.float32)], sampling_rate=rate)
    if isinstance(error.value, ValueError):
        assert "below 1000 Hz" in str(error.value) and hint in str(error.value)


def test_an_eeg_recording_shorter_than_the_window_is_refused_not_stretched():
    with pytest.raises(ValueError, match=r"EEG item 0 \(time window \[20, 460\)\) has 100 time steps, fewer than the 460"):
        CodeBindSensorFeatureExtractor().eeg([np.zeros((128, 100), np.float32)])


def test_none_in_an_image_list_names_its_position():
    with pytest.raises(ValueError, match=r"images\[1\] is None \(1 of 3 items are\)"):
        CodeBindImageProcessor()(images=[np.zeros((32, 32, 3), np.uint8), None, np.zeros((32, 32, 3), np.uint8)])


# ---------------------------------------------------------------------------------------------- config files
def test_a_typo_in_a_config_file_gets_a_did_you_mean(tmp_path):
    config = _saved_config(tmp_path)
    config["embed_dims"] = config.pop("embed_dim")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"Unknown CodeBindConfig \(config.json\) keys 'embed_dims' \(did you mean 'embed_dim'\?\)"):
        CodeBindConfig.from_pretrained(tmp_path)


def test_a_typo_in_a_sub_config_gets_a_did_you_mean():
    with pytest.raises(ValueError, match=r"Unknown quantizer keys 'shared_codebook_sizes' \(did you mean 'shared_codebook_size'\?\)"):
        tiny_config(quantizer={"shared_codebook_sizes": 64})


def test_a_missing_config_field_is_not_silently_defaulted(tmp_path):
    config = _saved_config(tmp_path)
    del config["specific_dim"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json\) lacks \['specific_dim'\]"):
        CodeBindConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("key, value, expected", [("embed_dim", "32", "int"), ("embed_dim", 32.5, "int"),
                                                  ("modalities", ["text"], "dict or null")])
def test_a_wrongly_typed_config_field_names_the_field_and_the_type(tmp_path, key, value, expected):
    config = _saved_config(tmp_path)
    config[key] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TypeError, match=f"'{key}' must be {expected}, got {type(value).__name__}"):
        CodeBindConfig.from_pretrained(tmp_path)


def test_a_wrongly_typed_sub_config_field_names_it():
    with pytest.raises(TypeError, match=r"quantizer: 'codevector_dim' must be int, got str"):
        tiny_config(quantizer={"codevector_dim": "8"})


# ---------------------------------------------------------------------------------------------- model files
def test_a_nonexistent_folder_is_reported_as_a_missing_folder(tmp_path):
    missing = tmp_path / "runs" / "sun" / "model"
    with pytest.raises(FileNotFoundError, match="is not a folder .no such directory."):
        CodeBindModel.from_pretrained(missing)


def test_non_finite_weights_are_refused_at_path_save_and_load(model, tmp_path):
    folder = model.save_path("depth", tmp_path / "path")
    head = model.specific_heads["depth"]["depth"].proj.weight
    saved = head.detach().clone()
    with torch.no_grad():
        head[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) in specific_heads\.depth\.depth\.proj\.weight \(1 of"):
        model.save_path("depth", tmp_path / "nan-path")
    assert not (tmp_path / "nan-path").exists()
    with torch.no_grad():
        head.copy_(saved)
    # A file carrying an inf (its checksum recomputed, as a careless edit would) is refused at load.
    from safetensors.torch import load_file, save_file

    from codebind_hf.adapters.io import file_sha256

    state = load_file(folder / "path.safetensors")
    state["specific_heads.depth.depth.proj.weight"][1, 1] = float("inf")
    save_file(state, folder / "path.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "path_config.json").read_text())
    config["weights_sha256"] = file_sha256(folder / "path.safetensors")
    (folder / "path_config.json").write_text(json.dumps(config))
    model.remove_path("depth")
    try:
        with pytest.raises(ValueError, match=r"path\.safetensors holds non-finite values .* specific_heads\.depth\.depth\.proj\.weight"):
            model.load_path(folder)
    finally:
        model.add_path("depth", {"bridges": ["text", "vision"]})


# ---------------------------------------------------------------------------------------------- datasets
def _empty_source(kind: str, root):
    import datasets

    folder = root / kind
    if kind == "dict":
        return {"depth": [], "label": []}
    if kind == "save_to_disk":
        datasets.Dataset.from_dict({"depth": [], "label": []}).save_to_disk(str(folder))
        return str(folder)
    folder.mkdir()
    if kind == "jsonl":
        (folder / "train.jsonl").write_text("")
    elif kind == "csv":
        (folder / "train.csv").write_text("depth,label\n")
    elif kind == "parquet":
        datasets.Dataset.from_dict({"depth": [1.0], "label": [0]}).select([]).to_parquet(str(folder / "train.parquet"))
    elif kind == "audio_folder":
        (folder / "train" / "dog").mkdir(parents=True)
    return str(folder)


@pytest.mark.parametrize("kind", ["save_to_disk", "jsonl", "csv", "parquet", "audio_folder", "dict"])
def test_an_empty_dataset_of_every_source_kind_is_called_empty(tmp_path, kind):
    from codebind_hf.training.config import DataArguments
    from codebind_hf.training.data import get_split, load_dataset_dict

    source = _empty_source(kind, tmp_path)
    where = "built in memory" if kind == "dict" else str(tmp_path / kind)
    with pytest.raises(ValueError, match=r"(no rows|empty).*") as error:
        get_split(load_dataset_dict(DataArguments(dataset=source)), "train")
    assert where in str(error.value)


def test_an_empty_dataset_folder_is_called_empty(tmp_path):
    from codebind_hf.training.config import DataArguments
    from codebind_hf.training.data import load_dataset_dict

    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match=r"holds no data files \(an empty folder\)"):
        load_dataset_dict(DataArguments(dataset=str(tmp_path / "data")))


# ---------------------------------------------------------------------------------------------- model inputs
@pytest.mark.parametrize("ids, message", [
    (torch.tensor([[1, 2, 100]]), r"input_ids \(text\) must lie in \[0, 100\) .*got values in \[1, 100\], e\.g\. 100 at row 0, position 2"),
    (torch.tensor([[1, -3, 4]]), r"must lie in \[0, 100\) .*e\.g\. -3 at row 0, position 1"),
])
def test_out_of_vocabulary_or_negative_token_ids_name_the_position(model, ids, message):
    with pytest.raises(ValueError, match=message):
        model.get_features("text", ids)


def test_over_long_text_names_both_lengths(model):
    with pytest.raises(ValueError, match=r"input_ids \(text\) has length 40, more than the 32 positions .*truncation=True"):
        model.get_features("text", torch.ones(2, 40, dtype=torch.long))


@pytest.mark.parametrize("mask", [torch.ones(2, 5, dtype=torch.long), torch.ones(3, 7, dtype=torch.long)])
def test_a_wrongly_shaped_attention_mask_is_refused_even_all_ones(model, mask):
    ids = torch.ones(2, 7, dtype=torch.long)
    expected = re.escape(f"attention_mask has shape {tuple(mask.shape)}, but input_ids has (2, 7); expected the same")
    with pytest.raises(ValueError, match=expected):
        model.get_features("text", ids, attention_mask=mask)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(input_ids=ids, attention_mask=mask)


def test_an_attention_mask_without_text_is_not_dropped_silently(model):
    with pytest.raises(ValueError, match=r"attention_mask was given without input_ids \(inputs: \['depth'\]\)"):
        model(depth_values=torch.randn(2, 1, 16, 16), attention_mask=torch.ones(2, 7, dtype=torch.long))


@pytest.mark.parametrize("modality, inputs", [("depth", torch.zeros(0, 1, 16, 16)), ("text", torch.zeros(0, 7, dtype=torch.long))])
def test_an_empty_batch_is_refused(model, modality, inputs):
    with pytest.raises(ValueError, match=rf"{modality} inputs are an empty batch \(shape \(0,"):
        model.get_features(modality, inputs, quantize=False)


def test_mismatched_batch_sizes_under_return_loss_name_every_modality(model):
    with pytest.raises(ValueError, match=r"batch sizes differ between modalities \(text 3, vision 2, depth 2\); return_loss pairs"):
        model(input_ids=torch.ones(3, 7, dtype=torch.long), pixel_values=torch.randn(2, 3, 16, 16),
              depth_values=torch.randn(2, 1, 16, 16), return_loss=True)


# ---------------------------------------------------------------------------------------------- files of older saves
def test_a_wrongly_shaped_tensor_names_the_file_the_key_and_both_shapes(model, tmp_path):
    from safetensors.torch import load_file, save_file

    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model_checksums.json").unlink()  # as an older save, without checksums
    weights = load_file(tmp_path / "m" / "model.safetensors")
    weights["shared_heads.depth.proj.weight"] = torch.zeros(5, 5)
    save_file(weights, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"model\.safetensors: shared_heads\.depth\.proj\.weight has shape \[5, 5\], "
                                         r"the model of config\.json expects \[32, 32\]"):
        CodeBindModel.from_pretrained(tmp_path / "m")


def test_a_truncated_weights_file_without_checksums_is_named(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model_checksums.json").unlink()
    file = tmp_path / "m" / "model.safetensors"
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(ValueError, match=re.escape(str(file)) + " is corrupted or truncated: its safetensors header"):
        CodeBindModel.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize("edit, error, message", [
    (lambda c: c.pop("ids"), ValueError, r"index\.json lacks the required keys \['ids'\]"),
    (lambda c: c.update(count="4"), TypeError, r"index\.json: 'count' must be int, got str"),
    (lambda c: c.update(metadata=[{}]), ValueError, r"index\.json: 4 ids and 1 metadata entries for count 4"),
])
def test_an_index_json_that_breaks_the_schema_names_the_key(model, tmp_path, edit, error, message):
    from codebind_hf.adapters.integrity import seal_json
    from codebind_hf.index.core import CodeBindIndex

    index = CodeBindIndex.from_model(model, modality="depth", backend="torch")
    index.add_inputs(model, "depth", torch.randn(4, 1, 16, 16))
    folder = index.save(tmp_path / "index")
    config = json.loads((folder / "index.json").read_text())
    config.pop("content_sha256")
    edit(config)
    (folder / "index.json").write_text(seal_json(config))  # well sealed, but not an index.json this library reads
    with pytest.raises(error, match=message):
        CodeBindIndex.load(folder, backend="torch")


# ---------------------------------------------------------------------------------------------- training
def test_a_diverging_run_stops_naming_the_step_the_lr_and_the_loss(tmp_path):
    from codebind_hf.training.config import TrainConfig
    from codebind_hf.training.train_path import train
    from training_toys import ToyProcessor, tiny_run_values, tiny_training_workdir

    torch.set_num_threads(1)
    workdir = tiny_training_workdir(tmp_path)
    values = tiny_run_values(workdir, tmp_path / "run", str(workdir / "data"), max_train_steps=4, checkpointing_steps=None,
                             save_full_model=False, learning_rate=1e30, learning_rate_new=1e30, max_grad_norm=None)
    with pytest.raises(FloatingPointError, match=r"training diverged at step \d+ \(learning rate .*1e\+30.*\): ") as error:
        train(TrainConfig.from_dict(values), processor=ToyProcessor())
    message = str(error.value)
    # Either a loss term went non-finite (named), or the weights did and the forward pass met them (named, with
    # the last value of every loss).
    assert re.search(r"the loss term\(s\) \w+=(nan|inf|-inf)", message) or (
        re.search(r"(non-finite trainable tensors: \[|largest trainable weights: \S+ \(max \|w\| )", message)
        and "last losses: align=" in message), message
