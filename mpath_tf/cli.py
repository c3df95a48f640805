"""``mpath-tf``: a thin click layer over the mpath-tf API.

Library errors (``mpath_tf.errors.MpathError``) become one-line messages with
exit code 2; every option maps to an argument of the function it calls.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
import sys
import warnings

import click

from mpath_tf.core import ARCHITECTURES
from mpath_tf.pipeline.config import SearchConfig
from mpath_tf.errors import ConfigError, MpathError, RuntimeFailure
from edge_bench import BenchSettings, get_target
from edge_bench.arm64 import setup_arm64
from edge_bench.mcu.build import setup_mcu
from mpath_tf.pipeline.bench import bench_run
from mpath_tf.pipeline.results import summary
from mpath_tf.reporting.report import write_report
from mpath_tf.storage import atomic_write_json

_DEFAULTS = SearchConfig()


class InputError(click.ClickException):
    """A usage or input problem: printed as one line, exit code 2."""

    exit_code = 2


def _in_option_words(message: str) -> str:
    """A library error in the running command's words: each API argument it
    names becomes that command's option: `qat_epochs` -> --qat-epochs,
    `method='rank'` -> --method rank, and a received qat_epochs=0 -> --qat-epochs 0.
    Names that are not the command's options stay as they are.

    Example:
        >>> with click.Context(export):
        ...     _in_option_words("`qat_epochs` must be >= 0. Received: qat_epochs=-1")
        '--qat-epochs must be >= 0. Received: --qat-epochs -1'
    """
    context = click.get_current_context(silent=True)
    options = {p.name: p.opts[0] for p in (context.command.params if context else [])
               if isinstance(p, click.Option)}

    def option(match, name: str, value: str | None) -> str:
        if name not in options:
            return match[0]
        return options[name] if value is None else f"{options[name]} {value.strip(chr(39))}"

    message = re.sub(r"`(\w+)(?:=([^`]*))?`", lambda m: option(m, m[1], m[2]), message)
    return re.sub(r"(?<![\w`.-])(\w+)=('[^']*'|[^\s,;)\]]+)",
                  lambda m: option(m, m[1], m[2]), message)


def _input_errors(command):
    """Turn library input errors into ``InputError`` (exit 2); a runtime
    failure (a diverged training, a dead worker) exits 1 with its cause."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RuntimeFailure as err:  # not an input problem: exit 1
            raise click.ClickException(str(err)) from err
        except MpathError as err:
            raise InputError(_in_option_words(str(err))) from err

    return wrapper


def _int_list(ctx, param, value):
    """Parse ``1,2,8`` into [1, 2, 8]."""
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 1,4,16; received {value!r}")


_data_options = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory with the dataset's official files (default: $MPATH_TF_DATA_DIR).",
)


@click.group()
@click.version_option(package_name="mpath-tf")
def cli():
    """Find multipath networks with a chosen accuracy/latency balance and
    export them to quantized TFLite for edge devices."""


@cli.command()
@click.option("--dataset", default=_DEFAULTS.dataset, show_default=True,
              help="digits (bundled), mnist, fashion_mnist or cifar10.")
@_data_options
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Your own data instead: an .npz (x_train, y_train[, x_test, y_test]) "
              "or a .csv with a header row.")
@click.option("--label", default=None, help="The label column of a --data .csv file.")
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="Search your own Keras model (.keras: Sequential or Functional, softmax "
              "output) instead of the built-in MLP: its first run of equal-width Dense "
              "layers is split into paths; --depth and --width come from it.")
@click.option("--arch", type=click.Choice(ARCHITECTURES), default=_DEFAULTS.arch,
              show_default=True,
              help="Built-in network: mlp, cnn (image data: --depth 3x3 convolutions of "
              "--width channels, split into channel paths) or resnet8 (image data: MLPerf "
              "Tiny's ResNet-8, stages of --width, 2x and 4x channels, each split into the "
              "same path count with --method rank, its own with lambda or hypernet; 16 is "
              "MLPerf's width).")
@click.option("--depth", type=int, default=_DEFAULTS.depth, show_default=True,
              help="Hidden layers (>= 2; with --arch cnn, convolutions; with --model, its "
              "stack's; not used by --arch resnet8).")
@click.option("--width", type=int, default=_DEFAULTS.width, show_default=True,
              help="Neurons per hidden layer (>= 2; with --arch cnn, channels; with --arch "
              "resnet8, the first stage's channels; with --model, its stack's).")
@click.option("--epochs", type=int, default=None,
              help="One-shot (and dense reference) training epochs [default: 60, or on small "
              "data as many as 2,400 optimizer steps take].")
@click.option("--finetune-epochs", type=int, default=None,
              help="Fine-tuning epochs per sampled path count [default: 10, or on small data "
              "as many as 400 steps take].")
@click.option("--samples", type=int, default=_DEFAULTS.samples, show_default=True,
              help="Evenly spaced path counts in [2, W] to fine-tune.")
@click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True)
@click.option("--learning-rate", type=float, default=_DEFAULTS.learning_rate,
              show_default=True, help="Adam learning rate.")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True)
@click.option("--predictor", default=_DEFAULTS.predictor, show_default=True,
              help="Accuracy predictor: paper, pchip, isotonic or power_law.")
@click.option("--max-accuracy-drop", type=float, default=_DEFAULTS.max_accuracy_drop,
              show_default=True,
              help="Choose the most paths whose predicted validation accuracy is at "
              "most this far below the best sample (0.01 = 1 point).")
@click.option("--paths", type=int, default=None,
              help="Choose this path count instead of using --max-accuracy-drop.")
@click.option("--min-accuracy", type=float, default=None,
              help="Budget: lowest predicted validation accuracy (0.97 = 97%).")
@click.option("--max-params", type=int, default=None, help="Budget: most parameters.")
@click.option("--max-size", "max_size_kb", type=float, default=None,
              help="Budget: largest int8 .tflite file, in KB.")
@click.option("--max-latency-ms", type=float, default=None,
              help="Budget: slowest median latency of the int8 file on --target (measured).")
@click.option("--max-ram", "max_ram_kb", type=float, default=None,
              help="Budget: largest TFLM arena of the int8 file, in KB (measured on --target "
              "when it is tflm or tflm:CORE, else on this machine's TFLM interpreter).")
@click.option("--max-flash", "max_flash_kb", type=float, default=None,
              help="Budget: largest int8 file for TFLM without its metadata, in KB.")
@click.option("--target", default=_DEFAULTS.target, show_default=True,
              help="Where costs are measured: the edge_bench target of --max-latency-ms (and "
              "of --cost latency): local, ssh://host or adb[:SERIAL]; or a microcontroller "
              "runtime, tflm (TFLM on this machine) or tflm:cortex-m4 / m4f / m7 / m55 "
              "(TFLM with CMSIS-NN on an emulated core, `mpath-tf setup mcu`): the int8 "
              "files are lowered for it and the chosen model and the dense reference are "
              "measured there (instructions, arena, flash).")
@click.option("--objective", type=click.Choice(["params", "latency", "ram", "flash"]),
              default=_DEFAULTS.objective, show_default=True,
              help="What the choice minimizes within --max-accuracy-drop: params (the paper's: "
              "the most paths), or latency on --target, ram (TFLM arena) or flash (file for "
              "TFLM): the cheapest candidates by predicted cost and the dense reference are "
              "measured there, and the cheapest measured one is chosen, dense included.")
@click.option("--final-epochs", type=int, default=None,
              help="Fine-tuning epochs of the chosen model (default: --epochs, the dense "
              "reference's budget); "
              "predictions are raised by the gain the samples' learning curves extrapolate.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: runs/<dataset>-mpath-<depth>-<width>-seed<seed>). "
              "An existing run with the same settings is resumed.")
@click.option("--sampling", type=click.Choice(["even", "adaptive"]), default="even",
              show_default=True,
              help="Sampled path counts: evenly spaced, or each next one where the predicted "
              "accuracy is least certain.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Fine-tune the samples as KerasTuner trials on this many local worker "
              "processes (a chief oracle plus workers; 0: in this process).")
@click.option("--method", type=click.Choice(["rank", "lambda", "hypernet"]), default="rank",
              show_default=True,
              help="rank: the paper's rank-and-prune; lambda: one-shot training with the cost "
              "term at --lam, the gates are the network; hypernet: a lam-hypernetwork after "
              "one-shot training, any trade-off from one run. lambda and hypernet gate every "
              "stack of a CNN or --model, one path count each.")
@click.option("--cost", type=click.Choice(["params", "latency"]), default="params",
              show_default=True, help="Cost term of lambda/hypernet: parameters, or latency "
              "on --target from a lowering profile.")
@click.option("--cost-table", type=click.Path(dir_okay=False), default=None,
              help="Cost table JSON, or a `mpath-tf profile` table, for --cost latency "
              "(default: the bundled profile of target local; a CNN needs a table with "
              "path-convolution entries, `mpath-tf profile --conv-channels`); with "
              "--objective latency, the `mpath-tf profile --target` table of --target.")
@click.option("--lam", type=float, default=None,
              help="Weight of the relative cost (lambda: required; hypernet: the trade-off "
              "to derive). Larger gives a cheaper network.")
@click.option("--lam-max", type=float, default=_DEFAULTS.lam_max, show_default=True,
              help="hypernet: its training range of lam is [0, lam-max].")
@click.option("--hyper-epochs", type=int, default=None,
              help="hypernet: hypernetwork training epochs (default: --epochs).")
@click.option("--strategy", type=click.Choice(["mirrored", "multiworker"]), default=None,
              help="Distribute the one-shot training: 'mirrored' (all local GPUs) or "
              "'multiworker' (the machines of TF_CONFIG; run the same command on each, "
              "worker 0 is the chief and finishes the search).")
@click.option("--cluster-timeout", "cluster_timeout_s", type=float,
              default=_DEFAULTS.cluster_timeout_s, show_default=True,
              help="Seconds a multiworker task waits for the chief.")
@click.option("--normalize/--no-normalize", default=_DEFAULTS.normalize, show_default=True,
              help="Standardize float features (CSV, NPZ) in the model's first layer, so "
              "the .tflite takes raw readings; images are never standardized.")
@click.option("--many-classes", is_flag=True, default=False,
              help="Accept a label column with more than 1,000 distinct values.")
@click.option("--finetune-learning-rate", type=float, default=None,
              help="Adam learning rate of the fine-tunings (default: --learning-rate).")
@click.option("--reference/--no-reference", default=_DEFAULTS.reference, show_default=True,
              help="Train the dense MLP of the same depth and width on the same data and "
              "budget, and compare the chosen model with it.")
@click.option("--bench/--no-bench", default=_DEFAULTS.bench, show_default=True,
              help="Time the chosen model and the dense reference on this machine (LiteRT, "
              "float32 and int8, about 10 s) after export.")
@click.option("--bench-seconds", type=float, default=_DEFAULTS.bench_seconds, show_default=True,
              help="Measured time per file of that timing (four files, each after 0.3 s of "
              "warm-up).")
@click.option("--quiet", is_flag=True, default=False,
              help="Print nothing but errors (and the --json summary).")
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print a machine-readable summary on stdout at the end.")
@_input_errors
def search(run_dir, quiet, as_json, **settings):
    """Train a supernet, fine-tune sampled path counts, predict the rest,
    and export the chosen model to .tflite.

    \b
    Example (embedded digits dataset, mpath-4-256, about two minutes on 2 cores):
        mpath-tf search
    \b
    The paper's mpath-4-500 on MNIST:
        mpath-tf search --dataset mnist --data-dir ~/data --width 500 --epochs 100
    \b
    Your own tabular data:
        mpath-tf search --data sensors.csv --label activity --width 32
    \b
    A small CNN whose convolutions are split into channel paths:
        mpath-tf search --arch cnn --width 32
    \b
    MLPerf Tiny's ResNet-8, each stage split into channel paths:
        mpath-tf search --arch resnet8 --width 16 --dataset fashion_mnist --data-dir ~/data
    \b
    Your own Keras model (its Dense layers split into paths):
        mpath-tf search --model my_model.keras --dataset mnist --data-dir ~/data
    \b
    The most accurate model within budgets (measured on a Raspberry Pi):
        mpath-tf search --max-params 20000 --max-latency-ms 0.05 --target ssh://pi@rpi
    \b
    For a Cortex-M4 microcontroller (TFLM with CMSIS-NN, `mpath-tf setup mcu` first):
        mpath-tf search --target tflm:cortex-m4 --max-ram 16
    \b
    Cost-regularized: one trade-off, or a hypernetwork for all of them:
        mpath-tf search --method lambda --lam 0.3 --cost latency
        mpath-tf search --method hypernet --max-params 20000
    """
    config = SearchConfig(**settings).validate()  # before TensorFlow loads
    from mpath_tf.pipeline.run import search as run_search
    from mpath_tf.progress import Progress

    # Progress and messages go to stderr, so stdout holds only the results.
    result = run_search(config, run_dir, progress=Progress(quiet=quiet))
    if result.get("role") == "worker":  # a multiworker task other than the chief
        if as_json:
            click.echo(json.dumps(result, indent=2))
        return
    if as_json:
        click.echo(json.dumps(summary(result), indent=2))
    elif not quiet:
        click.echo(f"results: {result['run_dir']}")
    failed = [q for q, e in result["chosen"]["exports"].items()
              if not e.get("verification", {}).get("passed", True)
              or not all(c.get("passed", True) for c in e.get("verification_on", {}).values())]
    if failed:  # as `mpath-tf export`: a file beyond its checks (here or on the core) exits 1
        raise click.ClickException(
            f"the chosen model's {' and '.join(failed)} file(s) missed their checks (see "
            f"{result['run_dir']}/results.json); the files are kept.")


@cli.command()
@click.argument("run", type=click.Path())
@click.option("--paths", type=int, required=True, help="Path count b in [1, W].")
@click.option("--finetune-epochs", type=int, default=0, show_default=True,
              help="Fine-tune the derived model on the run's dataset (0: no fine-tuning).")
@_data_options
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Output .keras file (default: RUN/models/paths-<b>-derived.keras).")
@_input_errors
def derive(run, paths, finetune_epochs, data_dir, output):
    """Derive the multipath model with PATHS paths from a search run.

    \b
    Example:
        mpath-tf derive runs/digits-mpath-4-256-seed0 --paths 8 --finetune-epochs 5
    """
    from mpath_tf.pipeline.workflows import derive_from_run

    report = derive_from_run(run, paths, finetune_epochs, data_dir=data_dir, output=output)
    click.echo(json.dumps(report, indent=2))


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["tflite"]), default="tflite",
              show_default=True, help="Export format.")
@click.option("--quantize", "--quantization", "quantization", default="float32",
              show_default=True,
              help="float32, float16, dynamic (int8 weights), int8 (weights and activations) "
              "or int16x8 (int8 weights, int16 activations).")
@click.option("--lowering", default="auto", show_default=True,
              help="How block-diagonal layers become TFLite ops: per_path, batch_matmul, conv, "
              "bucketed (paths padded to a few widths, one op each); for path convolutions "
              "grouped (one grouped CONV_2D per width) or split (one CONV_2D per path); or auto "
              "(the fastest of each by the lowering profile).")
@click.option("--profile", "--calibration", "profile", type=click.Path(dir_okay=False),
              default=None,
              help="Lowering profile for --lowering auto (default: this CPU's own, if "
              "measured, else the bundled one; make one with `mpath-tf profile`). "
              "--calibration is its earlier name.")
@click.option("--profile-cpu", "--calibrate", "profile_cpu", is_flag=True,
              help="With --lowering auto: if this CPU kind has no lowering profile for the "
              "mode, measure one first (about a minute) and cache it for later exports. "
              "--calibrate is its earlier name.")
@click.option("--int8-io", is_flag=True, default=False,
              help="With --quantize int8: int8 input and output tensors (default float32).")
@click.option("--equalize", type=float, default=None,
              help="With --quantize int8: strength in [0, 1] of the activation-range "
              "equalization that lowers int8 rounding error without changing the float "
              "model (default 0.5; 0 turns it off).")
@click.option("--qat-epochs", type=int, default=0, show_default=True,
              help="With --quantize int8: quantization-aware training epochs (tfmot) before "
              "conversion; needs `pip install 'mpath-tf[qat]'`.")
@click.option("--bundle", is_flag=True, default=False,
              help="MODEL is a run directory: write the trade-off bundle (a .tflite per path "
              "count, models.json, select_model.py) to --output (default RUN/bundle).")
@click.option("--paths", "bundle_paths", callback=_int_list, default=None,
              help="With --bundle: path counts to include (default: the samples and the chosen).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check the file against Keras on held-out data (converters.parity).")
@click.option("--dataset", default=None,
              help="Dataset for int8 / int16x8 calibration and verification (default: the "
              "dataset of the run MODEL belongs to, if any).")
@click.option("--target", default=None,
              help="Export for a microcontroller: tflm or tflm:cortex-m4 / m4f / m7 / m55. "
              "--lowering auto then uses that target's profile and never a "
              "lowering TFLM refuses; the C array (<stem>_model_data.h/.cc) and the op "
              "resolver (<stem>_op_resolver.h) are written beside the file, and the report "
              "gives the arena TFLM needs. Or for LiteRT on an ARM core: arm64:cortex-a53 / "
              "a55 / a72 / a76 (--lowering auto uses that core's profile).")
@click.option("--strip-metadata", is_flag=True, default=False,
              help="With --target tflm...: leave the metadata (labels, converter records) "
              "out of the file and the C array, which TFLM does not read.")
@click.option("--verify-on", default=None,
              help="Also run the parity check on an emulated ARM core's LiteRT kernels: "
              "arm64:cortex-a53 / a55 / a72 / a76 (`mpath-tf setup arm64`).")
@_data_options
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: MODEL with suffix _<quantization>.tflite).")
@_input_errors
def export(model, fmt, quantization, lowering, profile, profile_cpu, int8_io, equalize,
           qat_epochs, bundle, bundle_paths, verify, dataset, target, strip_metadata, verify_on,
           data_dir, output):
    """Export a .keras MODEL to TFLite and check it against Keras.

    \b
    Example:
        mpath-tf export runs/digits-mpath-4-256-seed0/model.keras --quantize int8 --lowering auto
    \b
    For a Cortex-M4 microcontroller project (C array, op resolver, arena size):
        mpath-tf export runs/digits-mpath-4-256-seed0/model.keras --quantize int8 \\
            --target tflm:cortex-m4 --strip-metadata
    """
    if bundle:
        from mpath_tf.reporting.bundle import write_bundle

        out = write_bundle(model, bundle_paths, quantization, output, lowering,
                           log=lambda m: click.echo(m, err=True))
        click.echo(str(out))
        return
    from converters import get_quantization
    from mpath_tf.pipeline.workflows import export_model

    scheme = get_quantization(quantization)  # the flags make one scheme object
    for flag, given in (("--int8-io", int8_io), ("--equalize", equalize is not None)):
        if given and scheme.name != "int8":
            raise ConfigError(f"{flag} needs --quantize int8.")
    if qat_epochs and equalize:
        raise ConfigError("--equalize applies to post-training int8; --qat-epochs learns the "
                          "ranges in training. Drop one of the two.")
    if scheme.name == "int8":
        scheme = dataclasses.replace(scheme, int8_io=int8_io or scheme.int8_io,
                                     equalize=scheme.equalize if equalize is None
                                     else float(equalize))
    report = export_model(
        model, scheme, fmt=fmt, dataset=dataset, data_dir=data_dir, output=output,
        lowering=lowering, profile=profile, qat_epochs=qat_epochs, verify=verify,
        profile_cpu=profile_cpu, log=lambda m: click.echo(m, err=True), target=target,
        strip_metadata=strip_metadata, verify_on=verify_on,
    )
    click.echo(json.dumps(report, indent=2))
    # A QAT model is fine-tuned, so it is not expected to match the Keras model
    # within the post-training tolerance; its test accuracy is in the report.
    if verify and not report["verification"]["passed"] and not qat_epochs:
        raise click.ClickException(
            f"the exported file does not match Keras within the bounds of {quantization}: "
            + "; ".join(report["verification"]["failures"])
        )
    for where, check in (report.get("verification_on") or {}).items():
        if not check["passed"] and not qat_epochs:
            raise click.ClickException(
                f"on {where} the exported file does not match Keras within the bounds of "
                f"{quantization}: " + "; ".join(check["failures"]))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@cli.command()
@click.argument("run", type=click.Path())
@click.option("--target", default="local", show_default=True,
              help="local, ssh://[user@]host[:port], adb[:SERIAL], tflm (TFLM on this "
              "machine), tflm:cortex-m4 / m4f / m7 / m55 (TFLM with CMSIS-NN on an emulated "
              "core, counted in instructions; `mpath-tf setup mcu`), arm64:cortex-a53 / a55 / "
              "a72 / a76 (LiteRT on an emulated ARM core, counted; `mpath-tf setup arm64`) or "
              "x86_64[:CPU] (this machine's LiteRT under qemu-x86_64, counted).")
@click.option("--paths", callback=_int_list, default=None,
              help="Path counts to measure, e.g. 1,4,16 (default: the run's samples plus 1).")
@click.option("--quantization", default="float32,dynamic,int8", show_default=True,
              help="Comma-separated quantization modes.")
@click.option("--threads", type=int, default=1, show_default=True, help="Interpreter threads.")
@click.option("--xnnpack/--no-xnnpack", default=True, show_default=True,
              help="Use the XNNPACK delegate.")
@click.option("--cpus", callback=_int_list, default=None,
              help="Pin to these CPU cores (taskset), e.g. 0 or 4,5,6,7.")
@click.option("--runs", type=int, default=50, show_default=True, help="Minimum timed runs.")
@click.option("--min-secs", type=float, default=1.0, show_default=True,
              help="Minimum seconds of timed runs.")
@click.option("--warmup-runs", type=int, default=1, show_default=True)
@click.option("--warmup-min-secs", type=float, default=0.5, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True,
              help="Seconds before one model's measurement is killed.")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="Tries per model, in separate passes; the median try is reported and "
              "tries more than 5% apart are flagged.")
@click.option("--lowering", default="per_path", show_default=True,
              help="How block-diagonal layers are exported: per_path, batch_matmul, conv, "
              "bucketed, grouped or split (path convolutions), or auto.")
@click.option("--profile-cpu", "--calibrate", "profile_cpu", is_flag=True,
              help="Target local, --lowering auto: if this CPU kind has no lowering "
              "profile, measure one first (about a minute per mode) and cache it. "
              "--calibrate is its earlier name.")
@click.option("--fit-paths", callback=_int_list, default=None,
              help="Path counts to fit the latency model on (default: up to 5 spread over --paths).")
@click.option("--python", default=None,
              help="Python on the target (ssh: default python3; local: this one).")
@click.option("--ssh-config", type=click.Path(dir_okay=False), default=None,
              help="ssh config file (default ~/.ssh/config).")
@click.option("--identity", type=click.Path(dir_okay=False), default=None,
              help="ssh private key file.")
@click.option("--benchmark-model", type=click.Path(dir_okay=False), default=None,
              help="adb: the benchmark_model binary for the phone's ABI.")
@_input_errors
def bench(run, target, paths, quantization, threads, xnnpack, cpus, runs, min_secs,
          warmup_runs, warmup_min_secs, timeout_s, repeats, lowering, profile_cpu, fit_paths, python,
          ssh_config, identity, benchmark_model):
    """Measure the latency of RUN's dense MLP and derived models on a target,
    and judge whether parameter count predicts it.

    \b
    Example (this machine, one thread, pinned to core 0):
        mpath-tf bench runs/digits-mpath-4-256-seed0 --cpus 0
    \b
    A Raspberry Pi (key login) and an Android phone:
        mpath-tf bench RUN --target ssh://pi@raspberrypi.local
        mpath-tf bench RUN --target adb --benchmark-model ./benchmark_model
    """
    settings = BenchSettings(
        threads=threads, xnnpack=xnnpack, cpus=tuple(cpus or ()), runs=runs, min_secs=min_secs,
        warmup_runs=warmup_runs, warmup_min_secs=warmup_min_secs, timeout_s=timeout_s,
        max_secs=max(60.0, 2 * min_secs),
    )
    report = bench_run(
        run, target, paths=paths, quantizations=tuple(q for q in quantization.split(",") if q),
        settings=settings, fit_paths=fit_paths, repeats=repeats, lowering=lowering,
        target_options={"python": python, "ssh_config": ssh_config, "identity": identity,
                        "benchmark_model": benchmark_model},
        log=click.echo, profile_cpu=profile_cpu,
    )
    for q, entry in report["proxy"].items():
        model = report["latency_model"].get(q, {})
        counted = entry.get("unit") == "instructions"  # an emulated core: not a time
        cost, word = ("instructions", "instructions (not cycles)") if counted else ("latency", "us")
        click.echo(
            f"{q:>8}: params vs {cost} Pearson {_fmt(entry['pearson'])}, Spearman "
            f"{_fmt(entry['spearman'])}; cheapest at {entry['fastest_paths']} paths "
            f"({entry['fastest_us']:,.1f} {word}"
            + (f", {entry['fastest_speedup_vs_dense']:.2f}x of dense's"
               if entry.get("fastest_speedup_vs_dense") else "")
            + f"); {cost} stops falling after {entry['stops_falling_after_paths']} paths"
            + (f"; params vs TFLM arena Spearman {_fmt(entry['arena_spearman'])}, largest "
               f"{entry['largest_arena_bytes']:,} bytes" if "arena_spearman" in entry else "")
            + (f"; latency model within 10% on {model['hit_rate_10pct']:.0%} of "
               f"{model['held_out']} held-out" if model.get("held_out") else "")
        )
    for failure in report["failed"]:
        click.echo(f"FAILED {failure['model']}: {failure['error']}", err=True)
    click.echo(f"results: {report['output']}")


@cli.command()
@click.option("--target", default="local", show_default=True,
              help="local, ssh://[user@]host[:port], adb[:SERIAL], or an emulated core counted "
              "in instructions: tflm:CORE (cortex-m4 / m4f / m7 / m55) or arm64:CORE "
              "(cortex-a53 / a55 / a72 / a76; bundled tables of these exist).")
@click.option("--width", "widths", callback=_int_list, default="500", show_default=True,
              help="Layer widths to profile, comma-separated.")
@click.option("--quantization", default="float32,dynamic,int8,int16x8", show_default=True)
@click.option("--conv-channels", callback=_int_list, default="64", show_default=True,
              help="Channel counts of the path-convolution stages to profile, comma-separated "
              "(float32, dynamic and int8; 0: none).")
@click.option("--no-xnnpack", is_flag=True,
              help="Profile LiteRT's built-in kernels: for a runtime without the XNNPACK "
              "delegate (its grouped convolutions run on reference kernels).")
@click.option("--cpus", callback=_int_list, default=None, help="Pin to these CPU cores.")
@click.option("--repeats", type=int, default=1, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default="profiles",
              show_default=True, help="Exports and the measurement journal (resumable).")
@click.option("--output", type=click.Path(dir_okay=False), required=True,
              help="Where to write the lowering profile (.json).")
@click.option("--python", default=None, help="Python on the target (ssh).")
@click.option("--ssh-config", type=click.Path(dir_okay=False), default=None)
@click.option("--benchmark-model", type=click.Path(dir_okay=False), default=None,
              help="adb: the benchmark_model binary.")
@_input_errors
def profile(target, widths, quantization, conv_channels, no_xnnpack, cpus, repeats, workdir,
            output, python, ssh_config, benchmark_model):
    """Time stacks of block-diagonal layers and stages of path convolutions in
    every lowering on a target: its lowering profile, for `mpath-tf export
    --lowering auto --profile FILE` (and `search --cost-table FILE`).

    \b
    Example:
        mpath-tf profile --target ssh://pi@raspberrypi.local --output pi.json
    """
    from converters.profiling import profile_conv, profile_lowerings
    from converters.profiles import merge

    bench_target = get_target(target, python=python, ssh_config=ssh_config,
                              benchmark_model=benchmark_model)
    settings = BenchSettings(cpus=tuple(cpus or ()), min_secs=0.5, warmup_min_secs=0.2,
                             xnnpack=not no_xnnpack)
    modes = tuple(quantization.split(","))
    tables = [profile_lowerings(bench_target, w, modes, workdir=os.path.join(workdir, f"w{w}"),
                                settings=settings, repeats=repeats, log=click.echo)
              for w in widths]
    conv_modes = tuple(m for m in modes if m != "int16x8")
    tables[0]["conv_layers"] = [
        row for c in conv_channels or () if c > 0 and conv_modes
        for row in profile_conv(bench_target, c, conv_modes,
                                workdir=os.path.join(workdir, f"conv{c}"), settings=settings,
                                repeats=repeats, log=click.echo)]
    atomic_write_json(output, merge(tables))
    click.echo(f"lowering profile: {output}")


# `mpath-tf calibrate`: the command's name before the tables were called
# profiles (its own list of the same options: --verbose is added to each command).
cli.add_command(click.Command("calibrate", params=list(profile.params), callback=profile.callback,
                              help="The earlier name of `mpath-tf profile`.", hidden=True))


@cli.command()
@click.argument("what", type=click.Choice(["mcu", "arm64"]))
@click.option("--core", "cores", default="cortex-m4", show_default=True,
              help="Cortex-M cores to build for, comma-separated: cortex-m4 (no FPU), "
              "cortex-m4f (hard float), cortex-m7, cortex-m55 (Helium).")
@click.option("--sources", type=click.Path(file_okay=False), default=None,
              help="The folder of source snapshots (tflite-micro.tar.gz, CMSIS-NN.tar.gz, ...; "
              "default: shared/third_party above the current directory, or "
              "$MPATH_TF_THIRD_PARTY).")
@_input_errors
def setup(what, cores, sources):
    """Build what a target needs, once, in the cache (~/.cache/mpath-tf).

    \b
    mcu: TFLM with CMSIS-NN kernels for each Cortex-M core, its benchmark
    program, and the QEMU plugin that counts instructions (about 6 minutes a
    core on 2 cores; needs Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi,
    libstdc++-arm-none-eabi-newlib and qemu-system-arm).
    \b
    arm64: Debian's arm64 Python 3.11 and the aarch64 wheels of LiteRT, for
    the emulated Cortex-A targets arm64:cortex-a53|a55|a72|a76 (downloads
    about 70 MB from Debian's mirror and PyPI, under a minute; needs
    Debian's qemu-user). --core and --sources are for mcu.
    \b
    Example:
        mpath-tf setup mcu --core cortex-m4,cortex-m7
        mpath-tf setup arm64
    """
    if what == "arm64":
        click.echo(f"arm64: {setup_arm64(log=lambda m: click.echo(m, err=True))}")
        return

    built = setup_mcu([c for c in cores.split(",") if c], sources,
                      log=lambda m: click.echo(m, err=True))
    for core, runner in built.items():
        click.echo(f"tflm:{core}: {runner}")


@cli.command()
@click.argument("run", type=click.Path())
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Destination .html (default RUN/report.html).")
@_input_errors
def report(run, output):
    """Write one self-contained HTML page for a finished search RUN.

    \b
    Example:
        mpath-tf report runs/digits-mpath-4-256-seed0
    """
    click.echo(str(write_report(run, output)))


_VERBOSE_HELP = "Show TensorFlow's, the converter's and the interpreter's own log lines too."

# Every command takes --verbose (after its name, where users put it); main()
# acts on it before TensorFlow loads, which no click callback can.
for _command in cli.commands.values():
    _command.params.append(click.Option(["--verbose"], is_flag=True, expose_value=False,
                                        help=_VERBOSE_HELP))


def quiet_native_logs() -> None:
    """Keep TensorFlow's, the converter's and LiteRT's own log lines off stderr.

    TensorFlow and LiteRT write from C++ straight to file descriptor 2
    (CUDA probes, oneDNN notes, ``fully_quantize: ...``, the XNNPACK INFO
    line), which no Python setting reaches. So file descriptor 2 goes to
    ``/dev/null`` and Python's ``sys.stderr`` (mpath-tf's progress, click's
    errors, tracebacks) writes to a copy of the original descriptor. Python
    loggers of TensorFlow and absl (``tf.function retracing`` warnings) are
    raised to ERROR, and warnings raised inside TensorFlow, Keras and
    KerasTuner are ignored. Called by the entry point, never on import.
    """

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        kept = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = open(kept, "w", buffering=1, encoding="utf-8",  # noqa: SIM115
                          errors="backslashreplace")
    except OSError:  # no stderr to begin with (a daemon): nothing to quieten
        pass
    for name in ("tensorflow", "absl", "h5py", "keras_tuner"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("tensorflow", "keras", "keras_tuner", "absl", "ai_edge_litert", "google"):
        warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")


def main():
    """Console entry point."""
    if "--verbose" not in sys.argv[1:]:
        quiet_native_logs()
    cli(prog_name="mpath-tf")
