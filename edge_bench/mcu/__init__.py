"""TFLM with CMSIS-NN for Cortex-M cores: the offline build (``build``), the
benchmark program run on QEMU (``runner.cc``) and the instruction-counting
QEMU plugin (``insn_count.c``) behind the ``tflm:CORE`` targets.

Example:
    >>> from edge_bench.mcu import CORES
    >>> CORES["cortex-m4"].board
    'mps2-an386'
"""

from edge_bench.mcu.build import CORES, Core, get_core, setup_mcu

__all__ = ["CORES", "Core", "get_core", "setup_mcu"]
