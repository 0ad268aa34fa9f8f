"""Stage 1 under faults (issue 33): damaged files are named with the way out, a NaN loss stops training before
anything is saved, a replace killed halfway is recovered, and a run resumes from a mid-epoch checkpoint."""

import os

import numpy as np
import pytest

from runfs import read_json
from runfs.errors import CorruptFileError
from vae.checkpoint import CHECKPOINT, TrainingDiverged, restore_checkpoint
from vae.data import Dataset
from vae.model import load_model_file, resolve_model_dir
from vae.train import train_vae
from vae.trainer import VAETrainer


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def data(blob_images):
    return Dataset("blobs", blob_images[:32], blob_images[32:40])


@pytest.fixture
def trained_run(tmp_path, tiny_cfg, data):
    """A run folder after 2 steps (batch 16: 2 steps per epoch), checkpoint and final model on disk."""
    cfg = tiny_cfg.replace(batch_size=16, epochs=5, max_steps=2, eval_images=8)
    train_vae(cfg, data, tmp_path, progress=False)
    return tmp_path, cfg


def test_a_truncated_keras_file_is_named_with_the_way_out(trained_run):
    run, _ = trained_run
    path = run / "vae" / "model" / "encoder.keras"
    truncate(path)
    with pytest.raises(CorruptFileError, match=r"model/encoder.keras is truncated or damaged \(not a complete "
                                               r"\.keras archive\).*delete that folder and rerun"):
        load_model_file(path)


def test_a_truncated_optimizer_state_is_named_with_the_way_out(trained_run, tiny_cfg):
    run, cfg = trained_run
    truncate(run / "vae" / CHECKPOINT / "optimizer.npz")
    trainer = VAETrainer(cfg)
    trainer.compile(optimizer=trainer.make_optimizer())
    with pytest.raises(CorruptFileError, match=r"checkpoint/optimizer.npz is damaged \(BadZipFile.*cannot be "
                                               r"resumed. Start again with `--overwrite`"):
        restore_checkpoint(run / "vae", trainer)


def test_a_checkpoint_replace_killed_halfway_is_recovered_by_the_next_reader(trained_run):
    run, cfg = trained_run
    vae = run / "vae"
    os.replace(vae / CHECKPOINT, vae / ".checkpoint.old")  # killed between the two renames of a replace
    os.replace(vae / "model", vae / ".model.old")
    assert resolve_model_dir(vae) == vae / "model"  # put back, not "no trained VAE"
    trainer = VAETrainer(cfg)
    trainer.compile(optimizer=trainer.make_optimizer())
    assert restore_checkpoint(vae, trainer)["step"] == 2
    assert sorted(p.name for p in vae.iterdir() if p.name.startswith(".")) == []


def test_a_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(trained_run, data, monkeypatch):
    run, cfg = trained_run
    checkpoint = run / "vae" / CHECKPOINT
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    original = VAETrainer.distributed_step  # what the training loop calls, on one device or several

    def diverging(self, data, offset=0, global_batch=None):
        return original(self, data, offset, global_batch) * float("nan")

    monkeypatch.setattr(VAETrainer, "distributed_step", diverging)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 3; the last good checkpoint .*checkpoint "
                                               r"\(step 2\) is kept. Start again with a lower --lr and --overwrite"):
        train_vae(cfg.replace(max_steps=6), data, run, resume=True, progress=False, checkpoint_minutes=1e-9)
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before  # nothing NaN was saved


def test_mid_epoch_checkpoints_resume_where_they_stopped(tmp_path, tiny_cfg, data):
    """checkpoint_minutes saves within an epoch (here after every step); a run stopped mid-epoch resumes at that
    batch and ends where an uninterrupted run ends, with the same weights."""
    cfg = tiny_cfg.replace(batch_size=8, epochs=1, eval_images=8)  # 4 steps in the one epoch
    train_vae(cfg.replace(max_steps=3), data, tmp_path / "a", progress=False, checkpoint_minutes=1e-9)
    state = read_json(tmp_path / "a" / "vae" / CHECKPOINT / "meta.json")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (3, 0, 3)  # mid-epoch
    resumed = train_vae(cfg, data, tmp_path / "a", resume=True, progress=False)
    straight = train_vae(cfg, data, tmp_path / "b", progress=False)
    assert resumed["step"] == straight["step"] == 4
    from vae.model import load_models

    for a, b in zip(*(load_models(tmp_path / r / "vae" / "model") for r in "ab"), strict=True):
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_rerunning_a_finished_run_rewrites_nothing(trained_run, data):
    run, cfg = trained_run
    model = run / "vae" / "model"
    before = {p.name: p.stat().st_mtime_ns for p in model.iterdir()}
    assert train_vae(cfg, data, run, resume=True, progress=False)["step"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in model.iterdir()} == before  # the latents stay current
