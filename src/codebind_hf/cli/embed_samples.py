"""Main job on its embedded default: embed the bundled sample images and sounds and print their similarities.

Uses a tiny random CodeBind model (vision bridge + audio target, transformers ViT towers), so the numbers
show the pipeline working end to end — files -> tensors -> towers -> heads -> codebooks -> embeddings — not
trained similarities. Sample files: ``../shared/assets/imagebind_samples`` beside the checkout, or
``--samples DIR``.
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..configuration_codebind import CodeBindConfig
from ..modeling_codebind import CodeBindModel

IMAGE_SIZE = 32
SPECTROGRAM_SHAPE = (32, 64)  # mel-like bands x frames


def default_samples_dir() -> Path:
    return Path(__file__).resolve().parents[3].parent / "shared" / "assets" / "imagebind_samples"


def load_image(path: Path) -> torch.Tensor:
    """RGB, short side resized and centre-cropped to IMAGE_SIZE, scaled to [-1, 1]: `(3, S, S)`."""
    image = Image.open(path).convert("RGB")
    scale = IMAGE_SIZE / min(image.size)
    image = image.resize((max(IMAGE_SIZE, round(image.width * scale)), max(IMAGE_SIZE, round(image.height * scale))), Image.BICUBIC)
    left, top = (image.width - IMAGE_SIZE) // 2, (image.height - IMAGE_SIZE) // 2
    array = np.asarray(image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE)), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def load_audio(path: Path) -> torch.Tensor:
    """First channel of a 16-bit PCM wav as a log-power spectrogram pooled to SPECTROGRAM_SHAPE: `(1, F, T)`."""
    with wave.open(str(path)) as handle:
        if handle.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * handle.getsampwidth()}-bit samples")
        frames = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16)
        signal = frames.reshape(-1, handle.getnchannels())[:, 0].astype(np.float32) / 32768.0
    if signal.size < 1024:
        raise ValueError(f"{path}: audio too short ({signal.size} samples)")
    spectrum = torch.stft(torch.from_numpy(signal), n_fft=512, hop_length=256, window=torch.hann_window(512), return_complex=True)
    log_power = torch.log(spectrum.abs().pow(2) + 1e-6)[None, None]
    pooled = torch.nn.functional.adaptive_avg_pool2d(log_power, SPECTROGRAM_SHAPE)[0]
    return (pooled - pooled.mean()) / (pooled.std() + 1e-6)


def tiny_model(seed: int = 0) -> CodeBindModel:
    vit = {"model_type": "vit", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
    config = CodeBindConfig(
        modalities={
            "vision": {"family": "hf", "backbone": {**vit, "image_size": IMAGE_SIZE, "patch_size": 8}},
            "audio": {"family": "hf", "backbone": {**vit, "image_size": list(SPECTROGRAM_SHAPE), "patch_size": 8, "num_channels": 1}},
        },
        bridges=["vision"],
        paths={"audio": {"bridges": ["vision"]}},
        embed_dim=64,
        specific_dim=64,
        quantizer={"shared_codebook_size": 128, "specific_codebook_size": 64},
        decoder={"enabled": False},
    )
    torch.manual_seed(seed)
    model = CodeBindModel(config).eval()
    # A demo of the mechanics on a random model, said so in its output: its random codevectors are used on purpose
    # (a real model's path codebooks come from k-means initialisation and training).
    for book in model.quantizers["audio"].codebooks().values():
        book.initialized.fill_(True)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=None, help="folder with *_image.jpg and *_audio.wav files")
    args = parser.parse_args(argv)
    embed_samples(args.samples or default_samples_dir())
    return 0


def embed_samples(folder: Path) -> dict[str, torch.Tensor]:
    """Embed ``folder``'s ``*_image.jpg`` and ``*_audio.wav`` files, print the similarity table, return it."""
    images = sorted(folder.glob("*_image.jpg"))
    sounds = sorted(folder.glob("*_audio.wav"))
    if not images or not sounds:
        raise SystemExit(f"No *_image.jpg / *_audio.wav samples in {folder}; pass --samples DIR")
    model = tiny_model()
    with torch.no_grad():
        pixel_values = torch.stack([load_image(p) for p in images])
        audio_values = torch.stack([load_audio(p) for p in sounds])
        out = model(pixel_values=pixel_values, audio_values=audio_values)
    names_i = [p.stem.replace("_image", "") for p in images]
    names_a = [p.stem.replace("_audio", "") for p in sounds]
    similarity = out.shared_embeds["audio"] @ out.shared_embeds["vision"].t()
    print(f"Tiny random CodeBind model ({sum(p.numel() for p in model.parameters()):,} parameters); samples from {folder}")
    print("shared-space cosine similarity, audio (rows) x image (columns):")
    print(" " * 8 + "".join(f"{n:>9}" for n in names_i))
    for name, row in zip(names_a, similarity):
        print(f"{name:>8}" + "".join(f"{v:9.3f}" for v in row.tolist()))
    codes = out.codes["audio"]
    books = model.quantizers["audio"].shared
    print(f"audio shared codes {tuple(codes.shape)}: codebook usage {books.usage(codes):.1%}, perplexity {books.perplexity(codes):.1f}")
    return {"similarity": similarity, "codes": codes}


if __name__ == "__main__":
    raise SystemExit(main())
