"""A random open_clip CLIP state dict of a given model config, and open_clip's CLIP forward written out with
``nn.MultiheadAttention`` in open_clip's layout (sequence-first, packed in_proj, ``x @ proj``): an independent
reference for the converted CLIP bridge towers."""

import torch
import torch.nn.functional as F
from torch import nn


def _block_shapes(prefix: str, width: int) -> dict:
    shapes = {}
    for norm in ("ln_1", "ln_2"):
        shapes.update({f"{prefix}.{norm}.weight": (width,), f"{prefix}.{norm}.bias": (width,)})
    shapes.update({
        f"{prefix}.attn.in_proj_weight": (3 * width, width), f"{prefix}.attn.in_proj_bias": (3 * width,),
        f"{prefix}.attn.out_proj.weight": (width, width), f"{prefix}.attn.out_proj.bias": (width,),
        f"{prefix}.mlp.c_fc.weight": (4 * width, width), f"{prefix}.mlp.c_fc.bias": (4 * width,),
        f"{prefix}.mlp.c_proj.weight": (width, 4 * width), f"{prefix}.mlp.c_proj.bias": (width,),
    })
    return shapes


def open_clip_state_dict(clip: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights (LayerNorms around 1, everything else ~N(0, 0.05)) in open_clip's CLIP key layout."""
    v, t, embed = clip["vision_cfg"], clip["text_cfg"], clip["embed_dim"]
    vw, tw, grid = v["width"], t["width"], v["image_size"] // v["patch_size"]
    shapes = {"visual.conv1.weight": (vw, 3, v["patch_size"], v["patch_size"]), "visual.class_embedding": (vw,),
              "visual.positional_embedding": (grid * grid + 1, vw), "visual.ln_pre.weight": (vw,),
              "visual.ln_pre.bias": (vw,), "visual.ln_post.weight": (vw,), "visual.ln_post.bias": (vw,),
              "visual.proj": (vw, embed), "token_embedding.weight": (t["vocab_size"], tw),
              "positional_embedding": (t["context_length"], tw), "ln_final.weight": (tw,), "ln_final.bias": (tw,),
              "text_projection": (tw, embed)}
    for i in range(v["layers"]):
        shapes.update(_block_shapes(f"visual.transformer.resblocks.{i}", vw))
    for i in range(t["layers"]):
        shapes.update(_block_shapes(f"transformer.resblocks.{i}", tw))
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        noise = 0.05 * torch.randn(shape, generator=generator)
        state[key] = noise + 1.0 if ".ln_" in key and key.endswith("weight") else noise
    state["logit_scale"] = torch.tensor(4.2)
    return state


def _trunk(state: dict, prefix: str, x: torch.Tensor, layers: int, heads: int, mask=None) -> torch.Tensor:
    """open_clip's Transformer on sequence-first `x` (L, N, D)."""
    width = x.shape[-1]
    for i in range(layers):
        p = f"{prefix}{i}."
        attn = nn.MultiheadAttention(width, heads)
        attn.load_state_dict({k: state[p + "attn." + k] for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")})
        h = F.layer_norm(x, (width,), state[p + "ln_1.weight"], state[p + "ln_1.bias"])
        x = x + attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        h = F.layer_norm(x, (width,), state[p + "ln_2.weight"], state[p + "ln_2.bias"])
        h = F.gelu(F.linear(h, state[p + "mlp.c_fc.weight"], state[p + "mlp.c_fc.bias"]))
        x = x + F.linear(h, state[p + "mlp.c_proj.weight"], state[p + "mlp.c_proj.bias"])
    return x


@torch.no_grad()
def open_clip_encode_image(state: dict, clip: dict, images: torch.Tensor) -> torch.Tensor:
    v = clip["vision_cfg"]
    width = v["width"]
    x = F.conv2d(images, state["visual.conv1.weight"], stride=v["patch_size"]).flatten(2).permute(0, 2, 1)
    x = torch.cat([state["visual.class_embedding"].expand(x.shape[0], 1, -1), x], dim=1) + state["visual.positional_embedding"]
    x = F.layer_norm(x, (width,), state["visual.ln_pre.weight"], state["visual.ln_pre.bias"])
    x = _trunk(state, "visual.transformer.resblocks.", x.permute(1, 0, 2), v["layers"], width // v["head_width"]).permute(1, 0, 2)
    pooled = F.layer_norm(x[:, 0], (width,), state["visual.ln_post.weight"], state["visual.ln_post.bias"])
    return pooled @ state["visual.proj"]


@torch.no_grad()
def open_clip_encode_text(state: dict, clip: dict, ids: torch.Tensor) -> torch.Tensor:
    t = clip["text_cfg"]
    x = state["token_embedding.weight"][ids] + state["positional_embedding"]
    mask = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)
    x = _trunk(state, "transformer.resblocks.", x.permute(1, 0, 2), t["layers"], t["heads"], mask).permute(1, 0, 2)
    x = F.layer_norm(x, (t["width"],), state["ln_final.weight"], state["ln_final.bias"])
    return x[torch.arange(ids.shape[0]), ids.argmax(-1)] @ state["text_projection"]
