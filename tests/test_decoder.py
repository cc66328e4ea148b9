"""The reconstruction decoder reads all tokens: patches, and (optionally) the CLS token."""

from __future__ import annotations

import pytest
import torch

from codebind_hf.configuration_codebind import DecoderConfig
from codebind_hf.modules.decoder import ReconstructionDecoder


@pytest.fixture
def decoder():
    torch.manual_seed(0)
    dec = ReconstructionDecoder(12, DecoderConfig(hidden_size=16, num_layers=1, num_heads=2), {"audio": (5, 7)})
    with torch.no_grad():
        dec.position_embeddings["audio"].normal_()
    return dec.eval()


def test_cls_token_is_attended_to_and_dropped_from_the_output(decoder):
    patches = torch.randn(3, 5, 12)
    cls = torch.randn(3, 12)
    with_cls = decoder("audio", patches, cls)
    assert with_cls.shape == (3, 5, 7)  # one prediction per patch, the CLS output is dropped
    assert not torch.allclose(with_cls, decoder("audio", patches))  # the CLS token changes the reconstruction
    # Each sample's prediction depends on its own CLS token only.
    other = cls.clone()
    other[1] += 1.0
    moved = decoder("audio", patches, other)
    assert torch.equal(moved[0], with_cls[0]) and torch.equal(moved[2], with_cls[2])
    assert not torch.allclose(moved[1], with_cls[1])


def test_cls_token_equals_an_explicit_sequence(decoder):
    """Prepending the projected CLS without a position embedding, then dropping its output, by hand."""
    patches, cls = torch.randn(2, 5, 12), torch.randn(2, 12)
    hidden = torch.cat([decoder.input_proj(cls)[:, None], decoder.input_proj(patches) + decoder.position_embeddings["audio"]], 1)
    expected = decoder.heads["audio"](decoder.norm(decoder.blocks(hidden)))[:, 1:]
    torch.testing.assert_close(decoder("audio", patches, cls), expected)


def test_bad_cls_token_shape_is_refused(decoder):
    with pytest.raises(ValueError, match=r"cls_token must have shape \(2, 12\)"):
        decoder("audio", torch.randn(2, 5, 12), torch.randn(2, 5, 12))
