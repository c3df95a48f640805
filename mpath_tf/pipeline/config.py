"""Settings of a search, as one small serializable object."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from edge_bench.targets import counts_instructions, get_target
from mpath_tf.core import ARCHITECTURES
from mpath_tf.core.costs import COSTS
from mpath_tf.training.distributed import STRATEGIES
from mpath_tf.data import DATASETS
from mpath_tf.errors import ConfigError
from mpath_tf.pipeline.budget import Budget
from mpath_tf.pipeline.objective import check_objective

# Settings that may change between a run and its resumption: where the data
# lives is not part of what the run computes, and the choice of the final model
# is redone on every resumption (it reuses any model already fine-tuned).
NOT_COMPARED_ON_RESUME = ("data_dir", "max_accuracy_drop", "paths", "min_accuracy", "max_params",
                          "max_size_kb", "max_latency_ms", "max_ram_kb", "max_flash_kb", "target",
                          "objective", "final_epochs", "workers",
                          "cluster_timeout_s", "many_classes", "reference", "bench",
                          "bench_seconds")
# The default training budget: at least this many epochs, and on small data
# sets enough epochs for at least this many optimizer steps (a table of 400
# rows has 13 batches an epoch: 60 epochs would be 780 steps, far less than
# the 2,460 of digits or the 25,000 of MNIST at the same settings).
DEFAULT_EPOCHS, MIN_STEPS = 60, 2400
DEFAULT_FINETUNE_EPOCHS, MIN_FINETUNE_STEPS = 10, 400
METHODS = ("rank", "lambda", "hypernet")  # see mpath_tf.tradeoff.train

# lam picks a hypernetwork's trade-off after training, but is what a
# fixed-lambda run trains with; RunDir compares it for that method only.



@dataclass(frozen=True)
class DataSettings:
    """What the search learns from (``SearchConfig``'s Args: dataset, data_dir,
    data, label, normalize, many_classes)."""

    dataset: str = "digits"
    data_dir: str | None = None
    data: str | None = None
    label: str | None = None
    normalize: bool = True
    many_classes: bool = False

    def validate(self) -> "DataSettings":
        """Check these settings; return self.

        Raises:
            ConfigError: Naming the first setting out of range.
        """
        if self.data is None and self.label is not None:
            raise ConfigError("`label` names a column of a CSV file; pass it with `data` "
                              "(a FILE.csv).")
        if self.dataset not in DATASETS:
            raise ConfigError(
                f"Unknown dataset '{self.dataset}'. Choose one of: {', '.join(DATASETS)}."
            )
        return self


@dataclass(frozen=True)
class NetworkSettings:
    """The network searched (``SearchConfig``'s Args: arch, depth, width, model,
    model_sha256)."""

    arch: str = "mlp"
    depth: int = 4
    width: int = 256
    model: str | None = None
    model_sha256: str | None = None

    def validate(self) -> "NetworkSettings":
        """Check these settings; return self.

        Raises:
            ConfigError: Naming the first setting out of range.
        """
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"Unknown architecture '{self.arch}'. Choose one of: "
                              f"{', '.join(ARCHITECTURES)}.")
        if self.arch != "mlp" and self.model is not None:
            raise ConfigError(f"`model` searches your own network; `arch={self.arch!r}` chooses "
                              "a built-in one. Drop one of them.")
        if self.model is not None and not Path(self.model).is_file():
            raise ConfigError(f"`model={str(self.model)!r}`: no such file. Pass a .keras file "
                              "saved with model.save('FILE.keras').")
        if self.depth < 2:
            raise ConfigError(
                f"`depth` must be >= 2 (the first hidden layer is fully connected, "
                f"paths start above it). Received: depth={self.depth}"
            )
        if self.width < 2:
            raise ConfigError(
                f"`width` must be >= 2 (a membrane sits between two neurons). "
                f"Received: width={self.width}"
            )
        return self


@dataclass(frozen=True)
class TrainingSettings:
    """How the networks are trained (``SearchConfig``'s Args: epochs,
    finetune_epochs, final_epochs, batch_size, learning_rate,
    finetune_learning_rate, seed, reference, workers, strategy,
    cluster_timeout_s)."""

    epochs: int | None = None
    finetune_epochs: int | None = None
    final_epochs: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-3
    finetune_learning_rate: float | None = None
    seed: int = 0
    reference: bool = True
    workers: int = 0
    strategy: str | None = None
    cluster_timeout_s: float = 300.0

    def validate(self) -> "TrainingSettings":
        """Check these settings; return self.

        Raises:
            ConfigError: Naming the first setting out of range.
        """
        for name in ("epochs", "finetune_epochs", "final_epochs", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1. Received: {name}={getattr(self, name)}")
        for name in ("learning_rate", "finetune_learning_rate"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"`{name}` must be a finite number > 0 (Adam's step size, "
                                  f"such as 0.001). Received: {name}={value}")
        if self.workers < 0:
            raise ConfigError(f"`workers` must be >= 0. Received: workers={self.workers}")
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ConfigError(f"Unknown strategy '{self.strategy}'. Choose one of: "
                              f"{', '.join(STRATEGIES)}.")
        if not self.cluster_timeout_s > 0:
            raise ConfigError(f"`cluster_timeout_s` must be > 0. "
                              f"Received: cluster_timeout_s={self.cluster_timeout_s}")
        return self


@dataclass(frozen=True)
class SelectionSettings:
    """How the model is chosen among the path counts (``SearchConfig``'s Args:
    samples, sampling, predictor, max_accuracy_drop, paths, and the budget:
    min_accuracy, max_params, max_size_kb, max_latency_ms, max_ram_kb,
    max_flash_kb)."""

    samples: int = 10
    sampling: str = "even"
    predictor: str = "pchip"
    max_accuracy_drop: float = 0.01
    paths: int | None = None
    min_accuracy: float | None = None
    max_params: int | None = None
    max_size_kb: float | None = None
    max_latency_ms: float | None = None
    max_ram_kb: float | None = None
    max_flash_kb: float | None = None

    def validate(self) -> "SelectionSettings":
        """Check these settings (``paths`` against the width and the budget on
        its target: ``SearchConfig``); return self.

        Raises:
            ConfigError: Naming the first setting out of range.
        """
        from mpath_tf.pipeline.predictors import PREDICTORS

        if self.samples < 2:
            raise ConfigError(
                f"`samples` must be >= 2 to fit a predictor. Received: samples={self.samples}"
            )
        if self.sampling not in ("even", "adaptive"):
            raise ConfigError(f"Unknown sampling '{self.sampling}'. Choose one of: even, adaptive.")
        if self.predictor not in PREDICTORS:
            raise ConfigError(
                f"Unknown predictor '{self.predictor}'. Choose one of: {', '.join(PREDICTORS)}."
            )
        if not 0 <= self.max_accuracy_drop <= 1:
            raise ConfigError(
                "`max_accuracy_drop` is an absolute accuracy in [0, 1] (0.01 = 1 point). "
                f"Received: max_accuracy_drop={self.max_accuracy_drop}"
            )
        return self


@dataclass(frozen=True)
class MethodSettings:
    """How the architecture is found (``SearchConfig``'s Args: method, cost,
    cost_table, lam, lam_max, hyper_epochs)."""

    method: str = "rank"
    cost: str = "params"
    cost_table: str | None = None
    lam: float | None = None
    lam_max: float = 3.0
    hyper_epochs: int | None = None

    def validate(self) -> "MethodSettings":
        """Check these settings; return self.

        Raises:
            ConfigError: Naming the first setting out of range.
        """
        if self.method not in METHODS:
            raise ConfigError(f"Unknown method '{self.method}'. Choose one of: {', '.join(METHODS)}.")
        if self.cost not in COSTS:
            raise ConfigError(f"Unknown cost '{self.cost}'. Choose one of: {', '.join(COSTS)}.")
        for name in ("lam", "lam_max"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"`{name}` weighs the cost term and must be a finite number "
                                  f">= 0. Received: {name}={value}")
        if not self.lam_max > 0:
            raise ConfigError(f"`lam_max` must be > 0 (the hypernetwork trains on U[0, lam_max]). "
                              f"Received: lam_max={self.lam_max}")
        if self.hyper_epochs is not None and self.hyper_epochs < 1:
            raise ConfigError(f"`hyper_epochs` must be >= 1. Received: hyper_epochs={self.hyper_epochs}")
        return self


@dataclass(frozen=True)
class TargetSettings:
    """The device the choice is for and what it minimizes there
    (``SearchConfig``'s Args: target, objective, bench, bench_seconds)."""

    target: str = "local"
    objective: str = "params"
    bench: bool = True
    bench_seconds: float = 1.0

    def validate(self) -> "TargetSettings":
        """Check these settings (a target's spelling only: nothing starts); return self.

        Raises:
            ConfigError: Naming the first setting out of range.
        """
        if self.target == "tflm" or counts_instructions(self.target):
            get_target(self.target)
        check_objective(self.objective)
        if not (math.isfinite(self.bench_seconds) and self.bench_seconds > 0):
            raise ConfigError("`bench_seconds` must be a finite number > 0. "
                              f"Received: bench_seconds={self.bench_seconds}")
        return self


# The parts of a search's settings, each checking its own; SearchConfig is all
# of them in one flat record (one JSON object in run.json) and checks how they combine.
PARTS = (DataSettings, NetworkSettings, TrainingSettings, SelectionSettings, MethodSettings,
         TargetSettings)


@dataclass(frozen=True)
class SearchConfig(TargetSettings, MethodSettings, SelectionSettings, TrainingSettings,
                   NetworkSettings, DataSettings):
    """Everything ``search`` needs to know, with the defaults of the CLI: the
    fields of its parts (``PARTS``: data, network, training, selection,
    method, target), each part validated where it is defined.

    ``part(NetworkSettings)`` gives one part on its own; ``to_dict`` is one
    flat record (``run.json``), as it was before the settings had parts, so
    every earlier run resumes.

    The defaults search ``mpath-4-256`` on the embedded ``digits`` dataset
    in under three minutes on two CPU cores: layers that wide are where
    multipath models pay on optimized runtimes (the README's "Which model
    the search chooses, and for which device"). For the paper's
    ``mpath-4-500`` on MNIST use ``dataset="mnist", width=500``.

    Args:
        dataset: Dataset name (see ``mpath_tf.data.DATASETS``).
        data_dir: Directory with the dataset's official files (not for digits).
        data: Your own ``.npz`` or ``.csv`` file instead of a named dataset.
        label: The label column of a ``.csv`` file.
        depth: Hidden layers (>= 2).
        width: Neurons per hidden layer W (>= 2).
        epochs: One-shot training epochs (best validation epoch kept); the
            dense reference trains as long. None: 60, or on small data as
            many as 2,400 optimizer steps take (``for_data``).
        finetune_epochs: Fine-tuning epochs of each sampled path count.
            None: 10, or on small data as many as 400 steps take.
        samples: Number of evenly spaced path counts in [2, W] to fine-tune (>= 2).
        batch_size: Mini-batch size.
        learning_rate: Adam learning rate.
        seed: Seed of weight initialization and training order.
        predictor: Accuracy predictor name (``mpath_tf.pipeline.predictors.PREDICTORS``:
            ``paper``, ``pchip``, ``isotonic``, ``power_law``).
        max_accuracy_drop: The chosen model is the one with the most paths whose
            predicted validation accuracy is at most this far (absolute, 0.01 = 1
            point) below the best sampled one.
        paths: Choose this path count instead (None: choose by accuracy drop).
        min_accuracy: Budget: lowest predicted validation accuracy.
        max_params: Budget: most parameters.
        max_size_kb: Budget: largest int8 ``.tflite`` file (KB).
        max_latency_ms: Budget: slowest median latency of the int8 file on
            ``target``, measured with ``edge_bench``.
        max_ram_kb: Budget: largest TFLM arena (KB) of the int8 file, as
            TFLM's allocator reports it on ``target`` (on the host's TFLM
            interpreter when ``target`` is not a TFLM one).
        max_flash_kb: Budget: largest int8 file for TFLM (KB), without its
            metadata, lowered for ``target``.
        target: Where costs are measured: the ``edge_bench`` target of
            ``max_latency_ms``; with ``tflm`` or ``tflm:CORE`` (a
            microcontroller) also the runtime the int8 files are lowered for
            and on which the chosen model and the dense reference are
            measured at the end (instructions, arena, flash, parity).
            With any budget set, the most accurate path count meeting all of
            them is chosen (``mpath_tf.pipeline.budget``) instead of ``max_accuracy_drop``.
        objective: What the choice minimizes among the models within
            ``max_accuracy_drop`` (``mpath_tf.pipeline.objective``):
            ``params`` (the paper's: the most paths, the fewest parameters),
            ``latency`` on ``target``, ``ram`` (the TFLM arena) or ``flash``
            (the file for TFLM without metadata). For the last three each
            path count's cost is predicted for ``target``, the cheapest few
            and the dense reference are measured there, and the cheapest
            measured one is chosen: the dense reference when nothing beats it.
        final_epochs: Fine-tuning epochs of the chosen model (None: the
            one-shot ``epochs``, the dense reference's budget, so the model
            the user ships is trained as long as the MLP it is compared
            with). Longer than ``finetune_epochs``, the predicted
            accuracies are raised by the gain the samples' learning curves
            extrapolate to that budget (``mpath_tf.pipeline.curves.budget_gain``).
        sampling: ``even`` (evenly spaced path counts, as the paper) or
            ``adaptive`` (each next one where the accuracy curve is least
            certain; ``mpath_tf.pipeline.sampling``).
        workers: Run the sample fine-tunings as KerasTuner trials on this
            many local worker processes (0: in this process).
        method: How the architecture is found (``mpath_tf.tradeoff.train``):
            ``rank`` (the paper: rank membranes, sample path counts, predict),
            ``lambda`` (one-shot training with the cost term at ``lam``; the
            gates are the architecture) or ``hypernet`` (one-shot training,
            then a lam-hypernetwork; the architecture at ``lam``, or the
            cheapest within ``max_params``, or by ``max_accuracy_drop``).
            With ``arch`` cnn or resnet8 or a ``model``, every stack gets
            its own gates, so one lam chooses a path count per stack.
        cost: The cost term of ``lambda``/``hypernet``: ``params`` or
            ``latency`` (per-path latency from a lowering profile; a
            convolution stack needs its path-convolution entries,
            ``mpath-tf profile --conv-channels``).
        cost_table: A ``CostTable`` JSON or a lowering profile
            (``mpath-tf profile``) for ``cost=latency`` (default: the
            bundled profile of target ``local``); with ``objective``
            ``latency``, the lowering profile of ``target`` (``mpath-tf
            profile --target ...``) that predicts each candidate's cost
            (default: the bundled table of ``local`` or of the TFLM target).
        lam: Weight of the relative cost (``lambda``: required; ``hypernet``:
            the trade-off to derive).
        lam_max: Lambda of ``hypernet``: its training range is U[0, lam_max].
        hyper_epochs: Hypernetwork training epochs (None: ``epochs``).
        strategy: Train the supernet with a ``tf.distribute`` strategy
            (``mpath_tf.training.distributed``): ``mirrored`` (all local GPUs) or
            ``multiworker`` (the machines of ``TF_CONFIG``; run the same
            search on each). None: Keras ``fit`` in this process.
        cluster_timeout_s: How long ``multiworker`` waits for the chief.
        normalize: For float feature data (``data``: CSV, non-uint8 NPZ), the
            first layer of every model standardizes the inputs with the
            training split's mean and variance (a Keras ``Normalization``
            layer), so the ``.tflite`` takes raw readings. Images are
            never standardized (they are scaled to [0, 1]).
        many_classes: Accept a label column with more than 1,000 distinct
            values (refused by default: usually not a label).
        finetune_learning_rate: Adam learning rate of every fine-tuning
            (samples and the chosen model); None: ``learning_rate``. A
            derived model keeps the supernet's weights but loses its soft
            permeabilities, so it starts far below the supernet (digits,
            mpath-4-64: 0.48 validation accuracy at 2 paths, 0.10 at 64) and
            needs the full rate to recover: 3e-4 or 1e-4 ended 2-35 points
            lower than 1e-3 there (docs/results.md). Each fine-tuning is
            scored before its first epoch and keeps its best validation
            epoch, so it never ends below the derived model it started from.
        reference: Train the equivalent dense MLP on the same data and
            budget as a reference for the chosen model.
        bench: Time the chosen model and the dense reference on this
            machine (LiteRT, float32 and int8) after export.
        bench_seconds: Measured time per file of that timing (after 0.3 s
            of warm-up); four files, so about 4 x (0.3 + this) seconds.
        model: A ``.keras`` file of your own model (Sequential or Functional,
            one input, softmax output) to search instead of the built-in
            MLP: ``to_supernet`` splits its first run of equal-width Dense
            layers, keeping its weights; ``depth`` and ``width`` are taken
            from that run, and its own preprocessing is kept (``normalize``
            does not apply). Only with ``method`` ``rank``.
        model_sha256: The model file's SHA-256, recorded by ``search`` so a
            run is never resumed with another model.
        arch: The built-in network: ``mlp`` (``build_mlp``) or ``cnn`` (the
            isotropic VGG-style ``build_cnn``: ``depth`` 3x3 convolutions of
            ``width`` channels, the later ones split into channel paths; for
            image-shaped data) or ``resnet8`` (``build_resnet8``: MLPerf
            Tiny's ResNet-8 with stages of ``width``, 2x and 4x channels,
            ``depth`` not used; each stage split into the same path count, at
            most its channels). Only with ``method`` ``rank``, not with ``model``.

    Raises:
        ConfigError: From ``validate`` when a setting is out of range.

    Example:
        >>> SearchConfig(width=16).validate().width
        16
    """

    def network(self) -> str:
        """The searched network as messages name it: ``mpath-<depth>-<width>``
        (``mpath-cnn-<depth>-<width>`` with ``arch="cnn"``,
        ``mpath-resnet8-<width>`` with ``arch="resnet8"``), or the
        ``--model`` file's stem."""
        if self.model:
            return Path(self.model).stem
        if self.arch == "resnet8":
            return f"mpath-resnet8-{self.width}"
        return f"mpath-{'cnn-' if self.arch == 'cnn' else ''}{self.depth}-{self.width}"

    def part(self, cls):
        """One part of these settings (a ``PARTS`` class) on its own.

        Example:
            >>> SearchConfig(width=16).part(NetworkSettings).width
            16
        """
        return cls(**{f.name: getattr(self, f.name) for f in fields(cls)})

    def validate(self) -> "SearchConfig":
        """Check every setting, part by part, then how the parts combine; return self.

        Raises:
            ConfigError: Naming the first setting out of range.
        """
        for part in PARTS:
            part.validate(self)
        if self.paths is not None and not 1 <= self.paths <= self.width:
            raise ConfigError(
                f"`paths` must be in [1, `width={self.width}`]. Received: paths={self.paths}"
            )
        budget = self.budget().validate()
        self._validate_objective(budget)
        if self.paths is not None and budget.active:
            raise ConfigError(
                f"`paths` chooses the model itself, so it cannot be combined with a budget "
                f"({budget.describe()}); drop one of them."
            )
        if self.strategy is not None and self.method != "rank":
            raise ConfigError(f"`strategy` distributes the one-shot training of "
                              f"`method='rank'`; `method={self.method!r}` trains in one process. "
                              "Drop `strategy`.")
        self._validate_method(budget)
        return self

    def _validate_objective(self, budget) -> None:
        if self.objective == "params":
            return
        flag = f"`objective={self.objective!r}`"
        if self.method != "rank":
            raise ConfigError(f"{flag} chooses among the path counts of `method='rank'`; "
                              f"`method={self.method!r}` weighs its own `cost`. Drop one of them.")
        if self.paths is not None:
            raise ConfigError(f"`paths` chooses the model itself, so it cannot be combined with "
                              f"{flag}; drop one of them.")
        if budget.active:
            raise ConfigError(f"{flag} chooses the cheapest model within `max_accuracy_drop`; a "
                              f"budget ({budget.describe()}) chooses the most accurate within "
                              "its limits. Drop one of them.")

    def _validate_method(self, budget) -> None:
        """How the method combines with the objective, the budget and ``paths``."""
        if self.method == "rank":
            table_for_objective = self.objective == "latency" and self.cost_table is not None
            extra = [flag for flag, given in (("`lam`", self.lam is not None),
                                                  ("`cost_table`", self.cost_table is not None
                                                   and not table_for_objective),
                                                  ("`cost='latency'`", self.cost != "params"))
                     if given]
            if extra:
                raise ConfigError(f"{', '.join(extra)} apply to `method='lambda'` or `method='hypernet'` "
                                  "(and `cost_table` to `objective='latency'`); the paper's "
                                  "rank-and-prune ranks by permeability. Add `method`.")
            if table_for_objective:  # a lowering cost table of the target, read now
                from converters.profiles import load_profile

                load_profile(self.cost_table)
            return
        if self.paths is not None:
            raise ConfigError(f"`paths` chooses a path count of `method='rank'`; "
                              f"`method={self.method!r}` chooses by lam. Drop `paths`.")
        if self.method == "lambda":
            if self.lam is None:
                raise ConfigError("`method='lambda'` trains at one trade-off: pass `lam` (for "
                                  "example `lam=0.3`; larger gives a cheaper network).")
            if budget.active:
                raise ConfigError(f"`method='lambda'` takes its network from `lam`, not from a "
                                  f"budget ({budget.describe()}); use `method='hypernet'` to "
                                  "choose by `max_params`, or `method='rank'` for any budget.")
        if self.method == "hypernet":
            others = [n for n in ("min_accuracy", "max_size_kb", "max_latency_ms", "max_ram_kb",
                                  "max_flash_kb")
                      if getattr(self, n) is not None]
            if others:
                raise ConfigError("`method='hypernet'` chooses by `lam` or `max_params`; "
                                  f"{', '.join(f'`{n}`' for n in others)} need `method='rank'`.")
            if self.lam is not None and self.max_params is not None:
                raise ConfigError("`lam` chooses the trade-off itself, so it cannot be combined "
                                  "with `max_params`; drop one of them.")

    def for_data(self, train_examples: int) -> "SearchConfig":
        """These settings with the default epochs sized to the training set.

        An epochs setting left at None becomes the default (60 one-shot, 10
        fine-tuning epochs), raised on small data sets until training takes
        ``MIN_STEPS`` (``MIN_FINETUNE_STEPS``) optimizer steps; a value the
        user set is kept as it is.

        Args:
            train_examples: Size of the training split.

        Returns:
            A copy with ``epochs`` and ``finetune_epochs`` set.

        Example:
            >>> SearchConfig().for_data(1293).epochs  # digits: 41 batches an epoch
            60
            >>> SearchConfig().for_data(409).epochs  # breast cancer: 13 batches
            185
            >>> SearchConfig(epochs=5).for_data(409).epochs
            5
        """
        steps = max(1, math.ceil(train_examples / self.batch_size))  # per epoch
        epochs = self.epochs or max(DEFAULT_EPOCHS, math.ceil(MIN_STEPS / steps))
        finetune = self.finetune_epochs or max(DEFAULT_FINETUNE_EPOCHS,
                                               math.ceil(MIN_FINETUNE_STEPS / steps))
        return replace(self, epochs=epochs, finetune_epochs=finetune)

    @property
    def final_budget(self) -> int:
        """Fine-tuning epochs of the chosen model: ``final_epochs``, by default
        ``epochs`` (never fewer than a sample's ``finetune_epochs``)."""
        return self.final_epochs or max(self.epochs, self.finetune_epochs)

    @property
    def tune_learning_rate(self) -> float:
        """The learning rate of fine-tunings (``finetune_learning_rate`` or ``learning_rate``)."""
        return self.finetune_learning_rate or self.learning_rate

    def budget(self):
        """The budget limits of these settings (``mpath_tf.pipeline.budget.Budget``)."""
        return Budget(self.min_accuracy, self.max_params, self.max_size_kb, self.max_latency_ms,
                      self.target, self.max_ram_kb, self.max_flash_kb)

    def to_dict(self) -> dict:
        """The settings as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SearchConfig":
        """Rebuild a config from ``to_dict`` output.

        Raises:
            ConfigError: If ``values`` holds a key this version does not know.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"Unknown search settings {unknown}; the run was written by another "
                "mpath-tf version."
            )
        return cls(**values)

    def differences(self, other: "SearchConfig") -> list[str]:
        """Names of the settings (compared on resume) that differ from ``other``."""
        return [
            f.name
            for f in fields(self)
            if f.name not in NOT_COMPARED_ON_RESUME
            and not (f.name == "lam" and self.method == "hypernet")
            # rank trains nothing with a cost table: it only predicts an objective's costs
            and not (f.name == "cost_table" and self.method == "rank")
            and getattr(self, f.name) != getattr(other, f.name)
        ]
