"""CodeBindIndex: exact decoding, asymmetric search = brute force, backends, persistence, resumable builds."""

import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F

from codebind_hf import CodeBindModel, CompositionalQuantizer
from codebind_hf.index import CodeBindIndex, pack_codes, unpack_codes
from codebind_hf.index_build import build_index_from_dataset
from tiny_models import tiny_config

HAS_FAISS = importlib.util.find_spec("faiss") is not None


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CodeBindModel(tiny_config(decoder=False)).eval()


@pytest.fixture
def quantizer():
    q = CompositionalQuantizer(codebook_size=64, codevector_dim=8)
    q.kmeans_init_(torch.randn(256, 64), iters=3)
    return q


def test_codes_decode_to_the_quantized_embeddings(model):
    x = torch.randn(6, 1, 16, 16)
    index = CodeBindIndex.from_model(model, modality="depth", backend="torch")
    index.add(model.get_features("depth", x, quantize=False))
    out = model(depth_values=x)
    assert torch.equal(index.codes.long(), out.codes["depth"])
    assert torch.allclose(index.decode(), model.get_features("depth", x), atol=1e-6)


def test_search_equals_brute_force_over_decoded_vectors(quantizer):
    index = CodeBindIndex(quantizer.codebook, 64, backend="torch")
    index.add(torch.randn(500, 64), ids=[f"i{n}" for n in range(500)])
    queries = torch.randn(7, 64)
    scores, ids = index.search(queries, k=10)
    brute = (F.normalize(queries, dim=-1) @ index.decode().t()).topk(10)
    assert torch.allclose(scores, brute.values, atol=1e-6)
    assert ids == [[f"i{r}" for r in row] for row in brute.indices.tolist()]


def test_chunked_search_merges_correctly(quantizer):
    index = CodeBindIndex(quantizer.codebook, 64, backend="torch")
    index.add(torch.randn(300, 64))
    q = F.normalize(torch.randn(3, 64), dim=-1)
    full = index._torch_search(q, 5)
    chunked = index._torch_search(q, 5, chunk=37)
    assert torch.allclose(full[0], chunked[0]) and torch.equal(full[1], chunked[1])


@pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu not installed")
def test_torch_and_faiss_backends_agree(quantizer):
    data, queries = torch.randn(400, 64), torch.randn(9, 64)
    results = []
    for backend in ("torch", "faiss"):
        index = CodeBindIndex(quantizer.codebook, 64, backend=backend)
        index.add(data)
        results.append(index.search(queries, k=8))
    assert results[0][1] == results[1][1]
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)


def test_pack_unpack_round_trip_and_size():
    codes = torch.randint(0, 1024, (50, 128))
    packed = pack_codes(codes, 10)
    assert packed.shape == (50, 160) and packed.dtype == torch.uint8
    assert torch.equal(unpack_codes(packed, 128, 10), codes)


def test_save_load_add_remove(quantizer, tmp_path):
    index = CodeBindIndex(quantizer.codebook, 64, backend="torch")
    index.add(torch.randn(20, 64), ids=[f"a{i}" for i in range(20)], metadata=[{"n": i} for i in range(20)])
    assert index.remove(["a3", "a5"]) == 2
    index.add(torch.randn(3, 64), ids=["b0", "b1", "b2"])
    index.save(tmp_path / "idx")
    again = CodeBindIndex.load(tmp_path / "idx", backend="torch")
    assert again.ids == index.ids and again.metadata == index.metadata and torch.equal(again.codes, index.codes)
    q = torch.randn(2, 64)
    assert again.search(q, 4)[1] == index.search(q, 4)[1]
    assert index.bytes_per_item == 6  # 8 codes x 6 bits = 48 bits
    # saving again replaces the folder atomically
    index.remove(["b0"])
    index.save(tmp_path / "idx")
    assert len(CodeBindIndex.load(tmp_path / "idx")) == 20


def test_bad_inputs_raise_clear_errors(quantizer, model, tmp_path):
    index = CodeBindIndex(quantizer.codebook, 64, backend="torch")
    with pytest.raises(ValueError, match="empty"):
        index.search(torch.randn(1, 64), 1)
    with pytest.raises(ValueError, match=r"\(N, 64\)"):
        index.add(torch.randn(3, 32))
    index.add(torch.randn(3, 64), ids=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"k must lie in \[1, 3\]"):
        index.search(torch.randn(1, 64), 4)
    with pytest.raises(ValueError, match="unique"):
        index.add(torch.randn(1, 64), ids=["x"])
    with pytest.raises(KeyError, match="nope"):
        index.remove(["nope"])
    with pytest.raises(ValueError, match="codebook mismatch"):
        index.check_codebook(model.quantizers["depth"].shared.codebook)
    index.save(tmp_path / "i")
    (tmp_path / "i" / "codebook.safetensors").write_bytes((tmp_path / "i" / "codes.safetensors").read_bytes())
    with pytest.raises(Exception):
        CodeBindIndex.load(tmp_path / "i")


def _dataset(n=23):
    import datasets

    torch.manual_seed(1)
    return datasets.Dataset.from_dict({"depth": torch.randn(n, 1, 16, 16).tolist(), "name": [f"item{i}" for i in range(n)]})


def test_interrupted_build_resumes_to_the_same_index(model, tmp_path):
    data = _dataset()
    straight = build_index_from_dataset(model, data, "depth", "depth", tmp_path / "a", id_column="name", batch_size=4, shard_size=8, progress=False)
    calls = {"n": 0}

    def flaky(values):
        calls["n"] += 1
        if calls["n"] == 4:  # fails in the second shard
            raise RuntimeError("simulated crash")
        return torch.tensor(values)

    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index_from_dataset(model, data, "depth", "depth", tmp_path / "b", processor=flaky, id_column="name", batch_size=4, shard_size=8, progress=False)
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["rows_done"] == 8
    resumed = build_index_from_dataset(model, data, "depth", "depth", tmp_path / "b", id_column="name", batch_size=4, shard_size=8, progress=False)
    assert resumed.ids == straight.ids == [f"item{i}" for i in range(23)]
    assert torch.equal(resumed.codes, straight.codes)
    assert torch.equal(CodeBindIndex.load(tmp_path / "b" / "index").codes, straight.codes)
    with pytest.raises(FileExistsError):
        build_index_from_dataset(model, data, "depth", "depth", tmp_path / "b", resume=False, progress=False)
    with pytest.raises(ValueError, match="was built for"):
        build_index_from_dataset(model, _dataset(5), "depth", "depth", tmp_path / "b", progress=False)
    with pytest.raises(KeyError, match="column 'audio'"):
        build_index_from_dataset(model, data, "depth", "audio", tmp_path / "c", progress=False)
