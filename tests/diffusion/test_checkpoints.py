"""Reading checkpoint folders: which weights `--ema auto` picks, and the errors for missing ones."""

import pytest
import torch
from safetensors.torch import save_file

from diffusion.checkpoints import ema_filename, find_checkpoint, weights_file
from runfs import write_json


def _folder(tmp_path, rates):
    folder = tmp_path / "step_0000010"
    folder.mkdir()
    for name in ["model.safetensors", *(ema_filename(r) for r in rates)]:
        save_file({"w": torch.zeros(1)}, folder / name)
    write_json(folder / "config.json", {"kind": "diffusion"})
    write_json(folder / "meta.json", {"step": 10, "ema_rates": rates})
    return folder


def test_auto_is_the_first_rate_training_listed_not_the_alphabetically_smallest(tmp_path):
    folder = _folder(tmp_path, [0.9999, 0.999])  # "0.999" sorts first as text
    assert weights_file(folder, "auto").name == "ema_0.9999.safetensors"
    assert weights_file(folder, "0.999").name == "ema_0.999.safetensors"
    assert weights_file(folder, "none").name == "model.safetensors"


def test_auto_without_ema_is_the_raw_weights_and_an_unknown_rate_names_the_available(tmp_path):
    assert weights_file(_folder(tmp_path, []), "auto").name == "model.safetensors"
    with pytest.raises(ValueError, match=r"no EMA weights for rate 0.5; available: none"):
        weights_file(tmp_path / "step_0000010", "0.5")


def test_find_checkpoint_names_the_folders_a_mistyped_step_could_mean(tmp_path):
    _folder(tmp_path, [0.99])
    assert find_checkpoint(tmp_path, "train_diffusion") == tmp_path / "step_0000010"
    with pytest.raises(FileNotFoundError, match=r"holds \['step_0000010'\]"):
        find_checkpoint(tmp_path / "step_0000011", "train_diffusion")
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*empty \(it does not exist\): give a "
                                                r"checkpoint folder"):
        find_checkpoint(tmp_path / "empty", "train_diffusion")
    (tmp_path / "run" / "diffusion").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"train one first with `python pipelines/train_diffusion.py --run "
                                                r".*run --guide`"):
        find_checkpoint(tmp_path / "run" / "guide", "train_diffusion")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*elsewhere \(no step_NNNNNNN folder"):
        find_checkpoint(tmp_path / "elsewhere", "train_diffusion")


def test_find_checkpoint_says_what_a_wrong_path_is_instead(tmp_path):
    run = tmp_path / "run"
    (run / "diffusion").mkdir(parents=True)
    _folder(run / "diffusion", [0.99])
    with pytest.raises(FileNotFoundError, match=r"run is a run folder, not a checkpoint: give .*run/diffusion \(its "
                                                r"newest checkpoint\)"):
        find_checkpoint(run, "train_diffusion")  # --checkpoint RUN or --guide RUN
    with pytest.raises(FileNotFoundError, match=r"meta.json is a file; give the checkpoint folder that holds it"):
        find_checkpoint(run / "diffusion" / "step_0000010" / "meta.json", "train_diffusion")
