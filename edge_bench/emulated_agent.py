"""Run one ``.tflite`` file in an emulated process (``edge_bench.emulated``).

This script runs in the arm64 Python of ``mpath-tf setup arm64`` under
``qemu-aarch64``, so it imports nothing but the standard library, NumPy and
LiteRT. It reads the input from ``.npy``, invokes the interpreter
``COUNT`` times on it (one thread, XNNPACK, as LiteRT runs on a phone's or
a Raspberry Pi's CPU by default) after one uncounted inference, between
two marks the counting plugin sees, and writes the output to ``.npy``.

Usage: ``python emulated_agent.py MODEL COUNT INPUT.npy OUTPUT.npy``; with
``COUNT`` 0, ``INPUT.npy`` is a batch of examples, run as one batch (the
outputs of every example, for parity checks) without marks.
"""

import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def main(argv) -> int:
    model, count, given, out = argv[1], int(argv[2]), argv[3], argv[4]
    interpreter = Interpreter(model_path=model, num_threads=1)
    x = np.load(given)
    if count == 0:  # a batch, for parity
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    feed = interpreter.get_input_details()[0]["index"]
    fetch = interpreter.get_output_details()[0]["index"]
    interpreter.set_tensor(feed, x)
    if count == 0:
        interpreter.invoke()
        np.save(out, interpreter.get_tensor(fetch))
        return 0
    interpreter.invoke()  # the first inference prepares the kernels: not counted
    mark(-4242)
    for _ in range(count):
        interpreter.invoke()
    mark(-4243)
    np.save(out, interpreter.get_tensor(fetch))
    return 0


def mark(code: int) -> None:
    """A mark the counting plugin sees (``edge_bench/mcu/insn_count.c``): a
    close() of an invalid descriptor, which fails and changes nothing."""
    try:
        os.close(code)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
