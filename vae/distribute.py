"""Stage 1 on several devices with TensorFlow's own engine: tf.distribute strategies and the step that uses them.

- `none`: the default strategy (one device: the GPU if there is one, else the CPU).
- `mirrored`: tf.distribute.MirroredStrategy over all local GPUs (or the devices named): every step's global batch
  is split across the replicas, each computes its share of the global mean loss, the optimizer sums the gradients.
- `multiworker`: tf.distribute.MultiWorkerMirroredStrategy across machines, configured by the TF_CONFIG
  environment variable of each worker (docs/data.md); the chief writes the run folder.

With the same seed and global batch, R replicas compute what one device computes (VAETrainer.losses_of: each
replica draws its rows of the global batch's posterior noise), up to float summation order.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("none", "mirrored", "multiworker")


def split_cpu(devices: list[str]) -> None:
    """Make the CPU devices named ("/cpu:0", "/cpu:1", ...) exist, as logical devices of the one physical CPU (a
    way to try the multi-device path without GPUs). Must run before TensorFlow first uses a device."""
    wanted = 1 + max(int(d.rsplit(":", 1)[1]) for d in devices)
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * wanted)
    except RuntimeError as e:  # TensorFlow has used a device already: what it has must do
        if len(tf.config.list_logical_devices("CPU")) < wanted:
            raise RuntimeError(f"cannot split the CPU into {wanted} logical devices once TensorFlow has started "
                               f"using it; choose the strategy first thing in the process") from e


def make_strategy(name: str = "none", devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The strategy called `name`; `devices` (e.g. ["/gpu:0", "/gpu:1"]) limits `mirrored` to those. CPU devices
    beyond /cpu:0 are made as logical devices (`split_cpu`), so `mirrored` can be tried on a CPU."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")
    if devices and name != "mirrored":
        raise ValueError("--devices names the devices of --strategy mirrored")
    if name == "mirrored":
        cpus = [d for d in devices or [] if "cpu:" in d.lower()]
        if cpus:
            split_cpu(cpus)
        return tf.distribute.MirroredStrategy(devices or None)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable on every worker "
                             "(its cluster and this worker's task; see docs/data.md)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """Whether this process writes the run folder: always, except on the non-chief workers of TF_CONFIG's cluster
    (the chief is the task of type "chief", or worker 0 when the cluster has none)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task, cluster = config.get("task", {}), config.get("cluster", {})
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def shares(n: int, replicas: int) -> list[tuple[int, int]]:
    """(offset, size) of each replica's rows of a global batch of n: sizes differ by at most one."""
    sizes = [n // replicas + (1 if r < n % replicas else 0) for r in range(replicas)]
    offsets = [sum(sizes[:r]) for r in range(replicas)]
    return list(zip(offsets, sizes, strict=True))


def make_train_fn(trainer, strategy: tf.distribute.Strategy, jit_compile: bool):
    """fn(global batch (N, H, W, C)) -> the batch's mean loss, after one optimizer step under `strategy`."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return tf.function(lambda batch: trainer.distributed_step(batch), jit_compile=jit_compile)
    step = tf.function(lambda images, offset, total: strategy.reduce(
        tf.distribute.ReduceOp.SUM, strategy.run(trainer.distributed_step, args=(images, offset, total)), axis=None))

    def train_fn(batch):
        parts = shares(int(batch.shape[0]), replicas)

        def rows(ctx):
            offset, size = parts[ctx.replica_id_in_sync_group]
            return batch[offset:offset + size]

        images = strategy.experimental_distribute_values_from_function(rows)
        offsets = strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(parts[ctx.replica_id_in_sync_group][0]))
        return step(images, offsets, tf.constant(int(batch.shape[0])))

    return train_fn
