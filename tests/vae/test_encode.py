import shutil

import keras
import numpy as np
import pytest
from PIL import Image

import vae.encode as encode_module
from runfs import RunPaths, file_digest, read_json
from runfs.latent_norm import LatentNorm
from vae.checkpoint import save_final
from vae.data import Dataset, open_dataset
from vae.encode import encode_dataset
from vae.trainer import VAETrainer


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, tiny_cfg, blob_images):
    """An (untrained, seeded) tiny VAE saved as a run's final model, then its blob dataset encoded."""
    run = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(0)
    trainer = VAETrainer(tiny_cfg)
    save_final(RunPaths(run).vae, trainer, {"step": 0, "epoch": 0})
    labels = np.arange(len(blob_images)) % 3
    data = Dataset("blobs", blob_images[:40], blob_images[40:], labels[:40], labels[40:], ["a", "b", "c"])
    meta = encode_dataset(run, data, batch_size=16)
    return run, meta, trainer, data


def test_meta_describes_the_latents(encoded):
    run, meta, _, data = encoded
    latents = RunPaths(run).latents
    assert read_json(latents / "meta.json") == meta
    assert meta["layout"] == "NCHW" and meta["latent_shape"] == [4, 4, 4]
    assert meta["counts"] == {"train": 40, "val": 8}
    assert meta["num_classes"] == 3 and meta["class_names"] == ["a", "b", "c"]
    assert meta["image_size"] == 16 and meta["channels"] == 1 and meta["data"] == "blobs"
    assert meta["vae_checkpoint"] == file_digest(RunPaths(run).vae / "model")
    for split, n in (("train", 40), ("val", 8)):
        mean = np.load(latents / f"{split}_mean.npy")
        assert mean.dtype == np.float32 and mean.shape == (n, 4, 4, 4)
        assert np.load(latents / f"{split}_logvar.npy").shape == (n, 4, 4, 4)
        np.testing.assert_array_equal(np.load(latents / f"{split}_labels.npy"), data.labels(split))


def test_latents_are_the_encoder_outputs_transposed_to_nchw(encoded):
    run, _, trainer, data = encoded
    mean, logvar = trainer.encoder(data.val_images.astype(np.float32) / 127.5 - 1.0)
    latents = RunPaths(run).latents
    np.testing.assert_allclose(np.load(latents / "val_mean.npy"), np.transpose(mean, (0, 3, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(np.load(latents / "val_logvar.npy"), np.transpose(logvar, (0, 3, 1, 2)), atol=1e-5)


def test_scale_factor_makes_posterior_samples_unit_std(encoded):
    run, meta, _, _ = encoded
    latents = RunPaths(run).latents
    mean, logvar = np.load(latents / "train_mean.npy"), np.load(latents / "train_logvar.npy")
    rng = np.random.default_rng(123)  # fresh noise: not the samples the factor was computed from
    samples = mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape)
    assert 0.9 <= float(np.std(samples * meta["scale_factor"])) <= 1.1
    assert meta["scale_factor"] == pytest.approx(1 / meta["posterior_sample_std"])


def test_channel_norm_standardises_each_channel_of_posterior_samples(encoded, tmp_path):
    run, _, _, data = encoded
    other = tmp_path / "channel"
    shutil.copytree(RunPaths(run).vae, RunPaths(other).vae)
    meta = encode_dataset(other, data, batch_size=16, latent_norm="channel")
    assert meta["latent_norm"] == "channel" and len(meta["scale_factor"]) == len(meta["shift_factor"]) == 4
    norm = LatentNorm.from_meta(meta, 4)
    latents = RunPaths(other).latents
    mean, logvar = np.load(latents / "train_mean.npy"), np.load(latents / "train_logvar.npy")
    samples = mean + np.exp(0.5 * logvar) * np.random.default_rng(123).standard_normal(mean.shape)
    scaled = norm.apply(samples)
    np.testing.assert_allclose(scaled.mean(axis=(0, 2, 3)), 0.0, atol=0.1)
    np.testing.assert_allclose(scaled.std(axis=(0, 2, 3)), 1.0, atol=0.1)
    with pytest.raises(ValueError, match="latent_norm must be one of"):
        encode_dataset(other, data, latent_norm="pixel")


def test_wrong_image_shape_is_refused(encoded, blob_images):
    run = encoded[0]
    rgb = np.repeat(blob_images, 3, axis=-1)
    with pytest.raises(ValueError, match="trained on"):
        encode_dataset(run, Dataset("rgb", rgb[:4], rgb[4:8]))


def spy_batches(data, calls):
    """Record the (split, start_batch) of every data.batches call."""
    original = data.batches

    def batches(split, batch_size, **kwargs):
        calls.append((split, kwargs.get("start_batch", 0)))
        return original(split, batch_size, **kwargs)

    data.batches = batches
    return data


def test_an_interrupted_encode_resumes_from_its_last_complete_chunk(encoded, tmp_path, monkeypatch):
    run, meta, _, data = encoded
    resumed_run = tmp_path / "resumed"
    shutil.copytree(RunPaths(run).vae, RunPaths(resumed_run).vae)
    saves = []
    real_save = encode_module._Progress.save

    def save_then_die(self, *args):
        saves.append(len(saves))
        if len(saves) == 2:  # die while the second chunk (batches 2-3 of train) is being recorded
            raise KeyboardInterrupt
        real_save(self, *args)

    monkeypatch.setattr(encode_module._Progress, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(resumed_run, data, batch_size=8, chunk_size=16)
    partial = resumed_run / encode_module.PARTIAL
    assert read_json(partial / "progress.json")["splits"]["train"] == {"batches": 2, "rows": 16, "done": False}
    assert not RunPaths(resumed_run).latents.exists()  # nothing half-written where stage 2 reads
    monkeypatch.setattr(encode_module._Progress, "save", real_save)
    calls = []
    again = encode_dataset(resumed_run, spy_batches(Dataset(**vars(data)), calls), batch_size=8, chunk_size=16)
    assert calls == [("train", 2), ("val", 0)]  # the first chunk was not encoded again
    assert not partial.exists()
    reference = tmp_path / "reference"
    shutil.copytree(RunPaths(run).vae, RunPaths(reference).vae)
    whole = encode_dataset(reference, data, batch_size=8, chunk_size=16)
    assert {k: v for k, v in again.items() if k != "created"} == {k: v for k, v in whole.items() if k != "created"}
    for name in ("train_mean", "train_logvar", "train_labels", "val_mean", "val_labels"):
        np.testing.assert_array_equal(np.load(RunPaths(resumed_run).latents / f"{name}.npy"),
                                      np.load(RunPaths(reference).latents / f"{name}.npy"))


def test_a_partial_encode_with_other_settings_starts_afresh(encoded, tmp_path, monkeypatch):
    run, _, _, data = encoded
    other = tmp_path / "other"
    shutil.copytree(RunPaths(run).vae, RunPaths(other).vae)

    def die(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode_module._Progress, "save", die)
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(other, data, batch_size=8, chunk_size=16)
    monkeypatch.undo()
    calls = []
    encode_dataset(other, spy_batches(Dataset(**vars(data)), calls), batch_size=16, chunk_size=16)
    assert calls == [("train", 0), ("val", 0)]
    assert np.load(RunPaths(other).latents / "train_mean.npy").shape == (40, 4, 4, 4)


def test_a_streamed_folder_with_a_damaged_file_gives_aligned_latents(encoded, tmp_path, blob_images):
    run, _, trainer, _ = encoded
    folder = tmp_path / "pngs"
    for i, image in enumerate(blob_images[:20]):
        (folder / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / f"c{i % 2}" / f"{i:02d}.png")
    (folder / "c1" / "05b.png").write_bytes(b"broken")
    other = tmp_path / "run"
    shutil.copytree(RunPaths(run).vae, RunPaths(other).vae)
    stream = open_dataset(str(folder), 16, 1, val_fraction=0.2, run_dir=other, cache="off")
    meta = encode_dataset(other, stream, batch_size=4)
    split = next(s for s in ("train", "val") if "c1/05b.png" in stream.index.paths(s))
    paths = stream.index.paths(split)
    readable = [i for i, p in enumerate(paths) if p != "c1/05b.png"]
    assert meta["counts"][split] == len(readable) == stream.count(split) - 1
    assert meta["skipped_files"] == {"c1/05b.png": "UnidentifiedImageError"}
    images = np.stack([np.asarray(Image.open(folder / paths[i]))[..., None] for i in readable])
    mean, _ = trainer.encoder(images.astype(np.float32) / 127.5 - 1.0)
    latents = RunPaths(other).latents
    np.testing.assert_allclose(np.load(latents / f"{split}_mean.npy"), np.transpose(mean, (0, 3, 1, 2)), atol=1e-5)
    np.testing.assert_array_equal(np.load(latents / f"{split}_labels.npy"), stream.labels(split)[readable])
