"""CodeBindIndex: exact codes, asymmetric search = brute force, backends, persistence, hub, resumable builds."""

import importlib.util
import json
import math

import pytest
import torch
import torch.nn.functional as F

from codebind_hf import CodeBindModel, CompositionalQuantizer
from codebind_hf.index import backends as index_backends
from codebind_hf.index import build as index_build
from codebind_hf.index.core import CodeBindIndex
from codebind_hf.index.backends import pack_codes, unpack_codes
from codebind_hf.index.core import build_index_from_dataset
from ranking import assert_same_topk
from tiny_models import mark_codebooks_trained, tiny_config

HAS_FAISS = importlib.util.find_spec("faiss") is not None
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu not installed (extra [index])")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return mark_codebooks_trained(CodeBindModel(tiny_config(decoder=False))).eval()


@pytest.fixture
def quantizer():
    q = CompositionalQuantizer(codebook_size=64, codevector_dim=8)
    q.kmeans_init_(torch.randn(256, 64), iters=3)
    return q


def _depth(n, seed=0):
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- codes
def test_pack_codes_matches_hand_computed_bytes_and_round_trips():
    # 10-bit codes LSB first: 1 -> bit 0; 1023 -> bits 10..19; 0; 512 -> bit 39.
    packed = pack_codes(torch.tensor([[1, 1023, 0, 512]]), 10)
    assert packed.tolist() == [[0x01, 0xFC, 0x0F, 0x00, 0x80]]
    for bits in (1, 3, 6, 8, 10, 13, 16):
        codes = torch.randint(0, 1 << bits, (37, 11))
        packed = pack_codes(codes, bits)
        assert packed.shape == (37, math.ceil(11 * bits / 8)) and packed.dtype == torch.uint8
        assert torch.equal(unpack_codes(packed, 11, bits), codes)
    assert pack_codes(torch.randint(0, 1024, (5, 128)), 10).shape == (5, 160)  # 25.6x smaller than 4096 B
    with pytest.raises(ValueError, match="fit 6 bits"):
        pack_codes(torch.tensor([[64]]), 6)


def test_codes_decode_to_exactly_the_quantized_embeddings(model):
    x = _depth(6)
    index = CodeBindIndex.from_model(model, modality="depth", backend="torch")
    index.add_inputs(model, "depth", [x[:4], x[4:]])  # a stream of two batches
    with torch.no_grad():
        out = model(depth_values=x)
        quantized = model.get_features("depth", x)
        floats = model.get_features("depth", x, quantize=False)
    assert torch.equal(index.codes, out.codes["depth"])
    assert torch.equal(index.decode(), quantized)  # bit-exact, not just close
    plain = CodeBindIndex.from_model(model, modality="depth", backend="torch")
    plain.add(floats)  # unquantised embeddings encode to the same codes
    assert torch.equal(plain.codes, out.codes["depth"])
    assert index.bytes_per_item == 3 and index.nbytes == 18  # 4 codes x 6 bits (K = 64)


# ---------------------------------------------------------------- search
def test_search_equals_brute_force_over_decoded_vectors(quantizer):
    index = CodeBindIndex.from_quantizer(quantizer, 64, backend="torch")
    index.add(torch.randn(500, 64), ids=[f"i{n}" for n in range(500)])
    queries = torch.randn(7, 64)
    scores, ids = index.search(queries, k=10)
    brute = F.normalize(queries, dim=-1) @ index.decode().t()
    assert_same_topk(ids, scores, brute, index.ids, atol=1e-6)
    # score = sum of per-sub-vector table entries / sqrt(m), hand-computed for the best hit of query 0
    q = F.normalize(queries[0], dim=0).reshape(8, 8)
    codes = index.codes[index.ids.index(ids[0][0])]
    by_hand = sum(float(q[h] @ quantizer.codebook[codes[h]]) for h in range(8)) / math.sqrt(8)
    assert scores[0, 0].item() == pytest.approx(by_hand, abs=1e-6)
    # the query's scale does not matter (normalised as a whole); a 1-d query is one query
    scaled_scores, scaled_ids = index.search(queries * 5.0, k=10)
    assert_same_topk(scaled_ids, scaled_scores, brute, index.ids, atol=1e-6)
    one_scores, one_ids = index.search(queries[2], k=3)
    assert len(one_ids) == 1
    assert_same_topk(one_ids, one_scores, brute[2:3], index.ids, atol=1e-6)


def test_chunked_search_merges_correctly(quantizer, monkeypatch):
    index = CodeBindIndex.from_quantizer(quantizer, 64, backend="torch")
    index.add(torch.randn(300, 64))
    queries = torch.randn(11, 64)
    full = index.search(queries, 5)
    monkeypatch.setattr(index_backends, "_ITEM_CHUNK", 37)
    monkeypatch.setattr(index_backends, "_QUERY_BLOCK", 4)
    chunked = index.search(queries, 5)
    brute = F.normalize(queries, dim=-1) @ index.decode().t()
    for scores, ids in (full, chunked):
        assert_same_topk(ids, scores, brute, index.ids, atol=1e-6)


@needs_faiss
@pytest.mark.parametrize("codebook_size", [64, 48])  # 48: not a power of two, faiss' table is zero-padded
def test_torch_and_faiss_backends_agree(codebook_size):
    quantizer = CompositionalQuantizer(codebook_size=codebook_size, codevector_dim=8)
    quantizer.kmeans_init_(torch.randn(256, 64), iters=3)
    data, queries = torch.randn(400, 64), torch.randn(9, 64)
    results = []
    for backend in ("torch", "faiss"):
        index = CodeBindIndex.from_quantizer(quantizer, 64, backend=backend)
        index.add(data[:300])
        index.search(queries, k=2)  # builds faiss' IndexPQ; later adds go to it incrementally
        index.add(data[300:])
        index.remove([str(i) for i in range(0, 400, 7)])
        results.append((index.search(queries, k=8), index.decode(), list(index.ids)))
    (torch_hits, decoded, names), (faiss_hits, _, faiss_names) = results
    assert names == faiss_names
    brute = F.normalize(queries, dim=-1) @ decoded.t()
    for scores, ids in (torch_hits, faiss_hits):  # both correct; tied items may come in either order
        assert_same_topk(ids, scores, brute, names, atol=1e-5)


@needs_faiss
def test_faiss_stores_our_codes_without_re_encoding(quantizer):
    index = CodeBindIndex.from_quantizer(quantizer, 64, backend="faiss")
    index.add(torch.randn(50, 64))
    index.search(torch.randn(1, 64), 1)
    decoded = index._faiss.index.sa_decode(index.packed_codes.numpy())
    assert torch.equal(torch.from_numpy(decoded), quantizer.codes_to_vectors(index.codes))


# ---------------------------------------------------------------- persistence
def test_save_load_add_remove(quantizer, tmp_path):
    index = CodeBindIndex.from_quantizer(quantizer, 64, backend="torch", info={"note": "x"})
    index.add(torch.randn(20, 64), ids=[f"a{i}" for i in range(20)], metadata=[{"n": i} for i in range(20)])
    assert index.remove(["a3", "a5"]) == 2 and "a3" not in index.ids
    index.add(torch.randn(3, 64), ids=["b0", "b1", "b2"])
    index.save(tmp_path / "idx")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    again = CodeBindIndex.load(tmp_path / "idx", backend="torch", codebook=quantizer)
    assert again.ids == index.ids and again.metadata == index.metadata and again.info == {"note": "x"}
    assert torch.equal(again.packed_codes, index.packed_codes) and again.fingerprint == index.fingerprint
    q = torch.randn(2, 64)
    assert again.search(q, 4)[1] == index.search(q, 4)[1]
    assert (tmp_path / "idx" / "codes.safetensors").stat().st_size < 21 * 6 + 200  # 6 bytes per item + header
    index.remove(["b0"])
    index.save(tmp_path / "idx")  # replaces the folder
    assert len(CodeBindIndex.load(tmp_path / "idx")) == 20
    CodeBindIndex.from_quantizer(quantizer, 64).save(tmp_path / "empty")
    empty = CodeBindIndex.load(tmp_path / "empty", backend="torch")
    assert len(empty) == 0 and empty.codes.shape == (0, 8)


@pytest.fixture
def hub(monkeypatch):
    """The local Hub-compatible server of tests/hub_server.py (real huggingface_hub client, loopback only)."""
    server = pytest.importorskip("hub_server")
    if not hasattr(server, "use_local_hub"):
        pytest.skip("tests/hub_server.py has no use_local_hub()")
    with server.local_hub() as running:
        server.use_local_hub(monkeypatch, running.endpoint)
        yield running


def test_push_to_hub_and_from_pretrained(model, hub):
    index = CodeBindIndex.from_model(model, modality="depth", backend="torch")
    index.add_inputs(model, "depth", _depth(5), ids=list("abcde"), metadata=[{"i": i} for i in range(5)])
    index.push_to_hub("org/depth-index", token="hf_fake")
    assert {"index.json", "codes.safetensors", "codebook.safetensors"} <= set(hub.commits("org/depth-index")[-1].files)
    pulled = CodeBindIndex.from_pretrained("org/depth-index", backend="torch", codebook=model)
    assert pulled.ids == list("abcde") and pulled.metadata == index.metadata
    assert torch.equal(pulled.codes, index.codes)
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    scores, ids = pulled.search_inputs(model, "vision", images, k=3)  # cross-modal: vision queries, depth items
    with torch.no_grad():
        brute = model.get_features("vision", images, quantize=False) @ index.decode().t()
    # Items with equal codes tie (here 3 of 5 do): their order is the platform's, so only the ranking is checked.
    assert_same_topk(ids, scores, brute, list("abcde"), atol=1e-6)


# ---------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors(quantizer, model, tmp_path):
    index = CodeBindIndex.from_quantizer(quantizer, 64, backend="torch")
    with pytest.raises(ValueError, match="empty"):
        index.search(torch.randn(1, 64), 1)
    with pytest.raises(ValueError, match=r"shape \(N, 64\).*\(3, 32\)"):
        index.add(torch.randn(3, 32))
    with pytest.raises(ValueError, match=r"shape \(N, 64\)"):
        index.search(torch.randn(2, 65), 1)
    with pytest.raises(ValueError, match="NaN"):
        index.add(torch.full((1, 64), float("nan")))
    index.add(torch.randn(3, 64), ids=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 3\]"):
        index.search(torch.randn(1, 64), 4)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 3\]"):
        index.search(torch.randn(1, 64), 0)
    with pytest.raises(ValueError, match="non-zero"):
        index.search(torch.zeros(1, 64), 1)
    with pytest.raises(ValueError, match=r"unique.*\['x'\]"):
        index.add(torch.randn(1, 64), ids=["x"])
    with pytest.raises(ValueError, match=r"unique.*\['w'\]"):
        index.add(torch.randn(2, 64), ids=["w", "w"])
    with pytest.raises(KeyError, match="nope"):
        index.remove(["nope"])
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 64\)"):
        index.add_codes(torch.full((1, 8), 64))
    with pytest.raises(TypeError, match="JSON"):
        index.add(torch.randn(1, 64), metadata=[{"t": torch.ones(1)}])
    assert len(index) == 3  # nothing half-added
    with pytest.raises(ValueError, match="unit vectors"):
        CodeBindIndex(torch.randn(16, 8) * 3, 64)
    with pytest.raises(ValueError, match="backend must be one of"):
        CodeBindIndex.from_quantizer(quantizer, 64, backend="gpu")


def test_codebook_mismatch_with_the_model_is_refused(quantizer, model, tmp_path):
    index = CodeBindIndex.from_model(model, modality="depth", backend="torch")
    index.add_inputs(model, "depth", _depth(4))
    other = mark_codebooks_trained(CodeBindModel(tiny_config(decoder=False))).eval()  # same architecture, another codebook
    other.quantizers["depth"].shared.kmeans_init_(torch.randn(64, 32, generator=torch.Generator().manual_seed(3)), iters=1)
    both = r"codebook mismatch: .* sha256 [0-9a-f]{16}.* the model's path 'depth' has sha256 [0-9a-f]{16}"
    with pytest.raises(ValueError, match=both):
        index.add_inputs(other, "depth", _depth(2))
    with pytest.raises(ValueError, match="codebook mismatch"):
        index.search_inputs(other, "depth", _depth(1), k=1)
    with pytest.raises(ValueError, match="codebook mismatch"):
        index.search(torch.randn(1, 32), 1, codebook=other)
    with pytest.raises(ValueError, match="codebook mismatch"):
        index.add(torch.randn(1, 32), codebook=quantizer)
    assert len(index) == 4
    index.check_codebook(model)  # the right model passes
    index.save(tmp_path / "i")
    with pytest.raises(ValueError, match="codebook mismatch"):
        CodeBindIndex.load(tmp_path / "i", codebook=other)
    # a corrupted codebook file is caught by the fingerprint in index.json
    from safetensors.torch import save_file

    save_file({"codebook": other.quantizers["depth"].shared.codebook.contiguous()}, tmp_path / "i" / "codebook.safetensors")
    with pytest.raises(ValueError, match="corrupted"):
        CodeBindIndex.load(tmp_path / "i")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"holds other files \['notes.txt'\]"):
        index.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------- resumable builds
def _dataset(n=23, seed=1):
    import datasets

    values = _depth(n, seed).tolist()
    names, labels = [f"item{i}" for i in range(n)], [i % 3 for i in range(n)]
    return datasets.Dataset.from_dict({"depth": values, "name": names, "label": labels})


def _build(model, data, out, **kwargs):
    kwargs = {"id_column": "name", "metadata_columns": ["label"], "batch_size": 4, "shard_size": 8, "progress": False,
              "backend": "torch", **kwargs}
    return CodeBindIndex.build_from_dataset(model, data, "depth", "depth", output_dir=out, **kwargs)


def test_interrupted_build_resumes_to_the_same_index(model, tmp_path):
    data = _dataset()
    straight = _build(model, data, tmp_path / "a")
    assert straight.ids == [f"item{i}" for i in range(23)] and straight.metadata[4] == {"label": 1}
    with torch.no_grad():
        assert torch.equal(straight.codes, model(depth_values=torch.tensor(data["depth"])).codes["depth"])
    calls = {"n": 0}

    def flaky(values):
        calls["n"] += 1
        if calls["n"] == 4:  # the second batch of the second shard
            raise RuntimeError("simulated crash")
        return torch.tensor(values)

    with pytest.raises(RuntimeError, match="simulated crash"):
        _build(model, data, tmp_path / "b", processor=flaky)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["rows_done"] == 8 and manifest["shards"] == ["shard-000000000000"] and not manifest["complete"]
    resumed = _build(model, data, tmp_path / "b", batch_size=3)  # the batch size may change on resume
    assert resumed.ids == straight.ids and resumed.metadata == straight.metadata
    assert torch.equal(resumed.codes, straight.codes)
    assert torch.equal(CodeBindIndex.load(tmp_path / "b" / "index").codes, straight.codes)
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["complete"]
    again = _build(model, data, tmp_path / "b")  # a finished build re-opens without recomputing
    assert again.ids == straight.ids
    with pytest.raises(FileExistsError, match="resume=True"):
        _build(model, data, tmp_path / "b", resume=False)
    with pytest.raises(ValueError, match="was built for"):
        _build(model, _dataset(5), tmp_path / "b")
    with pytest.raises(TypeError, match="datasets.Dataset"):
        CodeBindIndex.build_from_dataset(model, {"depth": []}, "depth", "depth", progress=False)
    with pytest.raises(KeyError, match=r"\['audio'\] not in the dataset"):
        CodeBindIndex.build_from_dataset(model, data, "depth", "audio", output_dir=tmp_path / "c", progress=False)


def test_crash_between_shard_and_manifest_duplicates_nothing(model, tmp_path, monkeypatch):
    data = _dataset(20, seed=2)
    straight = _build(model, data, None)  # in memory
    real = index_build._write_json_atomic
    writes = {"manifest": 0}

    def failing(path, payload):
        if path.name == "manifest.json":
            writes["manifest"] += 1
            if writes["manifest"] == 3:  # initial manifest, shard 0, then shard 1's commit fails
                raise OSError("disk full")
        real(path, payload)

    monkeypatch.setattr(index_build, "_write_json_atomic", failing)
    with pytest.raises(OSError, match="disk full"):
        _build(model, data, tmp_path / "b")
    monkeypatch.setattr(index_build, "_write_json_atomic", real)
    assert (tmp_path / "b" / "shards" / "shard-000000000008.safetensors").exists()  # written, never committed
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["rows_done"] == 8
    resumed = _build(model, data, tmp_path / "b")
    assert resumed.ids == straight.ids and torch.equal(resumed.codes, straight.codes)


def test_streamed_dataset_build_resumes(model, tmp_path):
    data = _dataset(19, seed=3)
    straight = _build(model, data, tmp_path / "a")
    stream = data.to_iterable_dataset()
    calls = {"n": 0}

    def flaky(values):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated crash")
        return torch.tensor(values)

    with pytest.raises(RuntimeError):
        _build(model, stream, tmp_path / "s", processor=flaky)
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["rows_done"] == 16
    resumed = build_index_from_dataset(  # the function behind the classmethod; output_dir positional
        model, data.to_iterable_dataset(), "depth", "depth", tmp_path / "s", id_column="name", metadata_columns=["label"],
        batch_size=4, shard_size=8, progress=False, backend="torch",
    )
    assert resumed.ids == straight.ids and torch.equal(resumed.codes, straight.codes)
