"""Stage 2 under faults (issue 33): a damaged checkpoint falls back to the one before it, latents of another VAE are
refused on resume, a truncated latents file is named, a full disk is reported as such."""

import numpy as np
import pytest
import torch

from diffusion import checkpoints
from diffusion.training import LatentData, TrainConfig
from diffusion.training.session import build_training
from runfs import read_json, write_json
from runfs.errors import CorruptFileError, LineageError
from runfs.leftovers import find_leftovers
from tests.conftest import TINY_DIFFUSION, TINY_UNET

BASE = TrainConfig(batch_size=8, lr=1e-3, ema_rate="0.9", save_interval=2, log_interval=1, max_steps=4, seed=3,
                   keep=5)


def make(run, out, train=BASE):
    return build_training("diffusion", out_dir=out, data=LatentData.from_run(run / "latents"), unet=TINY_UNET,
                          diffusion=TINY_DIFFUSION, train=train, device="cpu", progress=False)


def final_weights(out):
    return checkpoints.load_weights(checkpoints.latest_checkpoint(out) / "model.safetensors")


@pytest.mark.parametrize("damaged", ["optimizer.pt", "state.pt", "model.safetensors"])
def test_a_damaged_checkpoint_is_set_aside_and_the_previous_one_resumed(latents_run, tmp_path, damaged, capsys):
    make(latents_run, tmp_path / "straight").loop.run()
    out = tmp_path / "resumed"
    make(latents_run, out, BASE.replace(max_steps=4)).loop.run()  # step_0000002 and step_0000004
    path = out / "step_0000004" / damaged
    path.write_bytes(path.read_bytes()[:100])
    session = make(latents_run, out, BASE.replace(max_steps=4))
    assert session.loop.resumed_from.name == "step_0000002" and session.loop.step == 2
    err = capsys.readouterr().err
    assert f"warning: {path} " in err and "set aside as" in err and "step_0000004.damaged" in err
    session.loop.run()  # steps 3 and 4 again, exactly as the first time
    for name, tensor in final_weights(tmp_path / "straight").items():
        torch.testing.assert_close(final_weights(out)[name], tensor, atol=0, rtol=0)
    assert (out / "step_0000004.damaged").is_dir()  # kept for inspection, never loaded again


def test_a_damaged_training_state_is_named(tmp_path):
    from diffusion.training.checkpoint import load_torch_state

    (tmp_path / "state.pt").write_bytes(b"PK\x03\x04 not really a torch file")
    with pytest.raises(CorruptFileError, match=r"state.pt is damaged \("):
        load_torch_state(tmp_path / "state.pt")


def test_resuming_on_latents_of_another_vae_is_refused(latents_run, tmp_path):
    make(latents_run, tmp_path / "d", BASE.replace(max_steps=2)).loop.run()
    meta = read_json(latents_run / "latents" / "meta.json")
    write_json(latents_run / "latents" / "meta.json", {**meta, "vae_checkpoint": "another-vae"})  # re-encoded
    with pytest.raises(LineageError, match=r"step_0000002 was trained on latents of VAE test, but .*latents now "
                                           r"holds latents of VAE another-vae"):
        make(latents_run, tmp_path / "d", BASE.replace(max_steps=4))


def test_the_checkpoint_config_records_the_latents_it_was_trained_on(latents_run, tmp_path):
    from runfs.lineage import latents_digest

    make(latents_run, tmp_path / "d", BASE.replace(max_steps=2)).loop.run()
    data = read_json(tmp_path / "d" / "step_0000002" / "config.json")["data"]
    assert data["vae_checkpoint"] == "test" and data["latents_digest"] == latents_digest(latents_run / "latents")


def test_a_truncated_latents_file_is_named(latents_run):
    path = latents_run / "latents" / "train_logvar.npy"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CorruptFileError, match=r"train_logvar.npy is truncated or damaged: it has \d+ bytes where its "
                                               r"header promises \d+ .*rerun `python pipelines/encode.py --run"):
        LatentData.from_run(latents_run / "latents")


def test_a_full_disk_while_saving_is_reported_and_leaves_nothing(latents_run, tmp_path, monkeypatch, capsys):
    from diffusion.training import checkpoint as ckpt
    from pipelines.cli import run_training

    def full_disk(obj, path, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4480 vs 4374")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    assert run_training(lambda: make(latents_run, tmp_path / "d", BASE.replace(max_steps=2))) == 2
    assert "the disk is full" in capsys.readouterr().err
    assert find_leftovers(tmp_path) == [] and checkpoints.latest_checkpoint(tmp_path / "d") is None


def test_a_partial_npy_header_is_named(tmp_path):
    from runfs.arrays import load_npy

    np.save(tmp_path / "x.npy", np.zeros((4, 4), np.float32))
    (tmp_path / "x.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:20])
    with pytest.raises(CorruptFileError, match=r"x.npy is not a readable .npy file .*the file is damaged: redo"):
        load_npy(tmp_path / "x.npy", fix="redo")


def test_a_log_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    from diffusion.training.logger import CSVLog

    path = tmp_path / "log.csv"
    path.write_text("step,samples,lr,grad_norm,steps_per_sec,loss\n1,8,0.001,1.5,2.0,0.9\n2,16,0.001,1.4,2.0,0.8\n1")
    CSVLog(path, resume_step=2)  # the process died while appending step 12's line: only "1" reached the disk
    assert path.read_text().splitlines()[1:] == ["1,8,0.001,1.5,2.0,0.9", "2,16,0.001,1.4,2.0,0.8"]
    assert find_leftovers(tmp_path) == []


def test_an_unwritable_checkpoint_folder_fails_before_training(latents_run, tmp_path, capsys):
    from pipelines.cli import run_training

    (tmp_path / "file").write_text("not a folder")
    assert run_training(lambda: make(latents_run, tmp_path / "file" / "diffusion")) == 2
    assert "error: cannot write the checkpoints to" in capsys.readouterr().err
