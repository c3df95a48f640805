"""Reading benchmark_model's results: both tools' logs and the result file.

The log samples in tests/fixtures/benchmark_model reproduce the formats of the
tools' sources (provenance in that folder's README); the result file is
encoded here with the protobuf library from benchmark_result.proto's schema,
independently of the small decoder under test.
"""

from pathlib import Path

import pytest

from edge_bench.benchmark_model import (
    BenchmarkOutputError,
    parse_output,
    parse_result_file,
    parse_stats_line,
)

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"


def sample(name):
    return (FIXTURES / name).read_text()


def test_classic_log_gives_the_timed_phase_not_the_warmup():
    result = parse_output(sample("classic_tf2.txt"))
    assert result["tool"] == "tflite-benchmark_model"
    assert result["runs"] == 17571  # the second count= line (the timed phase)
    assert result["mean_us"] == pytest.approx(56.8114)
    assert (result["min_us"], result["max_us"], result["std_us"]) == (48, 301, 7)
    assert result["init_us"] == 3182 and result["first_us"] == 201
    assert result["warmup_mean_us"] == pytest.approx(57.3862)
    assert result["memory_init_mb"] == pytest.approx(4.67188)
    assert result["memory_overall_mb"] == pytest.approx(5.19531)
    assert "median_us" not in result  # older builds print no percentiles


def test_newer_classic_log_with_percentiles_and_e_notation():
    result = parse_output(sample("classic_percentiles.txt"))
    assert result["runs"] == 5
    assert result["mean_us"] == pytest.approx(1.51855e6)
    assert result["median_us"] == 1519874 and result["p5_us"] == 1498812
    assert result["p95_us"] == 1531007
    assert result["warmup_mean_us"] == pytest.approx(1.6123e6)
    assert result["peak_memory_mb"] == pytest.approx(104.512)


def test_old_memory_line_and_all_same_warmup():
    result = parse_output(sample("classic_old_memory.txt"))
    assert result["runs"] == 498211 and result["mean_us"] == pytest.approx(1.86212)
    assert result["memory_init_mb"] == pytest.approx(2.67188)
    warmup = parse_stats_line("count=250000 curr=2(all same)")
    assert warmup == {"runs": 250000, "curr_us": 2.0, "min_us": 2.0, "max_us": 2.0,
                      "mean_us": 2.0, "std_us": 0.0, "median_us": 2.0}


@pytest.mark.parametrize("name, message", [
    pytest.param("classic_dry_run.txt", "no timed runs", id="count=0"),
    pytest.param("classic_crash.txt", "Benchmarking failed", id="crash"),
    pytest.param("litert_block.txt", "too coarse", id="litert-two-decimals"),
])
def test_unusable_output_is_refused_with_the_reason(name, message):
    with pytest.raises(BenchmarkOutputError, match=message):
        parse_output(sample(name))


def test_litert_block_is_read_when_its_resolution_suffices():
    result = parse_output(sample("litert_slow.txt"))
    assert result["tool"] == "litert-benchmark_model"
    assert result["mean_us"] == pytest.approx(12460) and result["runs"] == 81
    assert result["min_us"] == pytest.approx(12110) and result["std_us"] == pytest.approx(310)
    assert result["init_us"] == pytest.approx(61230)


def _result_message_class():
    """BenchmarkResult built from benchmark_result.proto's schema at run time."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="benchmark_result_test.proto",
                                               package="tflite.tools.benchmark", syntax="proto2")

    def message(name, fields):
        msg = proto.message_type.add(name=name)
        for number, (field_name, kind, type_name) in enumerate(fields, 1):
            msg.field.add(name=field_name, number=number, label=F.LABEL_OPTIONAL, type=kind,
                          **({"type_name": type_name} if type_name else {}))

    message("LatencyMetrics", [(n, F.TYPE_FLOAT, None) for n in (
        "avg_ms", "min_ms", "max_ms", "stddev_ms", "median_ms", "p5_ms", "p95_ms", "init_ms",
        "first_inference_ms", "average_warm_up_ms")])
    message("MemoryMetrics", [("init_footprint_kb", F.TYPE_INT64, None),
                              ("overall_footprint_kb", F.TYPE_INT64, None),
                              ("peak_mem_mb", F.TYPE_FLOAT, None)])
    message("MiscMetrics", [("model_size_mb", F.TYPE_FLOAT, None), ("num_runs", F.TYPE_INT32, None),
                            ("num_warmup_runs", F.TYPE_INT32, None),
                            ("model_throughput_in_mb_per_sec", F.TYPE_FLOAT, None)])
    message("BenchmarkResult", [
        ("name", F.TYPE_STRING, None),
        ("latency_metrics", F.TYPE_MESSAGE, ".tflite.tools.benchmark.LatencyMetrics"),
        ("memory_metrics", F.TYPE_MESSAGE, ".tflite.tools.benchmark.MemoryMetrics"),
        ("misc_metrics", F.TYPE_MESSAGE, ".tflite.tools.benchmark.MiscMetrics")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tflite.tools.benchmark.BenchmarkResult"))


def test_result_file_is_decoded_in_microseconds():
    result = _result_message_class()(name="mpath")
    latency = result.latency_metrics
    latency.avg_ms, latency.min_ms, latency.max_ms, latency.median_ms = 0.0568, 0.048, 0.301, 0.0551
    latency.p5_ms, latency.p95_ms, latency.stddev_ms, latency.init_ms = 0.049, 0.071, 0.007, 3.182
    latency.first_inference_ms = 0.201
    result.memory_metrics.init_footprint_kb = 4784
    result.misc_metrics.num_runs = 17571
    result.misc_metrics.num_warmup_runs = 8712
    parsed = parse_result_file(result.SerializeToString())
    assert parsed["tool"] == "benchmark_model-result_file"
    assert parsed["mean_us"] == pytest.approx(56.8, rel=1e-6)
    assert parsed["median_us"] == pytest.approx(55.1, rel=1e-6)
    assert parsed["p95_us"] == pytest.approx(71.0, rel=1e-6)
    assert parsed["first_us"] == pytest.approx(201, rel=1e-6)
    assert parsed["runs"] == 17571 and parsed["warmup_runs"] == 8712
    assert parsed["init_footprint_kb"] == 4784


def test_truncated_or_empty_result_file_is_refused():
    result = _result_message_class()()
    result.latency_metrics.avg_ms = 1.0
    data = result.SerializeToString()
    with pytest.raises(BenchmarkOutputError, match="truncated"):
        parse_result_file(data[:-2])
    with pytest.raises(BenchmarkOutputError, match="no latency"):
        parse_result_file(b"")
