"""transformers' common model and config tests (ModelTesterMixin, ConfigTester of the installed release) on a tiny
CodeBindModel, as a model family inside transformers runs them.

The tiny model has both tower families: text (BERT) and vision (ViT) are HF backbones, audio is an ImageBind tower,
with an audio path bridged by text and vision. Skips carry the reasons CLIP's / CLAP's test classes use.
"""

import copy
import tempfile
import unittest
from unittest import mock

import torch

from transformers_common import common_tests

common_tests()

from transformers_common_tests.test_configuration_common import ConfigTester  # noqa: E402
from transformers_common_tests.test_modeling_common import (  # noqa: E402
    ModelTesterMixin,
    floats_tensor,
    ids_tensor,
    random_attention_mask,
)

from codebind_hf import CodeBindConfig, CodeBindModel  # noqa: E402


class CodeBindModelTester:
    def __init__(self, parent, batch_size=4, seq_length=7, vocab_size=99, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=4, image_size=16, audio_size=16, is_training=True):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.image_size = image_size
        self.audio_size = audio_size
        self.is_training = is_training

    def get_config(self) -> CodeBindConfig:
        layers = {"hidden_size": self.hidden_size, "num_hidden_layers": self.num_hidden_layers,
                  "num_attention_heads": self.num_attention_heads, "intermediate_size": 37}
        text = {"model_type": "bert", "vocab_size": self.vocab_size, "max_position_embeddings": 32, **layers}
        vision = {"model_type": "vit", "image_size": self.image_size, "patch_size": 8, **layers}
        audio = {"family": "imagebind", "stem": "conv2d", "kernel_size": 8, "stride": 8, "in_channels": 1,
                 "input_size": [self.audio_size, self.audio_size], "embed_dim": self.hidden_size,
                 "num_blocks": self.num_hidden_layers, "num_heads": self.num_attention_heads, "add_bias_kv": True}
        return CodeBindConfig(
            modalities={"text": {"family": "hf", "backbone": text}, "vision": {"family": "hf", "backbone": vision},
                        "audio": audio},
            bridges=["text", "vision"],
            paths={"audio": {"bridges": ["text", "vision"]}},
            embed_dim=32,
            specific_dim=32,
            quantizer={"shared_codebook_size": 16, "specific_codebook_size": 16},
            decoder={"hidden_size": 32, "num_layers": 1, "num_heads": 4},
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = random_attention_mask([self.batch_size, self.seq_length])
        pixel_values = floats_tensor([self.batch_size, 3, self.image_size, self.image_size])
        audio_values = floats_tensor([self.batch_size, 1, self.audio_size, self.audio_size])
        return self.get_config(), input_ids, attention_mask, pixel_values, audio_values

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, attention_mask, pixel_values, audio_values = self.prepare_config_and_inputs()
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values,
                  "audio_values": audio_values}
        return config, inputs

    def create_and_check_model(self, config, input_ids, attention_mask, pixel_values, audio_values):
        model = CodeBindModel(config).eval()
        with torch.no_grad():
            out = model(input_ids, attention_mask, pixel_values, audio_values=audio_values)
        for modality in ("text", "vision", "audio"):
            self.parent.assertEqual(out.shared_embeds[modality].shape, (self.batch_size, 32))
        self.parent.assertEqual(out.embeds["audio"].shape, (self.batch_size, 64))


class CodeBindModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (CodeBindModel,)
    _is_composite = True
    test_resize_embeddings = False
    test_attention_outputs = False
    # get_audio_features' shape check reads `input_values`/`input_features`; CodeBind's audio key is `audio_values`
    # (our own shape checks: tests/test_transformers_contract.py).
    skip_test_audio_features_output_shape = True

    def setUp(self):
        self.model_tester = CodeBindModelTester(self)
        self.config_tester = ConfigTester(self, config_class=CodeBindConfig, has_text_modality=False,
                                          common_properties=["embed_dim", "specific_dim"])

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        # CodeBind's "labels" are the other modalities of the batch: asking for labels asks for the path loss (as
        # CLIP's `return_loss`). The contrastive loss needs two samples or more, so it is not in the plain inputs
        # (which the batching test runs one row at a time).
        inputs_dict = copy.copy(inputs_dict)
        if return_labels:
            inputs_dict["return_loss"] = True
        return inputs_dict

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_determinism(self):
        # The mixin compares `outputs[0]`, a tensor for single-space models; CodeBind's outputs are per modality, so
        # every embedding is compared.
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = CodeBindModel(config).eval()
        with torch.no_grad():
            first, second = model(**inputs), model(**inputs)
        for key in ("shared_embeds", "specific_embeds", "embeds"):
            self.assertEqual(set(first[key]), set(second[key]))
            for modality in first[key]:
                torch.testing.assert_close(first[key][modality], second[key][modality], atol=1e-5, rtol=0)

    def _eager_matches_sdpa(self, dtype, atol):
        # As CLIP's test class did: CodeBind has several towers and no `logits`/`hidden_states` tuple; compare every
        # embedding and every tower's last hidden state between the eager and SDPA models.
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        inputs["attention_mask"][:, -2:] = 0  # right padding
        model = CodeBindModel(config)
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            eager = CodeBindModel.from_pretrained(folder, attn_implementation="eager", dtype=dtype).eval()
            sdpa = CodeBindModel.from_pretrained(folder, attn_implementation="sdpa", dtype=dtype).eval()
        self.assertEqual(eager.config._attn_implementation, "eager")
        self.assertEqual(sdpa.config._attn_implementation, "sdpa")
        inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        with torch.no_grad():
            a = eager(**inputs, output_hidden_states=True)
            b = sdpa(**inputs, output_hidden_states=True)
        for modality in ("text", "vision", "audio"):
            for key in ("shared_embeds", "specific_embeds", "embeds"):
                if modality in a[key]:
                    torch.testing.assert_close(a[key][modality], b[key][modality], atol=atol, rtol=atol)
            states_a = a[f"{modality}_model_output"].last_hidden_state
            states_b = b[f"{modality}_model_output"].last_hidden_state
            if modality == "text":  # padded positions may differ
                states_a, states_b = states_a[:, :-2], states_b[:, :-2]
            torch.testing.assert_close(states_a, states_b, atol=atol, rtol=atol)

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    @unittest.skip(reason="Hidden_states is tested in individual model tests")
    def test_hidden_states_output(self):
        pass

    @unittest.skip(reason="Inputs_embeds is tested in individual model tests")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="Retain_grad is tested in individual model tests")
    def test_retain_grad_hidden_states_attentions(self):
        pass

    @unittest.skip(reason="CodeBindModel does not have input/output embeddings")
    def test_model_get_set_embeddings(self):
        pass

    def test_model_weights_reload_no_missing_tied_weights(self):
        # The mixin overwrites model.safetensors after saving, which model_checksums.json rightly refuses (see
        # tests/test_checksums.py); here the load skips that check so the missing-keys report is what is tested.
        load = CodeBindModel.from_pretrained.__func__

        def unchecked(cls, *args, **kwargs):
            return load(cls, *args, verify_checksums=False, **kwargs)

        with mock.patch.object(CodeBindModel, "from_pretrained", classmethod(unchecked)):
            super().test_model_weights_reload_no_missing_tied_weights()


# The mixin's parameterised eager-vs-SDPA cases (fp32, bf16, fp16 x padding x kernels) become our comparison at the
# case's precision, under the same names.
_TOLERANCES = {"fp32": (torch.float32, 1e-5), "bf16": (torch.bfloat16, 3e-2), "fp16": (torch.float16, 5e-3)}


def _eager_matches_sdpa_case(dtype_name):
    def test(self):
        self._eager_matches_sdpa(*_TOLERANCES[dtype_name])

    return test


for _name in [n for n in dir(ModelTesterMixin) if n.startswith("test_eager_matches_sdpa_inference_")]:
    _dtype = next(key for key in _TOLERANCES if f"_{key}_" in _name)
    setattr(CodeBindModelTest, _name, _eager_matches_sdpa_case(_dtype))
