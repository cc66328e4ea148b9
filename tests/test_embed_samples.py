"""The README's main job: files -> tiny model -> similarity table."""

import wave

import numpy as np
import pytest
import torch
from PIL import Image

from codebind_hf.cli.embed_samples import embed_samples, load_audio, load_image, main


def _write_samples(folder, names=("cat", "owl")):
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        Image.fromarray(rng.integers(0, 255, (40 + 10 * i, 50, 3), dtype=np.uint8)).save(folder / f"{name}_image.jpg")
        tone = (0.3 * np.sin(2 * np.pi * (300 + 200 * i) * np.arange(16000) / 16000) * 32767).astype(np.int16)
        with wave.open(str(folder / f"{name}_audio.wav"), "wb") as handle:
            handle.setnchannels(2)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            handle.writeframes(np.stack([tone, np.zeros_like(tone)], 1).tobytes())


def test_embed_samples_prints_unit_cosine_table(tmp_path, capsys):
    _write_samples(tmp_path)
    result = embed_samples(tmp_path)
    table = capsys.readouterr().out
    assert "cat" in table and "owl" in table
    sim = result["similarity"]
    assert sim.shape == (2, 2) and (sim.abs() <= 1 + 1e-5).all()
    assert result["codes"].shape == (2, 64 // 8)
    # deterministic: same seed, same table
    assert torch.equal(embed_samples(tmp_path)["similarity"], sim)


def test_loaders_shapes_and_first_channel(tmp_path):
    _write_samples(tmp_path, names=("a",))
    assert load_image(tmp_path / "a_image.jpg").shape == (3, 32, 32)
    spec = load_audio(tmp_path / "a_audio.wav")
    assert spec.shape == (1, 32, 64) and torch.isfinite(spec).all()
    assert spec.std() > 0.5  # the tone is in the first channel; the silent second channel would give a flat map


def test_missing_samples_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="No \\*_image.jpg"):
        main(["--samples", str(tmp_path)])
