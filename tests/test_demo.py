"""Tests of the first-run demo: metric formulas by hand, data helpers, the sweep's subsets and conditions, one
``--quick`` run, one tiny in-process sweep (structure, same rows in the same order, nested fractions) and (marked
``slow``, run with ``pytest -m slow``) the default ``codebind-demo`` as a console command."""

from __future__ import annotations

import dataclasses
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
from codebind_hf.demo.conditions import condition_data, vibration_view
from codebind_hf.demo.evaluate import aggregate, class_embeddings, modality_gap, recall_at_k, zero_shot_accuracy
from codebind_hf.demo.processing import RowTrace
from codebind_hf.demo.run import DEFAULT_FRACTIONS, DEFAULT_SEEDS, REPORTED, format_sweep_table, format_table, main, parse_args, run_demo
from codebind_hf.demo.sweep import nest_results, paired_rows, point_budget, row_order_digest, subset_shape, sweep_order
from codebind_hf.demo.train import ARMS, QUICK_BUDGET, path_dataset
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


@pytest.mark.parametrize(
    "argv", [["--seeds", "0"], ["--quick", "--full"], ["--fractions", "0"], ["--fractions", "1.5"], ["--width", "60"],
             ["--conditions", "radar"]],
)  # fmt: skip
def test_cli_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)


# ---------------------------------------------------------------------------------------------- sweep: subsets, conditions
def _train_meta(spec=demo_data.DEFAULT_SPEC) -> torch.Tensor:
    """The training metadata of ``spec`` (digit, voice, speed, pitch), in the order the data builder writes it."""
    return torch.tensor([(d, v, s, p) for v in range(len(spec.train_voices)) for d in range(10)
                         for s in range(len(spec.speeds)) for p in range(len(spec.pitches))])  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_paired_subsets_are_nested_with_fewer_voices_and_fewer_clips(seed):
    meta = _train_meta()  # 14 voices x 120 clips
    fractions = (0.02, 0.05, 0.2, 1.0)
    subsets = {f: paired_rows(meta, f, seed) for f in fractions}
    assert [len(subsets[f]) for f in fractions] == [34, 84, 336, 1680]  # round(f * 1680)
    for small, large in zip(fractions, fractions[1:]):
        assert torch.equal(subsets[large][: len(subsets[small])], subsets[small])  # a prefix: the 2 % rows are in the 5 %
    assert sorted(subsets[1.0].tolist()) == list(range(1680))
    shapes = {f: subset_shape(meta, subsets[f]) for f in fractions}
    # Fewer voices *and* fewer clips per voice, about sqrt(f) of each. By hand: a row's level is max(voice rank / 14,
    # clip rank / 120); 34 rows = 2 voices (level 2/14) x 17 clips (17/120 <= 2/14); 84 = 3 x 28 (28/120 < 4/14);
    # 336 = 6 x 56 (56/120 < 7/14).
    assert [(shapes[f]["voices"], shapes[f]["max_clips_per_voice"], shapes[f]["min_clips_per_voice"]) for f in fractions] == [
        (2, 17, 17), (3, 28, 28), (6, 56, 56), (14, 120, 120)]  # fmt: skip
    for f in fractions:  # every digit, and per voice no digit more than once ahead of another (stratified order)
        assert shapes[f]["digits"] == 10
        rows = subsets[f]
        for voice in meta[rows, 1].unique():
            counts = torch.bincount(meta[rows][meta[rows, 1] == voice, 0], minlength=10)
            assert counts.max() - counts.min() <= 1, (f, int(voice), counts.tolist())
    assert not torch.equal(sweep_order(meta, seed), sweep_order(meta, seed + 1))  # the subsets depend on the seed
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        paired_rows(meta, 0.0, seed)


def test_point_budget_keeps_steps_and_caps_the_batch():
    budget = dataclasses.replace(QUICK_BUDGET, batch_size=48, path_steps=60)
    assert point_budget(budget, 34).batch_size == 34 and point_budget(budget, 34).path_steps == 60
    assert point_budget(budget, 1000) == budget


def test_row_order_digest_sees_rows_order_and_batches():
    digests = {row_order_digest(b) for b in ([[1, 2], [3, 4]], [[2, 1], [3, 4]], [[1, 2, 3], [4]], [[1, 2], [3, 5]])}
    assert len(digests) == 4
    assert row_order_digest([[1, 2], [3, 4]]) == row_order_digest([[1, 2], [3, 4]])


def test_vibration_view_filters_and_adds_seeded_noise():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    clips = np.stack([tone, np.sin(2 * np.pi * 3000 * t).astype(np.float32), tone])
    view = vibration_view(clips, 16000, seed=3, snr_db=(10.0, 10.0))
    clean = vibration_view(clips, 16000, seed=3, snr_db=(200.0, 200.0))
    noise_db = 10 * np.log10(np.mean(clean[0] ** 2) / np.mean((view[0] - clean[0]) ** 2))
    assert noise_db == pytest.approx(10.0, abs=0.3)  # white noise at the drawn SNR
    assert np.sqrt(np.mean(clean[1, 4000:] ** 2)) < 0.01  # 3 kHz is far outside the 60-500 Hz band
    # Seeded per row: a row's view does not depend on the other rows; two rows with the same clip differ in noise.
    np.testing.assert_array_equal(vibration_view(clips[:1], 16000, seed=3, snr_db=(10.0, 10.0))[0], view[0])
    assert not np.array_equal(view[0], view[2])
    with pytest.raises(ValueError, match="Nyquist"):
        vibration_view(clips, 16000, seed=0, band=(60.0, 9000.0))


def test_row_trace_names_rows_and_rejects_strangers():
    waves = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    trace = RowTrace(waves)
    trace.record([waves[3], waves[0].astype(np.float64)])  # the collator may hand over float64 copies
    assert trace.batches == [[3, 0]]
    with pytest.raises(KeyError, match="not rows"):
        trace.record([waves[1] + 1])
    with pytest.raises(ValueError, match="duplicates"):
        RowTrace(np.stack([waves[0], waves[0]]))


def _toy_data(n_voices: int = 2) -> demo_data.DemoData:
    """A small random `DemoData` (real shapes, 2 train voices x 20 clips) for the helpers that need no real audio."""
    spec = demo_data.DemoDataSpec(train_voices=("m1", "m2")[:n_voices], test_voices=("f1",), speeds=(110, 160), pitches=(20,))
    rng = torch.Generator().manual_seed(0)
    meta = _train_meta(spec)
    n_img = 50
    return demo_data.DemoData(
        waves_train=torch.randn(len(meta), spec.num_samples, generator=rng), waves_test=torch.randn(20, spec.num_samples, generator=rng),
        audio_stats=torch.tensor([0.0, 1.0]), audio_train=torch.zeros(len(meta), 1, spec.n_mels, spec.n_frames),
        audio_train_meta=meta, audio_test=torch.zeros(20, 1, spec.n_mels, spec.n_frames), audio_test_meta=_train_meta(spec)[:20],
        images_train=torch.rand(n_img, 1, 16, 16, generator=rng), image_train_labels=torch.arange(n_img) % 10,
        images_test=torch.rand(10, 1, 16, 16, generator=rng), image_test_labels=torch.arange(10),
        text_embeddings=torch.randn(70, 384, generator=rng), prompt_labels=torch.arange(10).repeat_interleave(7),
        prompts=[f"p{i}" for i in range(70)], spec=spec,
    )  # fmt: skip


def test_path_dataset_subset_keeps_each_clips_image():
    data = _toy_data()
    full = path_dataset(data, seed=0)
    assert len(full) == 40 and full.features["label"].names[3] == "three"
    rows = torch.tensor([7, 2, 31])
    subset = path_dataset(data, seed=0, rows=rows)
    images = data.images_train.numpy()
    for i, row in enumerate(rows.tolist()):
        np.testing.assert_array_equal(subset[i]["audio"], data.waves_train[row].numpy())
        np.testing.assert_array_equal(subset[i]["image"], full[row]["image"])  # same pair in every subset
        (picked,) = np.nonzero((images == subset[i]["image"]).all(axis=(1, 2, 3)))[0]
        assert subset[i]["label"] == data.audio_train_meta[row, 0] == data.image_train_labels[picked]  # same digit


def test_condition_data_replaces_only_the_audio():
    data = _toy_data()
    assert condition_data(data, "speech") is data
    view = condition_data(data, "vibration")
    assert view.waves_train.shape == data.waves_train.shape and not torch.equal(view.waves_train, data.waves_train)
    assert view.audio_train.shape == data.audio_train.shape
    assert float(view.audio_train.mean()) == pytest.approx(0.0, abs=1e-4)  # normalised with the view's own stats
    assert float(view.audio_train.std()) == pytest.approx(1.0, abs=1e-3)
    assert view.images_train is data.images_train and torch.equal(view.audio_train_meta, data.audio_train_meta)
    with pytest.raises(ValueError, match="Unknown condition"):
        condition_data(data, "radar")


def test_nest_results_and_sweep_table_by_hand():
    runs = [{"condition": "speech", "fraction": f, "arm": arm, "seed": seed, "metrics": {"zero_shot_acc": acc, "probe_voice_specific": spec,
             "probe_voice_shared": 0.5}}
            for f, arm, seed, acc, spec in [(0.02, "codebind", 1, 0.4, 0.3), (0.02, "codebind", 0, 0.2, 0.5),
                                            (0.02, "baseline", 0, 0.6, None), (0.02, "baseline", 1, 0.8, None)]]  # fmt: skip
    sweep = nest_results(runs)
    entry = sweep["speech"]["0.02"]["codebind"]["zero_shot_acc"]
    assert entry["per_seed"] == [0.2, 0.4] and entry["mean"] == pytest.approx(0.3)  # seeds in order
    assert entry["std"] == pytest.approx(math.sqrt(0.02))
    assert sweep["speech"]["0.02"]["baseline"]["probe_voice_specific"] == {"mean": None, "std": None, "per_seed": [None, None]}
    table = format_sweep_table(sweep, ["codebind", "baseline"], {"0.02": 34}).splitlines()
    assert table[3].split() == ["speech", "2%", "34", "0.300", "±", "0.141", "0.700", "±", "0.141"]
    # the baseline's specific-part probe row shows its one embedding (probe_voice_shared)
    voice = table[table.index(next(line for line in table if line.startswith("voice probe"))) + 3].split()
    assert voice == ["speech", "2%", "34", "0.400", "±", "0.141", "0.500", "±", "0.000"]


# ---------------------------------------------------------------------------------------------- the quick run
@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    try:
        demo_data.ensure_espeak()
    except RuntimeError as error:  # no espeak-ng and no way to install it here
        pytest.skip(str(error))
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, demo_cache):
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["--quick", "--output", str(out), "--cache-dir", str(demo_cache), "--no-progress"]) == 0
    return out, demo_cache, json.loads((out / "results.json").read_text())


def test_quick_run_results(quick_run):
    out, _, results = quick_run
    assert set(results) == {"sweep", "meta"}
    assert set(results["sweep"]) == {"speech", "vibration"}
    for condition, by_fraction in results["sweep"].items():
        assert list(by_fraction) == ["0.2"]  # --quick: one fraction, one seed
        point = by_fraction["0.2"]
        assert set(point) == {"codebind", "baseline"}
        for arm, metrics in point.items():
            assert set(REPORTED) <= set(metrics)
            for metric in REPORTED:
                entry = metrics[metric]
                assert set(entry) == {"mean", "std", "per_seed"} and len(entry["per_seed"]) == 1
                if entry["mean"] is not None:
                    upper = 2.0 if metric.startswith("modality_gap") else 1.0  # centroid distance of unit vectors
                    assert 0.0 <= entry["mean"] <= upper, (condition, arm, metric, entry)
                    assert entry["std"] == 0.0  # one seed
        # The baseline has one embedding (under *_shared) and no codebook.
        for metric in ("probe_voice_specific", "probe_voice_concat", "probe_speed_specific", "codebook_usage"):
            assert point["baseline"][metric]["mean"] is None
        assert point["codebind"]["probe_voice_specific"]["mean"] is not None
        assert point["codebind"]["codebook_usage"]["mean"] > 0.5
        # Both arms trained from the same frozen bridge: the bridge's own embeddings classify images identically,
        # well above chance; through CodeBind's trained codebook they are that arm's (the baseline has none).
        assert point["baseline"]["image_zero_shot_acc"] == point["codebind"]["image_zero_shot_acc"]
        assert point["codebind"]["image_zero_shot_acc"]["mean"] > 0.3
        assert point["codebind"]["image_zero_shot_acc_quantized"]["mean"] > 0.3
        assert point["baseline"]["image_zero_shot_acc_quantized"]["mean"] is None
        # Every arm trained: the loss went down.
        for arm, runs in results["meta"]["points"][condition]["0.2"].items():
            assert runs[0]["loss"]["last"] < runs[0]["loss"]["first"], (condition, arm, runs)
    # The two conditions are different signals of the same rows: same subset, different metrics.
    assert results["sweep"]["speech"]["0.2"]["codebind"]["zero_shot_acc"] != results["sweep"]["vibration"]["0.2"]["codebind"]["zero_shot_acc"]
    assert results["meta"]["bridges"]["0"]["last"] < results["meta"]["bridges"]["0"]["first"]
    bridges = {run["bridge_sha256"] for by_fraction in results["meta"]["points"].values() for by_arm in by_fraction.values()
               for runs in by_arm.values() for run in runs}  # fmt: skip
    assert len(bridges) == 1  # one seed: every condition's every arm kept the same stage-0 bridge, bit for bit
    assert set(results["meta"]["plots"]) >= {"sweep", "tsne_speech", "tsne_vibration", "codebook_usage", "probes", "losses"}
    for name in results["meta"]["plots"].values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- a tiny sweep
TINY_FRACTIONS = (0.05, 0.15)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, demo_cache):
    """Two fractions, every arm, one seed, a few steps, in this process (the structure, not the numbers)."""
    budget = dataclasses.replace(QUICK_BUDGET, bridge_steps=4, path_steps=5, batch_size=16)
    out = tmp_path_factory.mktemp("sweep")
    results = run_demo(quick=True, output=out, ablations=True, cache_dir=demo_cache, seeds=1, progress=False, workers=1,
                       fractions=list(TINY_FRACTIONS), conditions=["speech"], budget=budget)  # fmt: skip
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    return budget, results


def test_sweep_structure(tiny_sweep):
    _, results = tiny_sweep
    keys = [f"{f:g}" for f in TINY_FRACTIONS]
    assert list(results["sweep"]) == ["speech"] and sorted(results["sweep"]["speech"]) == keys
    for fraction in keys:
        point = results["sweep"]["speech"][fraction]
        assert set(point) == set(ARMS)
        for arm, metrics in point.items():
            assert set(REPORTED) <= set(metrics)
            assert all(set(e) == {"mean", "std", "per_seed"} and len(e["per_seed"]) == 1 for e in metrics.values())
        # a codebook without decoupling has no specific part; decoupling without a codebook has no usage
        assert point["codebook_only"]["probe_voice_specific"]["mean"] is None
        assert point["codebook_only"]["codebook_usage"]["mean"] is not None
        assert point["decoupling_only"]["probe_voice_specific"]["mean"] is not None
        assert point["decoupling_only"]["codebook_usage"]["mean"] is None
        assert point["no_reconstruction"]["probe_voice_specific"]["mean"] is not None
        assert point["no_reconstruction"]["codebook_usage"]["mean"] is not None
        # every arm kept the same frozen bridge: its own (unquantised) image embeddings classify images identically
        assert len({json.dumps(point[arm]["image_zero_shot_acc"]) for arm in ARMS}) == 1
    assert results["meta"]["fractions"] == keys and results["meta"]["seeds"] == [0]


def test_sweep_fractions_are_nested(tiny_sweep):
    _, results = tiny_sweep
    small, large = (results["meta"]["subsets"][f"{f:g}"]["0"] for f in TINY_FRACTIONS)
    assert (len(small), len(large)) == (21, 63)  # of QUICK_SPEC's 420 training clips
    assert large[: len(small)] == small  # the 5 % rows are the first rows of the 15 %
    assert len(set(large)) == len(large)


def test_every_arm_saw_the_same_rows_in_the_same_order(tiny_sweep):
    """The rows the processor received (a trace of waveform hashes) are the trainer's sampler order over the subset,
    for every arm: recomputed here from `EpochBatchSampler` alone."""
    from codebind_hf.training.batching import EpochBatchSampler

    budget, results = tiny_sweep
    digests, bridges = {}, set()
    for fraction in (f"{f:g}" for f in TINY_FRACTIONS):
        rows = results["meta"]["subsets"][fraction]["0"]
        batch = min(budget.batch_size, len(rows))
        sampler, expected, epoch = EpochBatchSampler(range(len(rows)), batch, seed=0), [], 0
        while len(expected) < budget.path_steps:
            sampler.set_epoch(epoch)
            expected += [[rows[i] for i in b] for b in sampler][: budget.path_steps - len(expected)]
            epoch += 1
        for arm, runs in results["meta"]["points"]["speech"][fraction].items():
            assert runs[0]["row_order"] == {"digest": row_order_digest(expected), "steps": budget.path_steps}, (fraction, arm)
            assert runs[0]["batch_size"] == batch
            bridges.add(runs[0]["bridge_sha256"])
        digests[fraction] = row_order_digest(expected)
    assert len(set(digests.values())) == len(digests)  # different fractions, different rows
    assert len(bridges) == 1  # and every arm at every fraction kept the one stage-0 bridge of the seed


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


def test_memoizing_processor_gives_the_same_features_and_computes_each_clip_once(monkeypatch):
    from codebind_hf.demo import processing
    from codebind_hf.demo.processing import DemoProcessor, RowTrace

    spec = demo_data.DEFAULT_SPEC
    clips = np.random.default_rng(0).standard_normal((5, spec.num_samples)).astype(np.float32)
    plain = DemoProcessor(["p"], spec, torch.tensor([0.5, 2.0]))
    trace = RowTrace(clips)
    memo = DemoProcessor(["p"], spec, torch.tensor([0.5, 2.0]), trace, memoize=True)
    computed = []
    real = processing.audio_features
    monkeypatch.setattr(processing, "audio_features", lambda w, *a: computed.append(len(w)) or real(w, *a))
    batches = ([3, 1], [1, 4, 3, 0], [0, 1, 3, 4])
    got = [memo(audio=list(clips[batch]), sampling_rate=16000)["audio_values"] for batch in batches]
    assert computed == [2, 2]  # clips 3 and 1, then 4 and 0, then nothing new
    for batch, values in zip(batches, got):
        torch.testing.assert_close(values, plain(audio=list(clips[batch]), sampling_rate=16000)["audio_values"], rtol=0, atol=0)
    assert computed == [2, 2, 2, 4, 4]  # the plain processor computes every clip of every batch
    assert trace.batches == [[3, 1], [1, 4, 3, 0], [0, 1, 3, 4]]


# ---------------------------------------------------------------------------------------------- the default run
@pytest.mark.slow
def test_default_console_run(tmp_path):
    """``codebind-demo`` as a user runs it first: the reduced sweep, every reported metric, the plots (about 10
    minutes on a quiet 2-core machine)."""
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
    assert set(results) == {"sweep", "meta"}
    meta = results["meta"]
    assert meta["quick"] is False and meta["full"] is False and meta["seeds"] == list(range(DEFAULT_SEEDS))
    assert meta["fractions"] == [f"{f:g}" for f in DEFAULT_FRACTIONS] and meta["conditions"] == ["speech", "vibration"]
    for by_fraction in results["sweep"].values():
        for point in by_fraction.values():
            for arm in ("codebind", "baseline"):
                assert set(REPORTED) <= set(point[arm])
    for name in results["meta"]["plots"].values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
