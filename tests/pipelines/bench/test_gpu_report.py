"""docs/bench/gpu.md's writer on the results a GPU run gives (this machine has none to produce them)."""

from pipelines.bench.gpu_report import markdown

MIB = 2**20
RESULTS = {
    "vae": {"status": "ok", "seconds": 30.0, "result": {
        "tensorflow": "2.21.0", "gpus": ["/physical_device:GPU:0"], "result_device": "/job:localhost/device:GPU:0",
        "weights_device": "/job:localhost/device:GPU:0", "seconds_per_step": 0.004, "batch": 64, "loss": 0.1}},
    "stage2": {"status": "ok", "seconds": 40.0, "result": {
        "torch": "2.13.0", "cuda": "13.0", "gpu": "NVIDIA H200",
        "fp32": {"seconds_per_step": 0.02, "batch": 128, "max_memory_allocated": 300 * MIB},
        "bf16": {"seconds_per_step": 0.015, "batch": 128, "max_memory_allocated": 200 * MIB}}},
    "sample": {"status": "failed", "seconds": 5.0, "error": "AssertionError: the decoder ran on CPUExecutionProvider"},
    "compare": {"status": "ok", "seconds": 60.0, "result": {"cases": [
        {"name": "64px-pixel", "params": 1000,
         "train": {"batch": 8, "max_memory_allocated": 1000 * MIB, "nvml_process_bytes": 1800 * MIB,
                   "estimate": 950 * MIB, "estimate_over_measured": 0.95},
         "sample": {"status": "oom"}}]}},
    "claim": {"status": "ok", "seconds": 90.0, "result": {"params": 421_529_606, "rows": [
        {"batch": 3, "max_memory_allocated": 11 * 1024 * MIB, "max_memory_reserved": 12 * 1024 * MIB,
         "nvml_process_bytes": -1, "estimate": 10 * 1024 * MIB}, {"batch": 8, "status": "oom"}]}},
}


def test_every_stage_is_written_with_its_assertions_and_figures():
    text = markdown(["GPU 0: NVIDIA H200 (UUID: GPU-x)"], RESULTS)
    assert "on GPU 0: NVIDIA H200" in text
    assert "VAE step on /job:localhost/device:GPU:0" in text and "4.0 ms/step at batch 64" in text
    assert "fp32 20.0 ms/step, 300 MiB" in text and "bf16 15.0 ms/step, 200 MiB" in text
    assert "**sample: FAILED**" in text and "ran on CPUExecutionProvider" in text
    assert "| 64px-pixel | train | 8 | 1000 | 1800 | 950 | 0.95 |" in text
    assert "| 64px-pixel | sample | - | oom |" in text
    assert "| 3 | 11264 | 12288 | - | 10240 |" in text and "| 8 | OOM |" in text
