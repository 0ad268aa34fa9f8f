"""Images/s of stage 1's input paths, measured back to back in one process (run by pipelines.bench.data_scale).

For one source it times (1) the input pipeline alone, one shuffled epoch of uint8 batches, with tf.data's thread
pool at 1 thread and at its default (all cores), and (2) VAE training steps fed by each path, alternating the paths
(A B A B ...) so that load from other processes on the machine falls on both alike. Prints one JSON line.

  python -m pipelines.bench.data_throughput --source fashion_mnist --folder /tmp/fmnist_png --preset fashion_mnist
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from pipelines.cli import positive_int

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pipeline_rate(data, batch_size: int, threads: int | None, max_batches: int) -> float:
    """Images/s of iterating shuffled uint8 batches (no model), `threads` tf.data threads (None: default)."""
    import tensorflow as tf

    ds = data.batches("train", batch_size, shuffle=True, seed=0, epoch=1, drop_remainder=True).take(max_batches)
    if threads is not None:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        ds = ds.with_options(options)
    start, seen = time.perf_counter(), 0
    for batch in ds:
        seen += int(batch.shape[0])
    return seen / (time.perf_counter() - start)


def training_rates(paths: dict, cfg, steps: int, rounds: int) -> dict[str, list[float]]:
    """Images/s of `steps` compiled VAE steps per path and round, paths alternating within each round."""
    import keras
    import tensorflow as tf

    from vae.distribute import make_train_fn
    from vae.trainer import VAETrainer

    keras.utils.set_random_seed(0)
    trainer = VAETrainer(cfg)
    trainer.compile(optimizer=trainer.make_optimizer())
    step = make_train_fn(trainer, tf.distribute.get_strategy(), cfg.jit_compile)
    iterators = {name: iter(data.batches("train", cfg.batch_size, shuffle=True, seed=0, epoch=0,
                                         drop_remainder=True).repeat()) for name, data in paths.items()}
    for it in iterators.values():  # compile and fill each pipeline's prefetch buffer
        float(step(next(it)))
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, it in iterators.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = step(next(it))
            float(loss)
            rates[name].append(steps * cfg.batch_size / (time.perf_counter() - start))
    return rates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="fashion_mnist or a folder: the in-memory path's data")
    p.add_argument("--folder", required=True, help="the same images as files: the streaming path's data")
    p.add_argument("--preset", required=True, help="VAE preset (image size, channels, batch)")
    p.add_argument("--steps", type=positive_int, default=20, help="training steps per timing")
    p.add_argument("--rounds", type=positive_int, default=3, help="alternating rounds of timings")
    p.add_argument("--pipeline-batches", type=positive_int, default=200, help="batches per pipeline-only timing")
    args = p.parse_args(argv)
    from vae.config import preset
    from vae.data import load_dataset, open_dataset

    cfg = preset(args.preset)
    shape = (cfg.image_size, cfg.channels)
    run = tempfile.mkdtemp(prefix="data_throughput_")
    paths = {
        "in memory": load_dataset(args.source, *shape),
        "streamed": open_dataset(args.folder, *shape, run_dir=run, cache="off"),
        "memory-mapped cache": open_dataset(args.folder, *shape, run_dir=run, cache="on", progress=False),
    }
    pipeline = {name: {f"threads {t or 'default'}": round(pipeline_rate(data, cfg.batch_size, t,
                                                                        args.pipeline_batches), 1)
                       for t in (1, None)} for name, data in paths.items()}
    training = training_rates(paths, cfg, args.steps, args.rounds)
    print(json.dumps({"source": args.source, "preset": args.preset, "batch_size": cfg.batch_size,
                      "images": {name: data.count("train") for name, data in paths.items()},
                      "pipeline_images_per_s": pipeline,
                      "training_images_per_s": {k: [round(v, 1) for v in vs] for k, vs in training.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
