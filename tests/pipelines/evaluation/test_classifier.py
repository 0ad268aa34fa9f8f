"""The evaluation classifier: it learns an easy dataset, is cached once, and reloads without retraining."""

import json

import numpy as np
import pytest
import torch

from pipelines.evaluation import classifier as clf
from pipelines.evaluation.classifier import EvalClassifierConfig, cache_folder, load_or_train
from vae.data import Dataset

FAST = EvalClassifierConfig(width=8, embed_dim=16, batch_size=32, epochs=20, max_steps=40, lr=5e-3)


def test_trains_to_high_accuracy_on_separable_classes(banded_dataset, tmp_path):
    trained = load_or_train(banded_dataset, tmp_path, FAST, progress=False)
    assert trained.retrained and trained.meta["steps"] == 40
    assert trained.meta["test_accuracy"] >= 0.9
    acc = (trained.predict(banded_dataset.val_images) == banded_dataset.val_labels).mean()
    assert acc == pytest.approx(trained.meta["test_accuracy"])
    assert trained.features(banded_dataset.val_images).shape == (30, 16)


def test_cached_once_then_reloaded_without_retraining(banded_dataset, tmp_path, monkeypatch):
    config = FAST.replace(max_steps=3)
    first = load_or_train(banded_dataset, tmp_path, config, progress=False)
    folder = cache_folder(tmp_path, banded_dataset)
    assert first.folder == folder and folder.name == "eval_classifier_banded_16x16x1"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "meta.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text()) == config.to_dict()

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the cache matches")

    monkeypatch.setattr(clf, "train_classifier", no_training)
    again = load_or_train(banded_dataset, tmp_path, config, progress=False)
    assert not again.retrained and again.meta == first.meta
    np.testing.assert_array_equal(again.features(banded_dataset.val_images), first.features(banded_dataset.val_images))
    monkeypatch.undo()
    (folder / "model.safetensors").write_bytes(b"truncated")  # a damaged cache is retrained, not trusted
    assert load_or_train(banded_dataset, tmp_path, config, progress=False).retrained
    # Another config or other training images: the cache no longer describes this classifier.
    assert load_or_train(banded_dataset, tmp_path, config.replace(seed=1), progress=False).retrained
    fewer = Dataset("banded", banded_dataset.train_images[:60], banded_dataset.val_images,
                    banded_dataset.train_labels[:60], banded_dataset.val_labels, ["a", "b", "c"])
    assert load_or_train(fewer, tmp_path, config.replace(seed=1), progress=False).retrained


def test_unlabelled_data_and_unknown_config_keys_are_explained(banded_dataset, tmp_path):
    unlabelled = Dataset("x", banded_dataset.train_images, banded_dataset.val_images)
    with pytest.raises(ValueError, match="has no class labels"):
        load_or_train(unlabelled, tmp_path, FAST, progress=False)
    with pytest.raises(ValueError, match="unknown key"):
        EvalClassifierConfig.from_dict({"widht": 8})


def test_folder_sources_get_a_safe_distinct_cache_name(banded_dataset, tmp_path):
    a = Dataset("/data/my pics", banded_dataset.train_images, banded_dataset.val_images)
    b = Dataset("/other/my pics", banded_dataset.train_images, banded_dataset.val_images)
    name_a, name_b = cache_folder(tmp_path, a).name, cache_folder(tmp_path, b).name
    assert name_a.startswith("eval_classifier_my_pics_") and name_a.endswith("_16x16x1") and name_a != name_b


def test_embed_is_the_input_of_the_last_layer():
    torch.manual_seed(0)
    model = clf.EvalCNN(1, 3, width=8, embed_dim=16).eval()
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(model.head(model.embed(x)), model(x))
