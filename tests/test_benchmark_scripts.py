"""The perf scripts run end to end on small sizes and end with their RESULT line."""

import json

from tiny_models import load_script

index_bench = load_script("benchmarks/perf/index.py")
quantizer_bench = load_script("benchmarks/perf/quantizer.py")


def _result_line(capsys):
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("RESULT ")]
    assert lines, "no RESULT line printed"
    return json.loads(lines[-1][len("RESULT ") :])


def test_quantizer_benchmark_reports_speedup_and_ceiling(capsys):
    quantizer_bench.main(["--vectors", "512", "--vqp-vectors", "128", "--dims", "64", "--repeats", "1"])
    result = _result_line(capsys)
    assert result["train_step_speedup_vs_vqp"] > 0 and 0 < result["assign_fraction_of_ceiling"] < 1.5


def test_index_benchmark_reports_compression_recall_and_ivf_figures(capsys):
    index_bench.main(["--items", "400", "--queries", "20", "--clusters", "40", "--chunk", "128"])
    result = _result_line(capsys)
    assert result["compression_vs_float32"] == 25.6 and result["lists"] == 16
    assert 0 <= result["recall_at_10"] <= 1 and 0 <= result["ivf_recall_at_10_vs_exhaustive"] <= 1
    backends = [row for row in (result["torch"], result["faiss"]) if row is not None]
    for row in backends:
        assert row["exhaustive_recall_at_10_vs_decoded"] == 1.0
        assert row["ivf"]["16"]["recall_at_10_vs_exhaustive"] == 1.0  # every list probed: the exhaustive hits
    # codes (160 B) + list offsets (17 x 8 B over 400 items); the folder adds ids, centroids and the codebook
    assert result["bytes_per_item"] == 160 + 17 * 8 / 400
    assert result["index_bytes"] > 400 * 160 and result["peak_rss_bytes"] >= result["rss_before_index_bytes"] > 0
    assert result["ivf_speedup_vs_exhaustive"] > 0 and result["ivf_nprobe"] in (1, 2, 4, 8, 16)
    # the fresh build process (stream, encode, add, merge, save) writes the same files as the main process' build
    assert result["build_same_index"] is True and result["build_rss_before_bytes"] > 0
