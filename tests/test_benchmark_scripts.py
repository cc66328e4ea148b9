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


def test_index_benchmark_reports_compression_and_recall(capsys):
    index_bench.main(["--items", "400", "--queries", "20", "--clusters", "40"])
    result = _result_line(capsys)
    assert result["compression_vs_float32"] == 25.6
    assert 0 <= result["recall_at_10"] <= 1
    assert all(row["recall_at_10_vs_decoded"] == 1.0 for row in result["backends"].values())
