"""Lineage checks (issue 33, item 1): which VAE and latents each stage was built from, and refusing mismatches."""

import shutil
from pathlib import Path

import pytest

from runfs import read_json, write_json
from runfs.errors import LineageError
from runfs.lineage import (
    check_bridge_for_model,
    check_export,
    check_resume,
    latents_digest,
    stale_downstream,
    vae_digest,
    with_latents_digest,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "pretrained" / "fmnist"


def make_vae(run, content=b"weights v1"):
    model = run / "vae" / "model"
    model.mkdir(parents=True, exist_ok=True)
    for name in ("encoder.keras", "decoder.keras"):
        (model / name).write_bytes(content)
    return vae_digest(run)


def make_run(tmp_path, scale=0.5):
    """A run whose latents, bridge and diffusion checkpoint all come from its VAE (record files only)."""
    run = tmp_path / "run"
    vae = make_vae(run)
    write_json(run / "latents" / "meta.json", {"vae_checkpoint": vae, "latent_norm": "global", "scale_factor": scale})
    lat = latents_digest(run / "latents")
    write_json(run / "bridge" / "bridge.json", {"vae_checkpoint": vae, "latents_digest": lat,
                                                "latent_norm": "global", "scale_factor": scale})
    step = run / "diffusion" / "step_0000010"
    data = {"kind": "latent", "latents_dir": str(run / "latents"), "vae_checkpoint": vae, "latent_norm": "global",
            "scale_factor": scale}
    write_json(step / "config.json", {"kind": "diffusion", "data": with_latents_digest(data)})
    write_json(step / "meta.json", {"step": 10})
    return run


def records(run):
    return read_json(run / "bridge" / "bridge.json"), read_json(run / "diffusion" / "step_0000010" / "config.json")


def test_a_consistent_run_passes_every_check(tmp_path):
    run = make_run(tmp_path)
    bridge, model = records(run)
    assert model["data"]["latents_digest"] == latents_digest(run / "latents") == bridge["latents_digest"]
    check_bridge_for_model(bridge, "b", model, "m", run)
    check_resume(model["data"], model["data"], "m")
    check_export(read_json(run / "latents" / "meta.json"), run / "latents", run)
    assert stale_downstream(run) == []


def test_the_shipped_run_passes_its_own_checks():
    bridge = read_json(SHIPPED / "bridge" / "bridge.json")
    for folder in ("diffusion/step_0002600", "guide/step_0000800"):
        config = read_json(SHIPPED / folder / "config.json")
        assert config["data"]["vae_checkpoint"] == bridge["vae_checkpoint"]  # it records what the checks read
        check_bridge_for_model(bridge, SHIPPED / "bridge" / "bridge.json", config, SHIPPED / folder, SHIPPED)
    assert stale_downstream(SHIPPED) == []


def test_a_bridge_of_another_vae_is_refused_naming_both_and_the_fix(tmp_path):
    run = make_run(tmp_path)
    bridge, model = records(run)
    other = {**bridge, "vae_checkpoint": "0123456789abcdef"}
    with pytest.raises(LineageError, match=rf"bridge.json decodes latents of VAE 0123456789abcdef, but ckpt was "
                                           rf"trained on latents of VAE {model['data']['vae_checkpoint']}.*still holds "
                                           r"that VAE: re-export the bridge with `python pipelines/export.py --run"):
        check_bridge_for_model(other, "bridge.json", model, "ckpt", run)
    make_vae(run, b"weights v2")  # the run's VAE was retrained since: re-exporting would not help
    with pytest.raises(LineageError, match=r"the run's VAE is now [0-9a-f]{16}: train the diffusion model again.*"
                                           r"--allow-mismatch samples anyway"):
        check_bridge_for_model(other, "bridge.json", model, "ckpt", run)


def test_a_bridge_with_another_latent_scale_is_refused(tmp_path):
    run = make_run(tmp_path)
    bridge, model = records(run)
    with pytest.raises(LineageError, match=r"scale the latents differently \(latent norm global scale \[0.6\].* vs "
                                           r"global scale \[0.5\].*re-export the bridge from them"):
        check_bridge_for_model({**bridge, "scale_factor": 0.6}, "bridge.json", model, "ckpt", run)


def test_records_that_older_runs_lack_are_not_checked(tmp_path):
    run = make_run(tmp_path)
    check_bridge_for_model({"latent_norm": "global"}, "b", {"data": {"kind": "latent"}}, "m", run)
    check_bridge_for_model({"vae_checkpoint": "x"}, "b", {"data": {"kind": "pixel"}}, "m", run)  # no decoder


def test_resuming_on_latents_of_another_vae_is_refused(tmp_path):
    stored = {"kind": "latent", "vae_checkpoint": "aaaa", "scale_factor": 0.5}
    with pytest.raises(LineageError, match=r"ckpt was trained on latents of VAE aaaa, but run/latents now holds "
                                           r"latents of VAE bbbb.*start a new model"):
        check_resume(stored, {**stored, "vae_checkpoint": "bbbb", "latents_dir": "run/latents"}, "ckpt")
    with pytest.raises(LineageError, match=r"scaled otherwise.*scale \[0.5\].*scale \[0.7\]"):
        check_resume(stored, {**stored, "scale_factor": 0.7}, "ckpt")


def test_export_refuses_latents_of_another_vae(tmp_path):
    run = make_run(tmp_path)
    make_vae(run, b"weights v2")
    with pytest.raises(LineageError, match=r"latents were encoded by VAE [0-9a-f]{16}, but .*vae now holds VAE "
                                           r"[0-9a-f]{16}.*Re-encode first: `python pipelines/encode.py --run"):
        check_export(read_json(run / "latents" / "meta.json"), run / "latents", run)


def test_stale_downstream_after_a_new_vae_and_after_re_encoding(tmp_path):
    run = make_run(tmp_path)
    shutil.copytree(run / "diffusion", run / "guide")
    make_vae(run, b"weights v2")  # train_vae.py retrained the VAE: the latents are stale first
    lines = stale_downstream(run)
    assert len(lines) == 1 and lines[0].startswith(f"{run / 'latents'}: encoded by VAE") and "encode.py" in lines[0]
    write_json(run / "latents" / "meta.json", {"vae_checkpoint": vae_digest(run), "latent_norm": "global",
                                               "scale_factor": 0.5})  # encode.py ran again
    lines = stale_downstream(run)
    assert [line.split(":")[0] for line in lines] == [str(run / "bridge"), str(run / "diffusion" / "step_0000010"),
                                                      str(run / "guide" / "step_0000010")]
    assert "export.py" in lines[0] and "train it again" in lines[1]


def test_print_stale_says_what_to_rerun(tmp_path, capsys):
    from runfs.lineage import print_stale

    run = make_run(tmp_path)
    assert print_stale(run) == [] and capsys.readouterr().err == ""
    make_vae(run, b"weights v2")
    assert len(print_stale(run)) == 1
    assert capsys.readouterr().err.startswith(f"note: now stale: {run / 'latents'}: encoded by VAE")
