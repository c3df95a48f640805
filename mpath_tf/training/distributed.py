"""One-shot training with a ``tf.distribute`` strategy: several GPUs, several machines.

``mpath-tf search --strategy mirrored`` trains the supernet on every local
GPU (``tf.distribute.MirroredStrategy``); ``--strategy multiworker`` trains it
across machines (``tf.distribute.MultiWorkerMirroredStrategy``), each machine
running the same command with its own ``TF_CONFIG``. Only the one-shot
training is distributed; the chief (worker 0, or the ``chief`` task) then
goes on with the rest of the search alone, and the other workers exit.

Keras 3's ``Model.fit`` does not run under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), so ``train_distributed`` is a plain training loop:
every epoch visits the training set in the order of
``numpy.random.default_rng([seed, epoch])``, each global batch of
``batch_size`` examples is split evenly over the replicas, and the summed
gradients (Keras's optimizer all-reduces them) equal those of the whole
batch. The result therefore matches training the same loop in one process,
up to the order of floating-point sums; ``tests/test_strategy.py`` checks
that with two worker processes on 127.0.0.1. (Over long trainings a
rounding-level difference can flip a ReLU and the runs drift apart, as with
any change of summation order; docs/results.md has the measurements.)

Resume: the chief checkpoints every epoch (``training.EpochCheckpoint``). On
a restart the chief's epoch count, weights and optimizer state are sent to
every worker (an all-reduce in which only the chief contributes), so workers
need no shared file system and a killed cluster continues from the chief's
last finished epoch.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mpath_tf.errors import ClusterError, ConfigError, WorkerError

STRATEGIES = ("mirrored", "multiworker")  # tf.distribute strategies make_strategy builds


@dataclass(frozen=True)
class Cluster:
    """This process's place in the ``TF_CONFIG`` cluster.

    Args:
        task_type: ``worker`` or ``chief``.
        index: Index of this task within its type.
        workers: Number of training tasks (chief plus workers).
        chief_address: ``host:port`` of the chief.
        is_chief: Whether this task writes the run directory and finishes
            the search (the ``chief`` task, else worker 0).
    """

    task_type: str
    index: int
    workers: int
    chief_address: str
    is_chief: bool

    def describe(self) -> str:
        role = "the chief" if self.is_chief else f"{self.task_type} {self.index}"
        return f"{role} of {self.workers} training tasks"


_TF_CONFIG_EXAMPLE = ("""TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, """
                      """"task": {"type": "worker", "index": 0}}'""")


def cluster_from_env() -> Cluster:
    """Read and check ``TF_CONFIG`` (the cluster of ``--strategy multiworker``).

    Returns:
        This process's ``Cluster``.

    Raises:
        ConfigError: ``TF_CONFIG`` is unset, not JSON, or inconsistent.

    Example:
        >>> os.environ["TF_CONFIG"] = ('{"cluster": {"worker": ["127.0.0.1:2222"]}, '
        ...                            '"task": {"type": "worker", "index": 0}}')
        >>> cluster_from_env().is_chief
        True
        >>> del os.environ["TF_CONFIG"]
    """
    text = os.environ.get("TF_CONFIG")
    fix = (f"Set it on every machine, the same cluster with each task's own index, e.g. "
           f"{_TF_CONFIG_EXAMPLE} (worker 0 is the chief).")
    if not text:
        raise ConfigError(f"`strategy='multiworker'` reads its cluster from the TF_CONFIG "
                          f"environment variable, which is not set. {fix}")
    try:
        config = json.loads(text)
        jobs = config["cluster"]
        task_type, index = config["task"]["type"], config["task"]["index"]
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"TF_CONFIG is not a cluster description ({err!r}). {fix}") from None
    training = {name: jobs.get(name) or [] for name in ("chief", "worker")}
    if not all(isinstance(v, list) and all(isinstance(a, str) and ":" in a for a in v)
               for v in training.values()) or not any(training.values()):
        raise ConfigError(f"TF_CONFIG's cluster must list 'worker' (and optionally one 'chief') "
                          f"as host:port strings. Received: {jobs!r}. {fix}")
    if len(training["chief"]) > 1:
        raise ConfigError(f"TF_CONFIG lists {len(training['chief'])} chiefs; at most one.")
    if task_type not in training or not isinstance(index, int) \
            or not 0 <= index < len(training[task_type]):
        raise ConfigError(f"TF_CONFIG's task {config['task']!r} is not in its cluster: the type "
                          f"must be 'worker' or 'chief' with an index within that list. {fix}")
    chief = training["chief"][0] if training["chief"] else training["worker"][0]
    own = training[task_type][index]
    return Cluster(task_type, index, len(training["chief"]) + len(training["worker"]), chief,
                   own == chief)


def make_strategy(name: str, cluster_timeout_s: float = 300.0):
    """The ``tf.distribute`` strategy called ``name``.

    ``multiworker`` must be created before TensorFlow runs its first
    operation in this process (TensorFlow's rule for collective ops); the
    CLI does so.

    Args:
        name: ``mirrored`` (all local GPUs, else the CPU) or ``multiworker``
            (the ``TF_CONFIG`` cluster).
        cluster_timeout_s: How long a worker waits for the chief to come up
            (``multiworker``).

    Returns:
        A ``tf.distribute.Strategy``.

    Raises:
        ConfigError: Unknown name, a bad ``TF_CONFIG``, or TensorFlow already
            started in this process.
        ClusterError: The chief could not be reached in time.

    Example:
        >>> make_strategy("mirrored").num_replicas_in_sync >= 1
        True
    """
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name != "multiworker":
        raise ConfigError(f"Unknown strategy '{name}'. Choose one of: {', '.join(STRATEGIES)}.")
    if not cluster_timeout_s > 0:
        raise ConfigError(f"cluster_timeout_s must be > 0. Received: {cluster_timeout_s}")
    cluster = cluster_from_env()
    _configure_coordination(cluster_timeout_s)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        if "program startup" in str(err):
            raise ConfigError("`strategy='multiworker'` must be set up before TensorFlow runs "
                              "anything in this process: call make_strategy first, or use "
                              "`mpath-tf search --strategy multiworker`.") from None
        raise
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as err:
        raise ClusterError(
            f"{cluster.describe()} could not reach the chief at {cluster.chief_address} within "
            f"{cluster_timeout_s:g} s ({type(err).__name__}). Start the chief with the same "
            "command, check the address and port in TF_CONFIG, or raise --cluster-timeout."
        ) from None


def local_tf_configs(workers: int) -> list[str]:
    """``TF_CONFIG`` values for a cluster of ``workers`` processes on this
    machine (127.0.0.1, free ports), one per worker index: a way to try
    ``--strategy multiworker`` without machines.

    Args:
        workers: Number of worker processes (>= 1).

    Returns:
        One JSON string per worker; index 0 is the chief.

    Raises:
        ConfigError: If ``workers`` < 1.

    Example:
        >>> json.loads(local_tf_configs(2)[1])["task"]
        {'type': 'worker', 'index': 1}
    """
    if workers < 1:
        raise ConfigError(f"A cluster needs workers >= 1. Received: workers={workers}")
    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:  # hold every port until all are chosen, so they differ
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": k}})
            for k in range(workers)]


def _configure_coordination(timeout_s: float) -> None:
    """Set TensorFlow's coordination service like MultiWorkerMirroredStrategy
    would, but with a registration deadline and a heartbeat, so a missing
    chief or a dead worker ends in an error instead of a wait without end."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    jobs = json.loads(os.environ["TF_CONFIG"])["cluster"]
    coordinated = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(jobs[job]))
                   for job in ("chief", "worker") if jobs.get(job)]
    leader = "/job:chief/replica:0/task:0" if jobs.get("chief") else "/job:worker/replica:0/task:0"
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=leader, coordinated_jobs=coordinated,
        cluster_register_timeout_in_ms=int(timeout_s * 1000), heartbeat_timeout_in_ms=30_000)


def is_chief(strategy) -> bool:
    """Whether this process is the one that writes results (always, but for
    the non-chief tasks of a multi-worker cluster)."""
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def train_distributed(
    build: Callable[[], "object"],
    data,
    epochs: int,
    strategy=None,
    *,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    keep_best: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    history: list | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    finished: bool = False,
):
    """Train the model ``build()`` makes on ``data`` with ``strategy``.

    Adam and sparse categorical cross-entropy on softmax outputs, as
    ``training.train``; one global batch of ``batch_size`` is split over the
    replicas. The validation accuracy is measured after every epoch and, with
    ``keep_best``, the best epoch's weights are kept (the paper's selection).

    Args:
        build: Makes the model, called inside ``strategy.scope()`` (and once
            more outside it for the returned copy); it must build the same
            initial network on every worker (for example a fixed seed).
        data: A ``mpath_tf.data.Dataset``.
        epochs: Number of epochs (>= 1).
        strategy: A ``tf.distribute.Strategy``; None trains in this process
            (the default strategy), the reference the others match.
        batch_size: Global mini-batch size (>= number of replicas).
        learning_rate: Adam learning rate.
        seed: Seeds the order of the training examples.
        keep_best: Return the weights of the best validation epoch.
        checkpoint_dir: The chief checkpoints there after every epoch and a
            restarted training resumes from its last finished epoch.
        history: If given, the validation accuracy of every epoch is appended.
        on_epoch: Called with (epoch, validation accuracy) after every epoch.
        finished: The chief holds the trained model already (a finished run
            resumed): every worker learns that there is nothing to train and
            ``(None, nan)`` is returned. All workers must take part, as in a
            training.

    Returns:
        ``(model, val_accuracy)``: a copy of the trained model outside the
        strategy (so it can be used, fine-tuned and saved as usual) and its
        validation accuracy; ``(None, nan)`` where there was nothing to
        train and this process is not the chief.

    Raises:
        ValueError: If ``epochs`` < 1 or ``batch_size`` is smaller than the
            number of replicas.
        WorkerError: A worker was lost during training; restart every worker
            with the same command to resume.

    Example:
        >>> from mpath_tf import build_supernet, load_dataset
        >>> data = load_dataset("digits")
        >>> model, val = train_distributed(
        ...     lambda: build_supernet(data.input_shape, 10, 2, 4, seed=0), data, 1)
        >>> 0 <= val <= 1
        True
    """
    import tensorflow as tf

    from mpath_tf.training.loop import EpochCheckpoint, compile_model

    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1. Received: epochs={epochs}")
    if batch_size < replicas:
        raise ValueError(f"batch_size ({batch_size}) must be at least the number of replicas "
                         f"({replicas}): each replica takes a share of every batch.")
    with strategy.scope():
        model = build()
        compile_model(model, learning_rate)
        model.optimizer.build(model.trainable_variables)
    chief = is_chief(strategy)
    checkpoint = EpochCheckpoint(checkpoint_dir if chief and not finished else None)
    checkpoint.set_model(model)
    try:
        # Every worker runs the same collective operations in the same order:
        # the chief's epoch count, then (if there is training left) its
        # weights and optimizer state, the training, and its chosen weights.
        start = epochs if finished else checkpoint.restore(model)
        start = int(_from_chief(strategy, [np.array(start)])[0])
        if start >= epochs and (finished or not chief):
            return None, float("nan")
        if start < epochs:
            variables = [*model.weights, *model.optimizer.variables]
            for variable, value in zip(variables, _from_chief(
                    strategy, [v.numpy() for v in variables])):
                variable.assign(value)
        step = _train_step(model, strategy)
        for epoch in range(int(start), epochs):
            order = np.random.default_rng([seed, epoch]).permutation(len(data.x_train))
            for first in range(0, len(order), batch_size):
                rows = order[first:first + batch_size]
                step(*_split(strategy, data.x_train[rows], data.y_train[rows]),
                     tf.constant(len(rows), tf.float32))
            val = _accuracy(model, data.x_val, data.y_val)
            checkpoint.on_epoch_end(epoch, {"val_accuracy": val})
            if on_epoch is not None:
                on_epoch(epoch + 1, val)
        weights = checkpoint.best_weights if keep_best and checkpoint.best_weights is not None \
            else model.get_weights()
        if start < epochs:  # the chief alone knows every epoch's accuracy
            weights = _from_chief(strategy, weights)
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.AbortedError, tf.errors.CancelledError) as err:
        raise WorkerError(
            f"Distributed training lost a worker ({type(err).__name__}; TensorFlow's log above "
            "names it). Restart every worker with the same command: the chief resumes from "
            "its last finished epoch.") from None
    if history is not None:
        history.extend(checkpoint.curve)
    plain = build()
    plain.set_weights(weights)
    return plain, _accuracy(plain, data.x_val, data.y_val)


def _train_step(model, strategy):
    import keras
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(x, y, global_batch):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, probs))
                loss = loss / global_batch  # the optimizer sums the replicas' gradients
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables))

        strategy.run(replica_step, args=(x, y))

    return step


def _split(strategy, x: np.ndarray, y: np.ndarray):
    """One global batch as per-replica slices (replica k takes the k-th share)."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return tf.constant(x), tf.constant(y)
    shares = np.array_split(np.arange(len(x)), strategy.num_replicas_in_sync)

    def value(context):
        rows = shares[context.replica_id_in_sync_group]
        return tf.constant(x[rows]), tf.constant(y[rows])

    return strategy.experimental_distribute_values_from_function(value)


def _from_chief(strategy, values: list[np.ndarray]) -> list[np.ndarray]:
    """``values`` as the chief holds them, on every worker (an all-reduce in
    which every other replica contributes zeros)."""
    import tensorflow as tf

    if getattr(strategy.extended, "_num_workers", 1) <= 1:
        return values  # one process: every replica already holds the chief's values

    @tf.function
    def reduce(per_replica):
        def replica_fn(tensors):
            tensors = [tf.identity(t) for t in tensors]  # placed on the replica's device
            return tf.distribute.get_replica_context().all_reduce("sum", tensors)

        return strategy.run(replica_fn, args=(per_replica,))

    def value(context):  # as float64 (exact for the int64 step counter too)
        keep = context.replica_id_in_sync_group == 0
        return [tf.constant(np.asarray(v, np.float64) * keep) for v in values]

    reduced = reduce(strategy.experimental_distribute_values_from_function(value))
    return [np.asarray(strategy.experimental_local_results(r)[0]).astype(np.asarray(v).dtype)
            for r, v in zip(reduced, values)]


def _accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> float:
    """Top-1 accuracy from a local forward pass (no collective operations,
    so any one worker may call it)."""
    from mpath_tf.training.loop import top1

    probs = [np.asarray(model(x[first:first + batch_size], training=False))
             for first in range(0, len(x), batch_size)]
    return top1(np.concatenate(probs), y)

