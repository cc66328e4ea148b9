"""CodeBindIVFIndex: lists by nearest centroid, IVF = exhaustive at nprobe = num_lists, removal, persistence, mmap."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from codebind_hf import CompositionalQuantizer
from codebind_hf.index.core import CodeBindIndex
from codebind_hf.index.ivf import CodeBindIVFIndex

HAS_FAISS = importlib.util.find_spec("faiss") is not None
BACKENDS = ["torch", pytest.param("faiss", marks=pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu not installed"))]


@pytest.fixture(scope="module")
def quantizer():
    torch.manual_seed(0)  # k-means draws from the global generator; a module fixture runs before the per-test seed
    q = CompositionalQuantizer(codebook_size=64, codevector_dim=8)
    q.kmeans_init_(torch.randn(512, 64, generator=torch.Generator().manual_seed(0)), iters=3)
    return q


def _data(n, seed):
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed))


def _ivf(quantizer, backend="torch", n=1200, num_lists=12, **kwargs):
    index = CodeBindIVFIndex.from_quantizer(quantizer, 64, num_lists=num_lists, backend=backend, **kwargs)
    data = _data(n, 1)
    index.train(data[:600])
    index.add(data[: n // 3], ids=[f"i{r}" for r in range(n // 3)])
    index.add(data[n // 3 :], ids=[f"i{r}" for r in range(n // 3, n)])  # two batches: a merge of the buffer
    return index, data


def _no_near_ties(scores):
    return bool((scores[:, :-1] - scores[:, 1:]).min() > 1e-5)


# ---------------------------------------------------------------- lists and search
def test_items_sit_in_the_list_of_their_nearest_centroid(quantizer):
    index, data = _ivf(quantizer)
    decoded = index.decode()  # in stored (grouped) order
    expected = (decoded @ index.centroids.t()).argmax(1)
    stored = torch.repeat_interleave(torch.arange(index.num_lists), index.list_sizes)
    assert torch.equal(stored, expected)
    assert sorted(index.ids, key=lambda i: int(i[1:])) == [f"i{r}" for r in range(1200)]
    # the codes are the flat index's codes of the same embeddings
    flat = CodeBindIndex.from_quantizer(quantizer, 64, backend="torch")
    flat.add(data, ids=[f"i{r}" for r in range(1200)])
    rows = [flat.ids.index(i) for i in index.ids]
    assert torch.equal(index.codes, flat.codes[rows])
    assert (index.centroids.norm(dim=1) - 1).abs().max() < 1e-5 and index.list_sizes.min() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_lists_probed_equals_exhaustive_search(quantizer, backend):
    index, _ = _ivf(quantizer, backend)
    queries = _data(9, 2)
    exhaustive = index.search_exhaustive(queries, k=10)
    assert _no_near_ties(exhaustive[0])  # so the order of hits is defined and may be compared
    full = index.search(queries, k=10, nprobe=index.num_lists)
    assert full[1] == exhaustive[1]
    assert torch.allclose(full[0], exhaustive[0], atol=1e-6)
    # exhaustive search is brute force over the decoded items
    brute = (F.normalize(queries, dim=-1) @ index.decode().t()).topk(10)
    assert exhaustive[1] == [[index.ids[r] for r in row] for row in brute.indices.tolist()]
    assert torch.allclose(exhaustive[0], brute.values, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_probing_scans_exactly_the_nearest_lists(quantizer, backend):
    index, _ = _ivf(quantizer, backend)
    queries = F.normalize(_data(6, 3), dim=-1)
    scores, ids = index.search(queries, k=5, nprobe=3)
    probed = (queries @ index.centroids.t()).topk(3).indices
    lists = torch.repeat_interleave(torch.arange(index.num_lists), index.list_sizes)
    decoded = index.decode()
    for q in range(6):
        rows = torch.isin(lists, probed[q]).nonzero().squeeze(1)
        brute = (decoded[rows] @ queries[q]).topk(5)
        assert _no_near_ties(brute.values[None])
        assert ids[q] == [index.ids[r] for r in rows[brute.indices].tolist()]
        assert torch.allclose(scores[q], brute.values, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_and_faiss_agree_and_fewer_items_than_k_pad_with_none(quantizer, backend):
    index, _ = _ivf(quantizer, backend, n=60, num_lists=30)
    queries = _data(4, 4)
    scores, ids = index.search(queries, k=20, nprobe=1)  # one list of ~2 items: the rest is padding
    for row_scores, row_ids in zip(scores, ids):
        found = sum(i is not None for i in row_ids)
        assert 0 < found < 20 and row_ids[found:] == [None] * (20 - found)
        assert torch.isinf(row_scores[found:]).all() and torch.isfinite(row_scores[:found]).all()
    reference, _ = _ivf(quantizer, "torch", n=60, num_lists=30)
    assert reference.search(queries, k=20, nprobe=1)[1] == ids


@pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu not installed")
def test_faiss_ivf_stores_our_codes(quantizer):
    index, _ = _ivf(quantizer, "faiss")
    index.search(_data(1, 5), k=1)  # builds the IndexIVFPQ
    faiss_index = index._faiss_ivf.index
    assert not faiss_index.by_residual and faiss_index.ntotal == len(index)
    listno = torch.repeat_interleave(torch.arange(index.num_lists), index.list_sizes)
    prefix = listno.numpy().astype("<u8").view("uint8").reshape(-1, 8)[:, : faiss_index.coarse_code_size()]
    import numpy as np

    decoded = faiss_index.sa_decode(np.ascontiguousarray(np.concatenate([prefix, index.packed_codes.numpy()], 1)))
    assert torch.equal(torch.from_numpy(decoded), quantizer.codes_to_vectors(index.codes))


# ---------------------------------------------------------------- removal
@pytest.mark.parametrize("backend", BACKENDS)
def test_removed_items_are_gone_and_the_rest_is_searched_as_before(quantizer, backend):
    index, data = _ivf(quantizer, backend)
    queries = _data(7, 6)
    gone = [f"i{r}" for r in range(0, 1200, 3)]
    assert index.remove(gone) == 400 and len(index) == 800
    keep = [r for r in range(1200) if r % 3]
    fresh = CodeBindIVFIndex.from_quantizer(quantizer, 64, num_lists=12, backend=backend)
    fresh.centroids = index.centroids.clone()  # same lists as the index the items were removed from
    fresh.add(data[keep], ids=[f"i{r}" for r in keep])
    for nprobe in (2, 12):
        got, fresh_hits = index.search(queries, 10, nprobe=nprobe), fresh.search(queries, 10, nprobe=nprobe)
        assert got[1] == fresh_hits[1] and torch.allclose(got[0], fresh_hits[0])
        assert not {i for row in got[1] for i in row} & set(gone)
    assert sorted(index.ids) == sorted(fresh.ids) and int(index.list_sizes.sum()) == 800
    with pytest.raises(KeyError, match="i0"):
        index.remove(["i0"])
    index.add(data[:1], ids=["i0"])  # a removed id may come back
    assert index.search(data[:1], k=1, nprobe=12)[1] == [["i0"]]


# ---------------------------------------------------------------- persistence
def test_save_load_round_trip_and_memory_mapped_codes(quantizer, tmp_path):
    index, _ = _ivf(quantizer, info={"note": "x"}, nprobe=3)
    index.add(_data(5, 7), ids=list("abcde"), metadata=[{"n": i} for i in range(5)])
    index.save(tmp_path / "ivf")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    queries = _data(5, 8)
    expected = index.search(queries, 8)
    mapped = CodeBindIVFIndex.load(tmp_path / "ivf", backend="torch", codebook=quantizer)
    copied = CodeBindIVFIndex.load(tmp_path / "ivf", backend="torch", mmap=False)
    for loaded in (mapped, copied):
        assert loaded.ids == index.ids and loaded.metadata == index.metadata and loaded.info == {"note": "x"}
        assert loaded.nprobe == 3 and loaded.num_lists == 12 and torch.equal(loaded.centroids, index.centroids)
        assert torch.equal(loaded.packed_codes, index.packed_codes)
        assert torch.equal(loaded.list_offsets, index.list_offsets)
        got = loaded.search(queries, 8)
        assert got[1] == expected[1] and torch.equal(got[0], expected[0])
    assert mapped.metadata[mapped.ids.index("c")] == {"n": 2} and mapped.metadata[mapped.ids.index("i7")] == {}
    maps = Path("/proc/self/maps")
    if maps.exists():  # Linux: the mapped codes live in a mapping of codes.safetensors, the copied ones do not
        def mapped_file(tensor):
            address = tensor.data_ptr()
            for line in maps.read_text().splitlines():
                span, *rest = line.split(maxsplit=5)
                low, high = (int(x, 16) for x in span.split("-"))
                if low <= address < high:
                    return rest[-1] if len(rest) == 5 else ""
            return ""

        assert mapped_file(mapped.packed_codes).endswith("codes.safetensors")
        assert not mapped_file(copied.packed_codes).endswith("codes.safetensors")
    # adding to a mapped index merges into memory; the file is untouched
    before = (tmp_path / "ivf" / "codes.safetensors").read_bytes()
    mapped.add(_data(2, 9), ids=["y", "z"])
    assert len(mapped) == len(index) + 2 and "z" in mapped.ids
    assert (tmp_path / "ivf" / "codes.safetensors").read_bytes() == before


def test_push_to_hub_and_from_pretrained(quantizer, hub):
    index, _ = _ivf(quantizer, n=300, num_lists=6)
    index.push_to_hub("org/ivf-index", token="hf_fake")
    files = set(hub.commits("org/ivf-index")[-1].files)
    assert {"index.json", "codes.safetensors", "codebook.safetensors", "centroids.safetensors"} <= files
    pulled = CodeBindIVFIndex.from_pretrained("org/ivf-index", backend="torch", codebook=quantizer)
    assert pulled.ids == index.ids and torch.equal(pulled.packed_codes, index.packed_codes)
    queries = _data(3, 10)
    assert pulled.search(queries, 5, nprobe=2)[1] == index.search(queries, 5, nprobe=2)[1]


# ---------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors(quantizer, tmp_path):
    index = CodeBindIVFIndex.from_quantizer(quantizer, 64, num_lists=8, backend="torch")
    with pytest.raises(ValueError, match="not trained"):
        index.add(_data(3, 0))
    with pytest.raises(ValueError, match="at least num_lists=8 items, got 5"):
        index.train(_data(5, 0))
    index.train(_data(100, 0))
    with pytest.raises(ValueError, match="empty"):
        index.search(_data(1, 0), 1)
    index.add(_data(20, 1), ids=[f"a{i}" for i in range(20)])
    with pytest.raises(ValueError, match=re.escape("unique; already present or repeated: ['a3']")):
        index.add(_data(1, 2), ids=["a3"])
    with pytest.raises(ValueError, match="train it before adding"):
        index.train(_data(100, 0))
    with pytest.raises(ValueError, match=r"nprobe must be an integer in \[1, 8\]"):
        index.search(_data(1, 0), 1, nprobe=9)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 20\]"):
        index.search(_data(1, 0), 21)
    with pytest.raises(ValueError, match=r"shape \(N, 64\)"):
        index.search(torch.randn(2, 65), 1)
    with pytest.raises(ValueError, match="non-zero"):
        index.search(torch.zeros(1, 64), 1)
    with pytest.raises(ValueError, match="num_lists must be a positive integer"):
        CodeBindIVFIndex.from_quantizer(quantizer, 64, num_lists=0)
    assert len(index) == 20  # nothing half-added
    other = CompositionalQuantizer(codebook_size=64, codevector_dim=8)
    with pytest.raises(ValueError, match="codebook mismatch"):
        index.search(_data(1, 0), 1, codebook=other)
    index.save(tmp_path / "ivf")
    with pytest.raises(ValueError, match="codebook mismatch"):
        CodeBindIVFIndex.load(tmp_path / "ivf", codebook=other)
    flat = CodeBindIndex.from_quantizer(quantizer, 64, backend="torch")
    flat.add(_data(3, 3))
    flat.save(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match="centroids.safetensors is missing.* not a CodeBindIVFIndex folder"):
        CodeBindIVFIndex.load(tmp_path / "flat")
    (tmp_path / "flat" / "centroids.safetensors").write_bytes((tmp_path / "ivf" / "centroids.safetensors").read_bytes())
    with pytest.raises(ValueError, match="format 'codebind-index' version 2; expected 'codebind-ivf-index'"):
        CodeBindIVFIndex.load(tmp_path / "flat")
    from safetensors.torch import save_file

    packed, offsets = index.packed_codes, index.list_offsets.clone()
    offsets[3] = offsets[4] + 1  # decreasing: the lists would overlap
    save_file({"codes": packed.contiguous(), "list_offsets": offsets}, tmp_path / "ivf" / "codes.safetensors")
    with pytest.raises(ValueError, match=r"codes.safetensors is corrupted or truncated: its sha256 is [0-9a-f]{16}…, "
                                         "checksums.json records"):
        CodeBindIVFIndex.load(tmp_path / "ivf")
    _reseal(tmp_path / "ivf")  # checksums that agree: the structure is checked next
    with pytest.raises(ValueError, match="list_offsets must be 9 non-decreasing int64 from 0 to 20"):
        CodeBindIVFIndex.load(tmp_path / "ivf")


def _reseal(folder):
    """Record the current sha256 of the index's files in checksums.json (as if the bad files had been saved so)."""
    from codebind_hf.adapters.integrity import write_checksum_list
    from codebind_hf.index import ivf

    write_checksum_list(folder, ivf._CHECKED, ivf.CHECKSUMS_FILE)


def test_saved_ids_round_trip_and_are_checked(quantizer, tmp_path):
    import json

    import numpy as np
    from safetensors.numpy import save_file

    index = CodeBindIVFIndex.from_quantizer(quantizer, 64, num_lists=4, backend="torch")
    index.train(_data(100, 0))
    names = ["plain", "é-accent", "\udc80lone", "", "x" * 300]  # any str, the empty one and a long one
    index.add(_data(5, 1), ids=names)
    index.save(tmp_path / "ivf")
    loaded = CodeBindIVFIndex.load(tmp_path / "ivf")
    assert sorted(loaded.ids) == sorted(names) and loaded.ids == index.ids
    assert json.loads((tmp_path / "ivf" / "index.json").read_text())["metadata"] is None  # none given: none stored
    assert loaded.metadata == [{}] * 5
    ids_file = tmp_path / "ivf" / "ids.safetensors"
    good = ids_file.read_bytes()
    bad_files = {
        "expected 5 unique ids; some repeat": {"id_bytes": np.frombuffer(b"aabcd", np.uint8),
                                                "id_ends": np.arange(1, 6, dtype=np.int64)},
        "ids are not valid UTF-8": {"id_bytes": np.frombuffer(b"ab\xffde", np.uint8),
                                    "id_ends": np.arange(1, 6, dtype=np.int64)},
        "expected 5 ids as uint8 bytes and 5 non-decreasing int64 end offsets": {
            "id_bytes": np.frombuffer(b"abcde", np.uint8), "id_ends": np.array([1, 3, 2, 4, 5], np.int64)},
    }  # fmt: skip
    for message, tensors in bad_files.items():
        save_file(tensors, ids_file)
        with pytest.raises(ValueError, match="ids.safetensors is corrupted or truncated"):
            CodeBindIVFIndex.load(tmp_path / "ivf")
        _reseal(tmp_path / "ivf")
        with pytest.raises(ValueError, match=re.escape(message)):
            CodeBindIVFIndex.load(tmp_path / "ivf")
    ids_file.write_bytes(good)
    _reseal(tmp_path / "ivf")
    assert CodeBindIVFIndex.load(tmp_path / "ivf").ids == index.ids
    config = json.loads((tmp_path / "ivf" / "index.json").read_text())
    (tmp_path / "ivf" / "index.json").write_text(json.dumps({**config, "metadata": [{"edited": 1}] * 5}))
    with pytest.raises(ValueError, match="index.json is corrupted or truncated: its sha256 is"):
        CodeBindIVFIndex.load(tmp_path / "ivf")  # index.json is checksummed too
    _reseal(tmp_path / "ivf")
    checksums = tmp_path / "ivf" / "checksums.json"
    checksums.write_text(checksums.read_text().replace('"ids.safetensors": "', '"ids.safetensors": "0'))
    with pytest.raises(ValueError, match="checksums.json does not match its checksum"):
        CodeBindIVFIndex.load(tmp_path / "ivf")  # the list is sealed: an edited list is refused
    checksums.unlink()
    with pytest.raises(FileNotFoundError, match="checksums.json not found"):
        CodeBindIVFIndex.load(tmp_path / "ivf")
    (tmp_path / "ivf" / "index.json").write_text(json.dumps(config))
    _reseal(tmp_path / "ivf")
    ids_file.unlink()
    with pytest.raises(FileNotFoundError, match="ids.safetensors is missing"):
        CodeBindIVFIndex.load(tmp_path / "ivf")
    (tmp_path / "ivf" / "index.json").write_text(json.dumps({**config, "version": 1}))
    with pytest.raises(ValueError, match="version 1; expected 'codebind-ivf-index' version 2 .*rebuild it"):
        CodeBindIVFIndex.load(tmp_path / "ivf")


def test_from_flat_keeps_items_ids_and_metadata(quantizer):
    flat = CodeBindIndex.from_quantizer(quantizer, 64, backend="torch", info={"path": "p"})
    flat.add(_data(300, 11), ids=[f"f{i}" for i in range(300)], metadata=[{"i": i} for i in range(300)])
    index = CodeBindIVFIndex.from_flat(flat, num_lists=5, chunk_size=128, backend="torch")
    assert sorted(index.ids) == sorted(flat.ids) and index.info == {"path": "p"}
    rows = [flat.ids.index(i) for i in index.ids]
    assert torch.equal(index.codes, flat.codes[rows])
    assert index.metadata == [flat.metadata[r] for r in rows]
    queries = _data(4, 12)
    assert index.search(queries, 7, nprobe=5)[1] == flat.search(queries, 7)[1]


def test_an_interrupted_merge_leaves_an_index_that_refuses_use(quantizer, monkeypatch):
    from codebind_hf.index.ivf_storage import IdColumn

    index, data = _ivf(quantizer, n=120, num_lists=4)
    index.add(data[:3], ids=["x", "y", "z"])

    def interrupted(*args):  # the merge's last step: the codes are merged, the old ids already dropped
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(IdColumn, "take", interrupted)
        with pytest.raises(KeyboardInterrupt):
            index.search(data[:1], k=1)
    for use in (lambda: index.search(data[:1], k=1), lambda: index.add(data[:1], ids=["w"]), lambda: index.ids):
        with pytest.raises(RuntimeError, match="lost items .* load or rebuild it"):
            use()


def test_id_clashes_are_confirmed_on_the_ids_when_hashes_collide(quantizer, tmp_path, monkeypatch):
    from codebind_hf.index import ivf_storage

    # Every id hashes to one of two values: each add's ids are all candidates, and only true clashes may raise.
    monkeypatch.setattr(ivf_storage, "_hashes", lambda ids: ivf_storage.np.array([len(i) % 2 for i in ids], "int64"))
    index = CodeBindIVFIndex.from_quantizer(quantizer, 64, num_lists=4, backend="torch")
    data = _data(60, 8)
    index.train(data)
    index.add(data[:10], ids=[f"s{i}" for i in range(10)])
    index.search(data[:1], k=1)  # merged: "s*" stored, the next ones pending
    index.add(data[10:20], ids=[f"p{i}" for i in range(10)])
    index.add(data[20:25])  # generated ids "20" .. "24"
    for clash in (["new", "s3"], ["p7"], ["22"]):
        with pytest.raises(ValueError, match=re.escape(f"already present or repeated: ['{clash[-1]}']")):
            index.add(data[:len(clash)], ids=clash)
    assert len(index) == 25
    index.remove(["s3", "p7"])
    index.add(data[25:27], ids=["s3", "p7"])  # removed ids come back
    index.save(tmp_path / "ivf")
    loaded = CodeBindIVFIndex.load(tmp_path / "ivf")
    with pytest.raises(ValueError, match=re.escape("already present or repeated: ['24']")):
        loaded.add(data[:2], ids=["x", "24"])
    loaded.add(data[27:29], ids=["x", "y"])
    assert sorted(loaded.ids) == sorted([f"s{i}" for i in range(10)] + [f"p{i}" for i in range(10)]
                                        + [str(i) for i in range(20, 25)] + ["x", "y"])  # fmt: skip


def test_id_hashes_keep_few_sorted_levels():
    from codebind_hf.index.ivf_storage import IdHashes

    held = IdHashes()
    for start in range(0, 5000, 37):
        held.add([f"id{i}" for i in range(start, min(start + 37, 5000))])
    sizes = [len(level) for level in held.levels]
    assert sum(sizes) == 5000 and all(old > 2 * new for old, new in zip(sizes, sizes[1:]))
    assert all(bool((level[1:] >= level[:-1]).all()) for level in held.levels)
    assert held.maybe_held([f"id{i}" for i in range(4990, 5010)]).tolist() == [True] * 10 + [False] * 10


def test_id_column_matches_a_list_of_strings():
    from codebind_hf.index.ivf_storage import _ID_CHUNK, IdColumn

    generator = torch.Generator().manual_seed(3)
    alphabet = "abcxyz0189é€😀"  # 1-, 2-, 3- and 4-byte UTF-8 characters
    lengths = torch.randint(0, 12, (2 * _ID_CHUNK + 123,), generator=generator).tolist()
    picks = torch.randint(0, len(alphabet), (sum(lengths),), generator=generator).tolist()
    ids, at = [], 0
    for length in lengths:
        ids.append("".join(alphabet[p] for p in picks[at : at + length]) + str(len(ids)))
        at += length
    column = IdColumn.from_strings(ids)
    assert len(column) == len(ids) and list(column) == ids and column.strings(5, 9) == ids[5:9]
    assert column[-1] == ids[-1] and column[_ID_CHUNK] == ids[_ID_CHUNK]
    rows = torch.randperm(len(ids), generator=generator)[: len(ids) - 7].numpy()  # across the gather chunks
    assert column.take(rows).strings() == [ids[r] for r in rows]
    parts = [IdColumn.from_strings(ids[:100]), IdColumn.from_strings([]), IdColumn.from_strings(ids[100:])]
    halves = IdColumn.concat(parts)
    assert halves == column and halves.strings() == ids
    assert column.take([]).strings() == [] and IdColumn.concat([]).strings() == []
    with pytest.raises(IndexError):
        column[len(ids)]
