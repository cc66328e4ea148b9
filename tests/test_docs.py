"""Executable documentation: every Python block and shell command of README.md, docs/*.md and training/README.md
runs here (how: tests/doc_blocks.py), in a folder of tiny stand-ins under the names the documents use.

The names (said once at the top of each document): ``your-org/...`` repos live on a local Hub-compatible server;
``./codebind-ib-base`` / ``your-org/codebind-ib-base`` is the tiny ImageBind fixture as the converter writes it
(with its processor); ``your-org/codebind-ib`` and ``./my-model``
are that base with quickly initialised audio, depth, thermal and IMU paths (a stand-in for a trained CodeBind-IB);
data folders, sample files and ``/data/benchmarks`` are generated. A block that cannot run as written names its
reason and its stand-in visibly, right under it.
"""

import shutil

import numpy as np
import pytest
import torch

from doc_blocks import REASONS, all_blocks, run_command, run_python, shell_commands, substitute
from hub_server import local_hub, use_local_hub
from user_world import FIXTURES, TOKEN, UserWorld, _write_samples, _write_sun_rgbd

# Tiny tensors gain nothing from threads, and on shared cores threads contending for them cost 10x (conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")
BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b.kind in ("python", "shell")]
TRAINED_PATHS = {"vision": ["text"], "audio": ["text", "vision"], "depth": ["text", "vision"],
                 "thermal": ["text", "vision"], "imu": ["text", "vision"]}  # as the bundled configs


def _trained_stand_in(base):
    """The base with k-means-initialised paths for ImageBind's modalities (the shape of a trained CodeBind-IB)."""
    generator = torch.Generator().manual_seed(0)
    for target, bridges in TRAINED_PATHS.items():
        base.add_path(target, {"bridges": bridges})
        for name, book in base.quantizers[target].codebooks().items():
            book.kmeans_init_(torch.randn(256, base.config.embed_dim, generator=generator), iters=2)
    return base


def _write_audio_pairs(root, names=("audioset", "pairs-auto", "pairs-verified", "pairs-captioned"), rows=8):
    """Audio (1 s float arrays + their rate) paired with an image, a caption, a label and a pair grade."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(8)
    features = datasets.Features({
        "audio": datasets.Sequence(datasets.Value("float32")), "sampling_rate": datasets.Value("int32"),
        "image": datasets.Image(), "caption": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["dog", "car"]), "match": datasets.Value("float32")})
    columns = {
        "audio": [(0.1 * rng.standard_normal(16000)).astype(np.float32) for _ in range(rows)],
        "sampling_rate": [16000] * rows,
        "image": [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(rows)],
        "caption": [["a dog barking", "a car passing by"][i % 2] for i in range(rows)],
        "label": [i % 2 for i in range(rows)], "match": [(1.0, 0.5, 0.0)[i % 3] for i in range(rows)]}
    pairs = datasets.DatasetDict(train=datasets.Dataset.from_dict(columns, features=features))
    for name in names:
        pairs.save_to_disk(str(root / name))


def _write_frames(root, count=16):
    from PIL import Image

    (root / "frames").mkdir()
    rng = np.random.default_rng(9)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)).save(root / "frames" / f"{i:06d}.jpg")


def _write_named_files(root):
    for block in BLOCKS:
        if block.kind == "file":
            (root / block.name).parent.mkdir(parents=True, exist_ok=True)
            (root / block.name).write_text(block.code)


@pytest.fixture(scope="session")
def docs_world(tmp_path_factory):
    """The documents' folder and their own local Hub (separate from the story tests')."""
    from codebind_hf import CodeBindProcessor
    from codebind_hf.convert.imagebind import convert_imagebind_checkpoint
    from codebind_hf.evaluation.fixtures import write_fixtures
    from codebind_hf.training.toy import toy_dataset_dict

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with local_hub() as hub, pytest.MonkeyPatch.context() as patch:
        world = UserWorld(tmp_path_factory.mktemp("docs-world"), hub.endpoint)
        root = world.root
        _write_samples(root)
        shutil.copy(FIXTURES / "vitlens_tiny" / "vitlens_tiny.pth", root / "vitlens_tiny.pth")
        shutil.copy(FIXTURES / "vitlens_tiny" / "config.json", root / "vitlens_tiny.json")
        _write_sun_rgbd(root)
        _write_named_files(root)
        write_fixtures(root / "benchmarks", ["ib17"], num_items=2)
        toy_dataset_dict(16, 8).save_to_disk(str(root / "toy"))
        _write_audio_pairs(root)
        _write_frames(root)
        use_local_hub(patch, hub.endpoint)
        patch.setenv("HF_TOKEN", TOKEN)
        processor = CodeBindProcessor.imagebind()
        base = convert_imagebind_checkpoint(root / "imagebind_tiny.pth", root / "imagebind_tiny.json")
        base.save_pretrained(root / "codebind-ib-base")
        processor.save_pretrained(root / "codebind-ib-base")
        base.push_to_hub("your-org/codebind-ib-base", processor=processor)
        trained = _trained_stand_in(base)
        trained.save_pretrained(root / "my-model")
        processor.save_pretrained(root / "my-model")
        trained.push_to_hub("your-org/codebind-ib", processor=processor)
        torch.set_num_threads(threads)
        yield world


@pytest.fixture(scope="session")
def document_folders(docs_world):
    """Per document, its own copy of the world's folder (made on first use): one document's runs never meet
    another's output folders, which codebind-train and codebind-bench refuse to overwrite."""
    folders = {}

    def folder(doc: str):
        if doc not in folders:
            folders[doc] = docs_world.root.parent / f"{docs_world.root.name}-{doc.replace('/', '-')}"
            shutil.copytree(docs_world.root, folders[doc])
        return folders[doc]

    return folder


@pytest.fixture
def in_docs_world(docs_world, document_folders, request, monkeypatch):
    """The folder of the running block's document, with `huggingface_hub` on the documents' local Hub."""
    block = request.node.callspec.params["block"] if hasattr(request.node, "callspec") else None
    root = document_folders(block.doc if block is not None else "runner-checks")
    use_local_hub(monkeypatch, docs_world.endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.chdir(root)
    return UserWorld(root, docs_world.endpoint)


def test_blocks_are_runnable_or_say_why_not():
    """Every block is code that runs, a named file, or output to show; a stand-in only under a runnable block, with
    a reason from the allowed list."""
    assert len(RUNNABLE) >= 20  # the extractor finds the documents' blocks
    for block in BLOCKS:
        assert block.lang in ("", "python", "bash", "yaml", "json", "text"), f"{block.id}: unknown language {block.lang!r}"
        if block.lang in ("yaml", "json"):
            assert block.kind == "file", f"{block.id}: name the {block.lang} block's file (```{block.lang} NAME)"
        if block.reason is not None:
            assert block.kind in ("python", "shell"), f"{block.id}: a stand-in note under a block that does not run"
            assert block.stand_in or block.replacements, f"{block.id}: the note names no stand-in"
            block.code_to_run()  # every replaced text is in the block
            assert block.reason.startswith(REASONS), f"{block.id}: reason {block.reason!r} is not one of {REASONS}"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_block_runs(block, in_docs_world):
    code = substitute(block.code_to_run())
    if block.kind == "python":
        run_python(code, block.id)
        return
    env = in_docs_world.env()
    for command in shell_commands(code):
        run_command(command, in_docs_world.root, env)


def test_a_broken_block_fails(in_docs_world):
    """The runner reports what the documentation would show a user: an exception, a wrong output, a failing command."""
    with pytest.raises(NameError):
        run_python("from codebind_hf import CodeBindModel\nmodel = CodeBindModle\n", "broken.py")
    with pytest.raises(AssertionError, match="Expected:\n    3\nGot:\n    2"):
        run_python(">>> 1 + 1\n3\n", "wrong-output")
    with pytest.raises(AssertionError, match="exited with 2"):
        run_command("codebind-bench --model ./my-model --benchmarks nyu_d --no-such-flag", in_docs_world.root,
                    in_docs_world.env())
