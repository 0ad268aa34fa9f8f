"""pipelines/bench/decode_engines.py at toy size: both engines and the profile's sessions are timed on a fresh
export."""

from __future__ import annotations

import math


def test_bench_decode_times_every_engine_and_the_unfused_graph(tmp_path, capsys):
    from pipelines.bench.decode_engines import main

    figures = main(["--run", str(tmp_path / "no-run"), "--preset", "tiny", "--batch", "4", "--batches", "2",
                    "--repeats", "1", "--profile"])
    assert {"keras_predict", "onnxruntime", "ort_session_threads2_opt_all_unfused_groupnorm"} <= set(figures)
    assert all(math.isfinite(v) and v > 0 for v in figures.values())
    out = capsys.readouterr().out
    assert "untrained vae/ preset 'tiny'" in out and "onnxruntime / keras predict" in out
