"""One evaluation: samples (or real train images, for the floor) vs real images -> FID, KID, class accuracy, VAE
reconstruction. torch + onnxruntime + numpy/scipy; TensorFlow only when InceptionV3 features are used."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.evaluation.classifier import TrainedClassifier, load_or_train
from pipelines.evaluation.features import select_feature_net
from pipelines.evaluation.metrics import fid, kid
from runfs import ConfigMixin, RunPaths, read_json
from vae.data import Dataset, load_dataset

SAMPLE_HINT = "make some with `python pipelines/sample.py --run DIR --num-samples 5000`, or pass --samples PATH"


@dataclass
class EvalConfig(ConfigMixin):
    """What to compare and how (see pipelines/evaluate.py --help for each field)."""

    run: str | None = None
    samples: str | None = None
    data: str | None = None  # None: the run's own images (RunPaths.data_source), else fashion_mnist
    num_real: int = 10000
    reference: str = "test"
    feature: str = "auto"
    inception_weights: str | None = None
    floor: bool = False
    vae_floor: bool = False
    num_recon: int | None = None
    kid_block: int = 1000
    image_size: int | None = None
    channels: int | None = None
    cache_dir: str = "runs/.cache"
    device: str = "auto"
    seed: int = 0
    progress: bool = True


def find_samples(run: str | Path) -> Path:
    """The newest DIR/samples/samples_NxHxWxC.npz."""
    folder = RunPaths(run).samples
    found = sorted(folder.glob("samples_*.npz"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no samples_NxHxWxC.npz in {folder}: {SAMPLE_HINT}")
    return found[-1]


def load_samples(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A sample.py npz -> uint8 (N, H, W, C) images and int64 (N,) labels (None when unconditional)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"samples file {path} does not exist: {SAMPLE_HINT}")
    with np.load(path) as npz:
        if "arr_0" not in npz:
            raise ValueError(f"{path} has no arr_0 (uint8 NHWC images); it was not written by pipelines/sample.py")
        images, labels = npz["arr_0"], npz["arr_1"] if "arr_1" in npz else None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) < 2:
        raise ValueError(f"{path}: arr_0 must be uint8 (N >= 2, H, W, C in 1 or 3), got {images.dtype} "
                         f"{images.shape}")
    if labels is not None and labels.shape != (len(images),):
        raise ValueError(f"{path}: arr_1 must hold one label per image, got shape {labels.shape} for {len(images)}")
    return images, None if labels is None else labels.astype(np.int64)


def real_shape(config: EvalConfig, samples: np.ndarray | None) -> tuple[int, int]:
    """(image_size, channels) of the real images: the flags, else the run's bridge.json, else the samples'."""
    size, channels = config.image_size, config.channels
    bridge_json = RunPaths(config.run).bridge / "bridge.json" if config.run else None
    if (size is None or channels is None) and bridge_json is not None and bridge_json.is_file():
        spec = read_json(bridge_json)
        size, channels = size or spec["image_size"], channels or spec["channels"]
    if (size is None or channels is None) and samples is not None:
        size, channels = size or samples.shape[1], channels or samples.shape[3]
    return int(size or 32), int(channels or 1)


def subset_indices(total: int, n: int, seed: int) -> np.ndarray:
    """n of range(total) drawn without replacement (seeded), in increasing order; all when n >= total."""
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


def subset(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n images drawn without replacement (seeded), kept in their original order; all when n >= len."""
    return images[subset_indices(len(images), n, seed)]


def mode_of(config: EvalConfig) -> str:
    """samples | floor (real train vs real test) | vae_floor (real train through the run's VAE vs real test)."""
    if config.floor and config.vae_floor:
        raise ValueError("--floor and --vae-floor are two separate measurements: give one of them")
    if config.vae_floor and not (config.run and (RunPaths(config.run).bridge / "bridge.json").is_file()):
        raise ValueError("--vae-floor passes real images through a run's exported VAE: give --run DIR with "
                         "DIR/bridge/bridge.json (python pipelines/export.py --run DIR)")
    return "floor" if config.floor else "vae_floor" if config.vae_floor else "samples"


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run the evaluation `config` describes; returns the results as a JSON-ready dict."""
    from diffusion.device import pick_device

    if config.reference not in ("test", "train"):
        raise ValueError(f"--reference must be test or train, got {config.reference!r}")
    if config.num_real < 2:
        raise ValueError(f"--num-real must be at least 2, got {config.num_real}")
    mode = mode_of(config)
    times: dict[str, float] = {}
    tick = time.perf_counter()
    samples_path, labels = None, None
    if mode != "samples":
        generated = None
    else:
        samples_path = Path(config.samples) if config.samples else find_samples(config.run) if config.run else None
        if samples_path is None:
            raise ValueError("give --run DIR (its samples/ npz is used) or --samples PATH, or --floor")
        generated, labels = load_samples(samples_path)
    size, channels = real_shape(config, generated)
    if generated is not None and tuple(generated.shape[1:]) != (size, size, channels):
        raise ValueError(f"the samples in {samples_path} are {generated.shape[1]}x{generated.shape[2]}x"
                         f"{generated.shape[3]} but the real images are {size}x{size}x{channels}: they cannot be "
                         "compared; pass the run the samples came from, or --image-size/--channels")
    config.data = RunPaths(config.run).data_source(config.data) if config.run else config.data or "fashion_mnist"
    dataset = load_dataset(config.data, image_size=size, channels=channels, run_dir=config.run)
    device = pick_device(config.device)
    reference = subset(dataset.images("val" if config.reference == "test" else "train"), config.num_real,
                       config.seed)
    if mode != "samples":
        # Disjoint from the reference even with --reference train: another seed picks other training images.
        picked = subset_indices(len(dataset.train_images), config.num_real, config.seed + 1)
        generated = dataset.train_images[picked]
        if mode == "vae_floor":
            from pipelines.evaluation.recon import reconstruct

            generated = reconstruct(config.run, generated, config.device, progress=config.progress)
            labels = None if dataset.train_labels is None else dataset.train_labels[picked]
    times["load"] = time.perf_counter() - tick
    tick = time.perf_counter()
    scorer = Scorer(dataset, reference, config.feature, config.cache_dir, device, config.inception_weights,
                    config.kid_block, config.progress)
    times["feature_net"] = time.perf_counter() - tick
    tick = time.perf_counter()
    scores = scorer.score(generated, None)
    results: dict[str, Any] = {
        "mode": mode,
        "samples": str(samples_path) if samples_path else f"{len(generated)} real {config.data} training images"
        + (" through the VAE of " + str(config.run) if mode == "vae_floor" else ""),
        "num_generated": len(generated), "data": config.data, "reference": config.reference,
        "num_real": len(reference), "image_shape": [size, size, channels],
        "feature_net": scorer.describe(), "fid": scores["fid"], "kid": scores["kid"],
    }
    times["fid_kid"] = time.perf_counter() - tick
    tick = time.perf_counter()
    results["class_accuracy"] = None if labels is None else scorer.class_accuracy(generated, labels)
    times["class_accuracy"] = time.perf_counter() - tick
    tick = time.perf_counter()
    results["reconstruction"] = _reconstruction(config, dataset)
    times["reconstruction"] = time.perf_counter() - tick
    results["seconds"] = {k: round(v, 3) for k, v in times.items()}
    results["config"] = config.to_dict()
    return results


def class_accuracy(classifier: TrainedClassifier, images: np.ndarray, labels: np.ndarray,
                   dataset: Dataset) -> dict[str, Any]:
    """Share of images the classifier assigns to their requested label, overall and per class."""
    num_classes = dataset.num_classes or 0
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"sample labels span {labels.min()}..{labels.max()} but {dataset.source} has "
                         f"{num_classes} classes: the samples come from a model of another dataset")
    hits = classifier.predict(images) == labels
    per_class = {dataset.class_names[c]: float(hits[labels == c].mean()) for c in np.unique(labels)}
    return {"samples": float(hits.mean()), "real_test": classifier.meta["test_accuracy"], "per_class": per_class}


class Scorer:
    """Scores any number of sample sets against one set of real images: the feature network is chosen (and the
    classifier trained and cached, if need be) and the real images' features computed once, in the constructor."""

    def __init__(self, dataset: Dataset, reference: np.ndarray, feature: str = "auto", cache_dir: str = "runs/.cache",
                 device="cpu", inception_weights: str | None = None, kid_block: int = 1000,
                 progress: bool = True) -> None:
        self.dataset, self.cache_dir, self.device, self.kid_block = dataset, cache_dir, device, kid_block
        self.desc = "features" if progress else None
        self.progress = progress
        self.net = select_feature_net(feature, dataset, cache_dir, device, inception_weights, progress)
        self.real_features = self.net.features(reference, desc=self.desc)
        self._classifier: TrainedClassifier | None = self.net if isinstance(self.net, TrainedClassifier) else None

    def score(self, images: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
        """uint8 (N, H, W, C) images (and their requested labels) -> fid, kid and class_accuracy (None unlabelled)."""
        fake_features = self.net.features(images, desc=self.desc)
        k = kid(self.real_features, fake_features, self.kid_block)
        return {"fid": fid(self.real_features, fake_features),
                "kid": {"mean": k.mean, "std": k.std, "block_size": k.block_size, "num_blocks": k.num_blocks},
                "class_accuracy": None if labels is None else self.class_accuracy(images, labels)}

    def classifier(self) -> TrainedClassifier:
        """The dataset classifier for class accuracy (the feature network itself when that is the classifier)."""
        if self._classifier is None:
            self._classifier = load_or_train(self.dataset, self.cache_dir, None, self.device, self.progress)
        return self._classifier

    def class_accuracy(self, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        return class_accuracy(self.classifier(), images, labels, self.dataset)

    def describe(self) -> dict[str, Any]:
        net = self.net
        if isinstance(net, TrainedClassifier):
            return {"kind": "classifier", "name": net.name, "dim": net.dim, "folder": str(net.folder),
                    "test_accuracy": net.meta["test_accuracy"], "trained_now": net.retrained}
        return {"kind": "inception", "name": net.name, "dim": net.dim}


def _reconstruction(config: EvalConfig, dataset: Dataset) -> dict[str, Any]:
    if config.num_recon == 0:
        return {"skipped": "--num-recon 0"}
    if not config.run or not (RunPaths(config.run).bridge / "bridge.json").is_file():
        return {"skipped": "no run folder with an exported bridge (DIR/bridge/bridge.json)"}
    from pipelines.evaluation.recon import reconstruct, reconstruction_metrics

    originals = dataset.val_images[:config.num_recon]
    recon = reconstruct(config.run, originals, config.device, progress=config.progress)
    return {"split": "val", **reconstruction_metrics(originals, recon).to_dict()}
