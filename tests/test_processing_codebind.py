"""transformers' common processor tests (ProcessorTesterMixin of the installed release) on CodeBindProcessor, as a
model family inside transformers runs them (what the mixin does not pin down: tests/test_processing_transformers.py).

Skips come from the mixin itself (no chat template, no video processor, ...), with the reasons CLIP's processor gets
from the same mixin; `test_every_skip_is_one_clip_gets_too` (slow) checks that against CLIP run through the mixin.
"""

import unittest

import pytest

from transformers_common import common_tests

common_tests()

from transformers_common_tests.test_processing_common import ProcessorTesterMixin  # noqa: E402

from codebind_hf import CodeBindFeatureExtractor, CodeBindProcessor, CodeBindTokenizer  # noqa: E402
from codebind_hf.image_processing_codebind import CodeBindImageProcessor  # noqa: E402
from codebind_hf.tokenization_codebind import PACKAGED_BPE_DIR  # noqa: E402


class CodeBindProcessorTest(ProcessorTesterMixin, unittest.TestCase):
    processor_class = CodeBindProcessor
    audio_input_name = "audio_values"  # CodeBind's audio key (the mixin's default is `input_features`)

    @classmethod
    def _setup_tokenizer(cls):
        return CodeBindTokenizer()

    @classmethod
    def _setup_image_processor(cls):
        return CodeBindImageProcessor(size=32)  # small outputs for the mixin's 400 x 30 images

    @classmethod
    def _setup_feature_extractor(cls):
        # The mixin's waveforms come without a rate, which CodeBind refuses unless a default rate is set.
        return CodeBindFeatureExtractor(default_sampling_rate=16000)


def _run(case_class, names=None) -> unittest.TestResult:
    loader = unittest.defaultTestLoader
    suite = loader.loadTestsFromTestCase(case_class)
    if names is not None:
        suite = unittest.TestSuite([test for test in suite if test._testMethodName in names])
    result = unittest.TestResult()
    suite.run(result)
    return result


def _skips(result: unittest.TestResult, processor_class) -> dict[str, str]:
    """Skipped test -> reason, with the processor class written the same way for every processor."""
    return {test._testMethodName: reason.replace(str(processor_class), "<processor>") for test, reason in result.skipped}


@pytest.mark.slow
def test_every_skip_is_one_clip_gets_too(capsys):
    from transformers import CLIPProcessor, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    class CLIPProcessorReference(ProcessorTesterMixin, unittest.TestCase):  # CLIP through the same mixin, offline
        processor_class = CLIPProcessor

        @classmethod
        def _setup_tokenizer(cls):
            return CLIPTokenizer(vocab=str(PACKAGED_BPE_DIR / "vocab.json"), merges=str(PACKAGED_BPE_DIR / "merges.txt"))

        @classmethod
        def _setup_image_processor(cls):
            return CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})

    ours = _run(CodeBindProcessorTest)
    assert not ours.failures and not ours.errors, [test.id() for test, _ in ours.failures + ours.errors]
    skipped = _skips(ours, CodeBindProcessor)
    clip = _skips(_run(CLIPProcessorReference, names=set(skipped)), CLIPProcessor)
    with capsys.disabled():
        print(f"\nCodeBindProcessorTest: {ours.testsRun - len(ours.skipped)} passed, {len(ours.skipped)} skipped")
        for name, reason in sorted(skipped.items()):
            print(f"  {name}: {reason}")
    assert {name: clip.get(name) for name in skipped} == skipped
