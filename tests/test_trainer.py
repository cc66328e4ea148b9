"""`transformers.Trainer` end to end: a tiny CodeBind depth path fine-tuned on a `datasets.Dataset` through the
processor, checkpointed, resumed from a checkpoint, and equal to a straight run."""

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")
from transformers import Trainer, TrainingArguments  # noqa: E402

from codebind_hf import CodeBindConfig, CodeBindModel, CodeBindProcessor  # noqa: E402
from codebind_hf.image_processing_codebind import CodeBindImageProcessor  # noqa: E402

SIZE = 16


def _config() -> CodeBindConfig:
    # An ImageBind text tower (the processor's CLIP tokenizer: 77 tokens, 49408 ids) and a ViT depth tower.
    text = {"family": "imagebind", "stem": "tokens", "vocab_size": 49408, "context_length": 77, "embed_dim": 16,
            "num_blocks": 1, "num_heads": 2, "add_bias_kv": False}
    depth = {"family": "hf", "backbone": {"model_type": "vit", "hidden_size": 16, "num_hidden_layers": 1,
                                          "num_attention_heads": 2, "intermediate_size": 32, "image_size": SIZE,
                                          "patch_size": 8, "num_channels": 1}}
    return CodeBindConfig(modalities={"text": text, "depth": depth}, bridges=["text"],
                          paths={"depth": {"bridges": ["text"], "mode": "headtune"}}, embed_dim=16, specific_dim=16,
                          quantizer={"shared_codebook_size": 16, "specific_codebook_size": 16},
                          decoder={"hidden_size": 16, "num_layers": 1, "num_heads": 2})


def _model() -> CodeBindModel:
    torch.manual_seed(0)
    model = CodeBindModel(_config())
    for name, param in model.named_parameters():  # headtune: the path's heads and the decoder learn
        param.requires_grad_(name.startswith(("shared_heads.depth", "specific_heads.depth", "decoder.")))
    return model


def _dataset():
    rng = np.random.default_rng(0)
    words = ["a red chair", "a dark room", "two cups", "an open door", "a long hall", "a tree", "a cat", "a desk"]
    return datasets.Dataset.from_dict({
        "text": words,
        "depth": [rng.uniform(0.5, 5.0, (SIZE, SIZE)).astype(np.float32) for _ in words],
    })


def _trainer(tmp_path, model, processor, max_steps):
    def collate(rows):
        batch = processor(text=[r["text"] for r in rows], depth=[np.asarray(r["depth"], np.float32) for r in rows])
        return {**batch, "return_loss": True}

    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=max_steps, save_steps=2, per_device_train_batch_size=4,
        learning_rate=5e-3, seed=0, report_to=[], use_cpu=True, remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=True, logging_steps=1,
    )
    return Trainer(model=model, args=args, train_dataset=_dataset(), data_collator=collate, processing_class=processor)


def test_trainer_checkpoints_and_resumes_to_the_straight_run(tmp_path):
    processor = CodeBindProcessor(image_processor=CodeBindImageProcessor(size=SIZE))
    start = {k: v.clone() for k, v in _model().state_dict().items()}

    straight = _model()
    result = _trainer(tmp_path / "straight", straight, processor, max_steps=4).train()
    assert np.isfinite(result.training_loss)
    checkpoint = tmp_path / "straight" / "checkpoint-2"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()
    trained = straight.state_dict()
    assert not torch.equal(trained["specific_heads.depth.depth.proj.weight"], start["specific_heads.depth.depth.proj.weight"])
    assert torch.equal(trained["towers.depth.backbone.embeddings.patch_embeddings.projection.weight"],
                       start["towers.depth.backbone.embeddings.patch_embeddings.projection.weight"])  # frozen

    # The checkpoint is the whole model (decoder included), loadable as is.
    saved = CodeBindModel.from_pretrained(checkpoint)
    assert saved.decoder is not None

    resumed = _model()
    _trainer(tmp_path / "resumed", resumed, processor, max_steps=4).train(resume_from_checkpoint=str(checkpoint))
    for key, value in trained.items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key
