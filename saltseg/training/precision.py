"""The training precision a device is fast at."""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags Linux reports; empty where it reports none."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively, so that bf16 training is faster than float32.

    oneDNN must support bfloat16 here and, on x86, the CPU must report AVX512-BF16 or AMX-BF16:
    with plain AVX-512 oneDNN emulates bfloat16, which is slower than float32. An x86 CPU whose
    flags cannot be read counts as without.
    """
    try:
        supported = bool(torch.backends.mkldnn.is_available()) and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False
    if not supported:
        return False
    if platform.machine().lower() in _X86:
        return bool(_cpu_flags() & _BF16_FLAGS)
    return True


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """The precision Lightning gets for a recipe's ``trainer.precision`` and ``accelerator``.

    ``"auto"`` becomes ``"bf16-mixed"`` where the device computes bfloat16 natively (a CUDA GPU
    that supports it, or, on a CPU, :func:`cpu_has_bf16`) and ``"32"`` elsewhere; any other
    value is returned as it is.
    """
    if precision != "auto":
        return precision
    name = accelerator.lower()
    on_gpu = name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available())
    if on_gpu:
        fast = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        fast = name in ("cpu", "auto") and cpu_has_bf16()
    resolved = "bf16-mixed" if fast else "32"
    log.info("precision auto -> %s", resolved)
    return resolved
