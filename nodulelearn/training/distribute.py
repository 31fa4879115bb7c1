"""tf.distribute strategies for ``--strategy`` and the helpers a run needs around them."""

from __future__ import annotations

import json
import os

import tensorflow as tf


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy for ``name``.

    Args:
        name: ``"default"`` (one device), ``"mirrored"`` (all local GPUs, or the CPU) or
            ``"multi_worker"`` (``MultiWorkerMirroredStrategy``, cluster read from ``TF_CONFIG``;
            create it before any other TensorFlow op of the process).

    Raises:
        ValueError: unknown name, or ``multi_worker`` without a ``TF_CONFIG``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable describing the "
                'cluster, e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                '"task": {"type": "worker", "index": 0}}. Received: TF_CONFIG unset.')
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}. Valid names: default, mirrored, multi_worker.")


def worker_info(strategy: tf.distribute.Strategy) -> tuple[int, int, bool]:
    """``(worker index, worker count, is_chief)`` of this process (``(0, 1, True)`` when alone).

    The chief writes the run directory; the other workers write to a scratch folder.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0, 1, True
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    workers = len(tf_config.get("cluster", {}).get("worker", [])) + len(
        tf_config.get("cluster", {}).get("chief", []))
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                        and "chief" not in tf_config.get("cluster", {}))
    index = task_id + (1 if task_type == "worker" and "chief" in tf_config.get("cluster", {}) else 0)
    return index, max(workers, 1), is_chief


def distribute_stream(strategy: tf.distribute.Strategy, make_stream, global_batch: int):
    """Feeds ``make_stream(shard=(pipeline, pipelines), replicas=k)`` to ``strategy``.

    Without distribution (one replica) the plain dataset is returned; otherwise a distributed
    dataset built from the input function, so that each pipeline generates only its own slice
    of every global batch (no auto-sharding rewrite of the graph).
    """
    if strategy.num_replicas_in_sync == 1:
        return make_stream(shard=(0, 1), replicas=1)

    def input_fn(context: tf.distribute.InputContext):
        replicas = context.num_replicas_in_sync // context.num_input_pipelines
        return make_stream(shard=(context.input_pipeline_id, context.num_input_pipelines),
                           replicas=replicas)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(input_fn, options)
