"""The InceptionV3 path with a weights file on disk (random weights saved here: nothing is downloaded)."""

import numpy as np
import pytest

from pipelines.evaluation.features import INCEPTION_FILE, find_inception_weights, select_feature_net


def test_weights_are_looked_up_in_keras_home_only(tmp_path, monkeypatch, banded_dataset):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert find_inception_weights() is None
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "models" / INCEPTION_FILE)):
        select_feature_net("inception", banded_dataset, tmp_path / "cache")
    with pytest.raises(ValueError, match="--feature must be one of"):
        select_feature_net("clip", banded_dataset, tmp_path / "cache")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / INCEPTION_FILE).write_bytes(b"")
    assert find_inception_weights() == tmp_path / "models" / INCEPTION_FILE
    assert find_inception_weights(tmp_path / "elsewhere.h5") is None


def test_inception_features_from_a_local_weights_file(tmp_path, banded_dataset):
    import keras

    reference = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                               input_shape=(299, 299, 3))
    path = tmp_path / "inception.weights.h5"
    reference.save_weights(path)
    net = select_feature_net("auto", banded_dataset, tmp_path / "cache", inception_weights=path)
    images = banded_dataset.val_images[:2]
    features = net.features(images)
    assert features.shape == (2, 2048) and net.dim == 2048 and "InceptionV3" in net.name
    # Gray -> RGB, upscaled to 299, [0, 255] -> [-1, 1]: the preprocessing of the reference model.
    x = keras.ops.image.resize(np.repeat(images.astype(np.float32), 3, axis=-1), (299, 299))
    expected = reference.predict_on_batch(keras.ops.convert_to_numpy(x) / 127.5 - 1.0)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    assert not (tmp_path / "cache").exists()  # no classifier was trained
