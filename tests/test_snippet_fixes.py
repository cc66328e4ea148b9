"""What the documented snippets rely on: ``--resume_from_checkpoint latest`` never silently starts over on top of a
finished run, ``data.num_workers: auto``, a ``module:callable`` processor of the working folder, the ``tiny``
config's toy data, video files through the ``video`` extra."""

import logging

import pytest
import torch

from codebind_hf.training.config import TrainConfig, load_config_file, resolve_num_workers
from codebind_hf.training.toy import ToyProcessor, main as toy_main, toy_dataset_dict
from codebind_hf.training.train_path import main as train_main, train
from doc_blocks import ConsoleState


def _tiny(output_dir, **training) -> TrainConfig:
    values = load_config_file("tiny")
    values["training"].update(output_dir=str(output_dir), **training)
    return values


def test_latest_without_a_checkpoint_refuses_to_overwrite_a_finished_run(tmp_path):
    (tmp_path / "run" / "path").mkdir(parents=True)
    (tmp_path / "run" / "train_results.json").write_text("{}")
    config = TrainConfig.from_dict(_tiny(tmp_path / "run", resume_from_checkpoint="latest"))
    with pytest.raises(FileExistsError, match=r"holds no checkpoint of the finished run in .*run \(train_results.json "
                                              r"is there\): starting again from step 0 would overwrite it"):
        train(config, dataset=toy_dataset_dict(8, 4), processor=ToyProcessor())
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["path", "train_results.json"]  # untouched


def test_latest_on_an_empty_folder_starts_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="codebind_hf.training")
    values = _tiny(tmp_path / "fresh", resume_from_checkpoint="latest", max_train_steps=1, checkpointing_steps=None)
    values["codebooks"]["kmeans_init_batches"] = 1
    result = train(TrainConfig.from_dict(values), dataset=toy_dataset_dict(8, 4))  # the config's own processor
    assert result.global_step == 1 and (tmp_path / "fresh" / "path" / "path.safetensors").is_file()
    assert "no checkpoint in" in caplog.text and "starts from step 0" in caplog.text


def test_num_workers_auto_and_its_validation():
    assert resolve_num_workers(0) == 0 and resolve_num_workers(5) == 5
    assert 1 <= resolve_num_workers("auto") <= 8
    assert all(load_config_file(n)["data"].get("num_workers", 0) in (0, "auto") for n in ("sun_d", "audioset", "in1k"))
    with pytest.raises(ValueError, match="data.num_workers must be an integer >= 0 or 'auto', got 'all'"):
        TrainConfig.from_dict({"model": {"name_or_path": "x"}, "path": {"target": "depth"}, "data": {"num_workers": "all"}})


def test_console_script_imports_a_processor_from_the_working_folder(tmp_path, monkeypatch):
    """``data.processor: my_processor:Processor`` next to the data, as a user writes it, without PYTHONPATH=."""
    assert toy_main([str(tmp_path / "toy"), "--train-rows", "8", "--eval-rows", "4"]) == 0
    (tmp_path / "my_processor.py").write_text("from codebind_hf.training.toy import ToyProcessor as Processor\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    with ConsoleState():  # main() sets up logging and warnings for its process: not for this one
        code = train_main(["--config", "tiny", "--dataset", "./toy", "--output_dir", "runs/tiny", "--max_train_steps", "1",
                           "--set", "data.processor=my_processor:Processor", "--set", "codebooks.kmeans_init_batches=1",
                           "--set", "training.checkpointing_steps=null", "--set", "training.disable_tqdm=true"])
    assert code == 0
    assert (tmp_path / "runs" / "tiny" / "path" / "path_config.json").is_file()


def test_video_files_decode_with_the_video_extra(tmp_path):
    """``pip install -e ".[video]"`` (PyAV): a video file gives what its decoded frames give as an array."""
    av = pytest.importorskip("av")
    import numpy as np

    from codebind_hf import CodeBindProcessor

    rng = np.random.default_rng(0)
    with av.open(str(tmp_path / "clip.mp4"), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(8):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(tmp_path / "clip.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    processor = CodeBindProcessor.imagebind()
    from_file = processor(videos=[str(tmp_path / "clip.mp4")])["pixel_values_videos"]
    from_frames = processor(videos=[frames], video_fps=4)["pixel_values_videos"]
    assert from_file.shape == (1, 15, 3, 2, 224, 224)
    assert torch.equal(from_file, from_frames)
