"""Tests of the first-run demo: metric formulas by hand, data helpers, one in-process ``--quick`` run, and (marked
``slow``, run with ``pytest -m slow``) the default ``codebind-demo`` as a console command."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch

from codebind_hf.demo import data as demo_data
from codebind_hf.demo.evaluate import aggregate, class_embeddings, modality_gap, recall_at_k, zero_shot_accuracy
from codebind_hf.demo.run import REPORTED, format_table, main, parse_args
from codebind_hf.encoders.precomputed import PrecomputedEmbeddingConfig, PrecomputedEmbeddingModel

REQUIRED = (
    "zero_shot_acc",
    "audio_to_image_r1",
    "audio_to_text_r1",
    "probe_voice_shared",
    "probe_voice_specific",
    "probe_voice_concat",
    "probe_speed_shared",
    "probe_speed_specific",
    "codebook_usage",
)


# ---------------------------------------------------------------------------------------------- metrics
def test_zero_shot_and_class_embeddings_by_hand():
    text = torch.tensor([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0], [0.2, 1.0]])
    classes = class_embeddings(text, torch.tensor([0, 0, 1, 1]), num_classes=2)
    expected = torch.nn.functional.normalize(torch.tensor([[2.0, 0.2], [0.2, 2.0]]), dim=-1)
    assert torch.allclose(classes, expected)
    queries = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.8, 0.3]])
    # third query is closest to class 0 but labelled 1: 2 of 3 right
    assert zero_shot_accuracy(queries, torch.tensor([0, 1, 1]), classes) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same length"):
        zero_shot_accuracy(queries, torch.tensor([0, 1]), classes)


def test_recall_at_k_by_hand():
    gallery = torch.eye(3)
    gallery_labels = torch.tensor([0, 1, 2])
    queries = torch.tensor([[1.0, 0.5, 0.0], [0.9, 0.0, 0.3]])  # ranks: (0, 1, 2) and (0, 2, 1)
    recall = recall_at_k(queries, torch.tensor([1, 2]), gallery, gallery_labels, ks=(1, 2, 3))
    assert recall == {1: 0.0, 2: 1.0, 3: 1.0}


def test_modality_gap_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # centroid (0.5, 0.5)
    b = torch.tensor([[-1.0, 0.0], [-1.0, 0.0]])  # centroid (-1, 0)
    assert modality_gap(a, b) == pytest.approx(math.hypot(1.5, 0.5))
    assert modality_gap(a, a.flip(0)) == 0.0


def test_aggregate_mean_std_and_missing():
    runs = [{"a": 0.5, "b": None}, {"a": 0.7, "b": None}, {"a": 0.9, "b": None}]
    out = aggregate(runs)
    assert out["a"]["mean"] == pytest.approx(0.7)
    assert out["a"]["std"] == pytest.approx(0.2)  # sample std of (0.5, 0.7, 0.9)
    assert out["b"] == {"mean": None, "std": None}
    assert aggregate([{"a": 0.3}])["a"] == {"mean": 0.3, "std": 0.0}


def test_format_table_marks_missing():
    results = {"x": {"m": {"mean": 0.5, "std": 0.01}}, "y": {"m": {"mean": None, "std": None}}}
    table = format_table(results, ["x", "y"], metrics=("m",)).splitlines()
    assert table[0].split() == ["metric", "x", "y"]
    assert table[2].split() == ["m", "0.500", "±", "0.010", "-"]


# ---------------------------------------------------------------------------------------------- data helpers
def test_parse_wav_reads_to_the_end_despite_placeholder_sizes():
    samples = np.array([0, 16384, -32768, 32767], dtype="<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(samples.tobytes())
    raw = bytearray(buffer.getvalue())
    raw[4:8] = raw[40:44] = (0x7FFFFFFF).to_bytes(4, "little")  # what espeak-ng --stdout writes
    audio, rate = demo_data._parse_wav(bytes(raw))
    assert rate == 22050
    np.testing.assert_allclose(audio, samples / 32768.0)
    with pytest.raises(ValueError, match="WAV"):
        demo_data._parse_wav(b"not a wav file at all")


def test_features_shapes_and_resampling():
    filters = demo_data.mel_filterbank(32, 512, 16000)
    assert filters.shape == (32, 257)
    assert (filters >= 0).all() and (filters.sum(1) > 0).all()  # every mel band has some FFT bins
    tone = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050).astype(np.float32)
    resampled = demo_data.resample(tone, 22050, 16000)
    assert len(resampled) == 16000
    spec = demo_data.DEFAULT_SPEC
    clip = demo_data.place_clip(resampled, spec, np.random.default_rng(0))
    assert clip.shape == (spec.num_samples,)
    np.testing.assert_array_equal(clip, demo_data.place_clip(resampled, spec, np.random.default_rng(0)))  # seeded
    mel = demo_data.log_mel(clip, spec.n_fft, spec.hop_length, filters)
    assert mel.shape == (spec.n_mels, spec.n_frames)
    # A 440 Hz tone puts its energy in the mel band whose filter peaks nearest 440 Hz.
    peak_hz = filters.argmax(1) * 16000 / 512
    assert mel.mean(1).argmax() == np.abs(peak_hz - 440).argmin()
    with pytest.raises(ValueError, match="positive"):
        demo_data.resample(tone, 0, 16000)


def test_spec_validation_and_fingerprint():
    assert demo_data.DEFAULT_SPEC.fingerprint() != demo_data.QUICK_SPEC.fingerprint()
    assert demo_data.DemoDataSpec().fingerprint() == demo_data.DEFAULT_SPEC.fingerprint()
    with pytest.raises(ValueError, match="disjoint"):
        demo_data.DemoDataSpec(train_voices=("m1", "m2"), test_voices=("m2",))


def test_precomputed_embedding_tower():
    model = PrecomputedEmbeddingModel(PrecomputedEmbeddingConfig(num_embeddings=3, hidden_size=4, num_hidden_layers=0))
    table = torch.arange(12.0).reshape(3, 4)
    model.load_table(table)
    assert torch.equal(model(torch.tensor([[2], [1]])).last_hidden_state[:, 0], table[[2, 1]])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model(torch.tensor([[3]]))
    with pytest.raises(ValueError, match="shape"):
        model.load_table(torch.zeros(2, 4))


def test_cli_rejects_bad_seeds():
    with pytest.raises(SystemExit):
        parse_args(["--seeds", "0"])


# ---------------------------------------------------------------------------------------------- the quick run
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    try:
        demo_data.ensure_espeak()
    except RuntimeError as error:  # no espeak-ng and no way to install it here
        pytest.skip(str(error))
    root = tmp_path_factory.mktemp("demo")
    out, cache = root / "out", root / "cache"
    assert main(["--quick", "--ablations", "--output", str(out), "--cache-dir", str(cache), "--no-progress"]) == 0
    return out, cache, json.loads((out / "results.json").read_text())


def test_quick_run_results(quick_run):
    out, _, results = quick_run
    assert set(results) == {"codebind", "baseline", "codebook_only", "decoupling_only", "meta"}
    for arm in ("codebind", "baseline", "codebook_only", "decoupling_only"):
        assert set(REQUIRED) <= set(results[arm])
        for metric in REPORTED:
            entry = results[arm][metric]
            assert set(entry) == {"mean", "std"}
            if entry["mean"] is not None:
                upper = 2.0 if metric.startswith("modality_gap") else 1.0  # centroid distance of unit vectors
                assert 0.0 <= entry["mean"] <= upper, (arm, metric, entry)
                assert entry["std"] == 0.0  # one seed
    # The baseline has one embedding (under *_shared) and no codebook.
    for metric in ("probe_voice_specific", "probe_voice_concat", "probe_speed_specific", "codebook_usage"):
        assert results["baseline"][metric]["mean"] is None
    assert results["codebind"]["probe_voice_specific"]["mean"] is not None
    assert results["codebind"]["codebook_usage"]["mean"] > 0.5
    # Ablations: a codebook without decoupling has no specific part; decoupling without a codebook has no usage.
    assert results["codebook_only"]["probe_voice_specific"]["mean"] is None
    assert results["codebook_only"]["codebook_usage"]["mean"] > 0.5
    assert results["decoupling_only"]["probe_voice_specific"]["mean"] is not None
    assert results["decoupling_only"]["codebook_usage"]["mean"] is None
    # Both arms trained from the same bridge: images are classified identically (the bridge is frozen).
    assert results["baseline"]["image_zero_shot_acc"] == results["decoupling_only"]["image_zero_shot_acc"]
    # Every arm (and the bridge) trained: the loss went down.
    for arm, runs in results["meta"]["losses"].items():
        assert runs[0]["last"] < runs[0]["first"], (arm, runs)
    # The bridge was worth aligning to: images are classified well above chance (0.1) by the prompts.
    assert results["codebind"]["image_zero_shot_acc"]["mean"] > 0.3
    for name in results["meta"]["plots"].values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_run_cache_is_checked(quick_run):
    _, cache, _ = quick_run
    spec = demo_data.QUICK_SPEC
    folder = cache / f"v{spec.version}-{spec.fingerprint()}"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == demo_data.file_sha256(folder / "data.safetensors")
    data = demo_data._read_cache(folder, spec)
    n_train = len(spec.train_voices) * 10 * len(spec.speeds) * len(spec.pitches)
    assert data is not None and data.audio_train.shape == (n_train, 1, spec.n_mels, spec.n_frames)
    assert data.text_embeddings.shape == (10 * len(spec.templates), 384)
    assert torch.allclose(data.text_embeddings.norm(dim=-1), torch.ones(len(data.prompts)), atol=1e-5)
    assert set(data.audio_test_meta[:, 1].tolist()).isdisjoint(data.audio_train_meta[:, 1].tolist())  # held-out voices
    # A tampered file or another spec is not served from the cache.
    manifest["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert demo_data._read_cache(folder, spec) is None
    assert demo_data._read_cache(folder, demo_data.DEFAULT_SPEC) is None
    assert math.isfinite(float(data.audio_train.mean()))


def test_processor_errors_name_what_was_wrong():
    from codebind_hf.demo.processing import DemoProcessor

    spec = demo_data.DEFAULT_SPEC
    processor = DemoProcessor(["the digit one"], spec, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="16000 Hz, got sampling_rate=8000"):
        processor(audio=[np.zeros(spec.num_samples)], sampling_rate=8000)
    with pytest.raises(ValueError, match="not in the demo's prompt table"):
        processor(text=["the digit two"])
    with pytest.raises(ValueError, match=r"shape \(1, 16, 16\)"):
        processor(images=[np.zeros((16, 16))])
    with pytest.raises(ValueError, match=rf"\(N, {spec.num_samples}\)"):
        processor(audio=[np.zeros(100)], sampling_rate=16000)
    with pytest.raises(TypeError, match="depth"):
        processor(depth=[np.zeros((1, 16, 16))])


def test_processor_reproduces_the_cached_features(quick_run):
    """The trainer's processor (raw 16 kHz waveforms -> normalised log-mels) gives exactly the evaluation inputs."""
    from codebind_hf.demo.processing import DemoProcessor

    _, cache, _ = quick_run
    data = demo_data.load_demo_data(demo_data.QUICK_SPEC, cache_dir=cache, progress=False)
    processor = DemoProcessor.from_data(data)
    out = processor(audio=list(data.waves_test[:7].numpy()), sampling_rate=16000, text=[data.prompts[13]])
    torch.testing.assert_close(out["audio_values"], data.audio_test[:7], rtol=0, atol=1e-6)
    assert out["input_ids"].tolist() == [[13]]


# ---------------------------------------------------------------------------------------------- the default run
@pytest.mark.slow
def test_default_console_run(tmp_path):
    """``codebind-demo`` as a user runs it first: 3 seeds, every reported metric, the plots (about 10 minutes)."""
    try:
        demo_data.ensure_espeak()
    except RuntimeError as error:
        pytest.skip(str(error))
    entry = shutil.which("codebind-demo")
    command = [entry] if entry else [sys.executable, "-m", "codebind_hf.demo.run"]
    out = tmp_path / "out"
    done = subprocess.run([*command, "--output", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"codebind", "baseline", "meta"}
    assert results["meta"]["quick"] is False and results["meta"]["seeds"] == [0, 1, 2]
    for arm in ("codebind", "baseline"):
        assert set(REPORTED) <= set(results[arm])
    for name in results["meta"]["plots"].values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
