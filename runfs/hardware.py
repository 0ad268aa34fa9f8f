"""What this machine's CPU computes natively, read without any framework: shared by stage 1 (TensorFlow) and
stage 2 (torch), which must not import each other."""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")  # Linux's CPU flags
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_native_bf16() -> bool:
    """Whether the CPU has AMX tiles (Intel Sapphire Rapids or newer) or AVX512-BF16 (AMD Zen 4 or newer, Intel
    Cooper Lake): there oneDNN runs bf16 convolutions and matmuls natively; elsewhere bf16 is emulated and slow.
    False where /proc/cpuinfo cannot be read (not Linux)."""
    try:
        return bool(BF16_FLAGS & set(CPUINFO.read_text().split()))
    except OSError:
        return False
