"""The training loop: microbatch = full batch, exact resume, checkpoints, signals, divergence."""

import pytest
import torch

from diffusion import checkpoints, device
from diffusion.config import DiffusionConfig, UNetConfig
from diffusion.training import LatentData, TrainConfig, TrainingDiverged
from diffusion.training.session import build_training
from runfs import hardware

TINY_UNET = UNetConfig(image_size=8, in_channels=4, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                       attention_resolutions="4", class_cond=True, num_classes=3, null_class=True,
                       num_head_channels=16)
TINY_DIFFUSION = DiffusionConfig(diffusion_steps=50)

BASE = TrainConfig(batch_size=8, lr=1e-3, ema_rate="0.9,0.99", save_interval=1000, log_interval=1, max_steps=4,
                   cfg_dropout=0.25, seed=3, grad_clip=1.0)


def make(latents_run, out, train=BASE, **kw):
    data = LatentData.from_run(latents_run / "latents")
    return build_training("diffusion", out_dir=out, data=data, unet=kw.pop("unet", TINY_UNET),
                          diffusion=TINY_DIFFUSION, train=train, device="cpu", progress=False, **kw)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


def test_microbatches_average_to_the_full_batch_gradient(latents_run, tmp_path):
    full = make(latents_run, tmp_path / "full", BASE.replace(max_steps=1))
    full.loop.run()
    micro = make(latents_run, tmp_path / "micro", BASE.replace(max_steps=1, microbatch=3))  # 3+3+2
    micro.loop.run()
    assert_same(weights(full.model), weights(micro.model), atol=2e-6)


def test_resume_is_exact(latents_run, tmp_path):
    straight = make(latents_run, tmp_path / "a", BASE.replace(max_steps=5))
    straight.loop.run()
    first = make(latents_run, tmp_path / "b", BASE.replace(max_steps=2))
    first.loop.run()
    second = make(latents_run, tmp_path / "b", BASE.replace(max_steps=5))
    assert second.loop.step == 2 and second.loop.resumed_from.name == "step_0000002"
    second.loop.run()
    assert_same(weights(straight.model), weights(second.model))
    for rate in (0.9, 0.99):
        a = checkpoints.load_weights(tmp_path / "a" / "step_0000005" / checkpoints.ema_filename(rate))
        b = checkpoints.load_weights(tmp_path / "b" / "step_0000005" / checkpoints.ema_filename(rate))
        assert_same(a, b)
    sa, sb = straight.loop.opt.state_dict()["state"], second.loop.opt.state_dict()["state"]
    for k in sa:
        torch.testing.assert_close(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"], atol=0, rtol=0)
    # The CSV log holds each step once, with nothing left over from the interrupted run.
    steps = [int(line.split(",")[0]) for line in (tmp_path / "b" / "log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4, 5]


def test_checkpoint_folder_contents_and_keep(latents_run, tmp_path):
    s = make(latents_run, tmp_path / "c", BASE.replace(max_steps=4, save_interval=1, keep=2))
    last = s.loop.run()
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path / "c")] == ["step_0000003", "step_0000004"]
    assert sorted(p.name for p in last.iterdir()) == [
        "config.json", "ema_0.9.safetensors", "ema_0.99.safetensors", "meta.json", "model.safetensors",
        "optimizer.pt", "state.pt"]
    config = checkpoints.read_checkpoint_config(last)
    assert config["model"]["image_size"] == 8 and config["data"]["scale_factor"] == 0.5
    # The checkpoint loads with nothing else: config.json rebuilds the model, the weights fit strictly.
    from diffusion.config import UNetConfig
    from diffusion.factory import create_model

    rebuilt = create_model(UNetConfig.from_dict(config["model"]))
    rebuilt.load_state_dict(checkpoints.load_weights(last / "model.safetensors"), strict=True)
    assert_same(weights(rebuilt), weights(s.model))


def test_ema_differs_from_raw_weights_and_tracks_them(latents_run, tmp_path):
    s = make(latents_run, tmp_path / "e", BASE.replace(max_steps=3, ema_rate="0.5"))
    last = s.loop.run()
    ema = checkpoints.load_weights(last / checkpoints.ema_filename(0.5))
    raw = checkpoints.load_weights(last / "model.safetensors")
    name = "out.2.weight" if "out.2.weight" in raw else next(iter(raw))
    assert not torch.equal(ema[name], raw[name])


def test_signal_saves_and_stops(latents_run, tmp_path):
    s = make(latents_run, tmp_path / "s", BASE.replace(max_steps=50))
    objective = s.loop.objective

    def interrupting(model, x, t, y, noise):
        if s.loop.step == 2:
            s.loop._on_signal(2, None)  # what SIGINT does
        return objective(model, x, t, y, noise)

    s.loop.objective = interrupting
    last = s.loop.run()
    assert s.loop.stop_requested and s.loop.step == 3 and last.name == "step_0000003"


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(latents_run, tmp_path):
    s = make(latents_run, tmp_path / "n", BASE.replace(max_steps=10, save_interval=2))
    objective = s.loop.objective

    def diverging(model, x, t, y, noise):
        out = objective(model, x, t, y, noise)
        if s.loop.step == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    s.loop.objective = diverging
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 3.*step_0000002 is kept.*--lr"):
        s.loop.run()
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path / "n")] == ["step_0000002"]


def test_bf16_autocast_trains(latents_run, tmp_path):
    s = make(latents_run, tmp_path / "bf", BASE.replace(max_steps=2, precision="bf16"))
    before = weights(s.model)
    s.loop.run()
    after = weights(s.model)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def _cpu_probes(monkeypatch, amx: bool, avx512_bf16: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)


def test_auto_precision_is_bf16_only_on_hardware_that_has_it(monkeypatch, tmp_path):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    for amx, avx512_bf16, want in ((True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")):
        _cpu_probes(monkeypatch, amx, avx512_bf16)
        assert device.resolve_precision("auto", cpu) == want
        assert [device.resolve_precision(p, cpu) for p in ("fp32", "bf16")] == ["fp32", "bf16"]
    for capability, want in (((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "fp32")):  # Ampere+ vs Turing
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert device.resolve_precision("auto", gpu) == want
    # A torch without the probes: the CPU flags Linux lists decide.
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    for flags, want in (("fpu avx2 avx512f amx_bf16 amx_tile", "bf16"), ("fpu avx2 avx512f avx512_bf16", "bf16"),
                        ("fpu avx2 avx512f avx512_vnni", "fp32"), ("fpu avx2", "fp32")):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "cpuinfo")
        assert device.resolve_precision("auto", cpu) == want
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "missing")
    assert device.resolve_precision("auto", cpu) == "fp32"


def test_auto_precision_is_resolved_before_the_run_config_is_saved(latents_run, monkeypatch, tmp_path):
    _cpu_probes(monkeypatch, amx=False, avx512_bf16=False)
    s = make(latents_run, tmp_path / "auto", BASE.replace(max_steps=1, save_interval=1, precision="auto"))
    assert s.loop.config.precision == "fp32"
    last = s.loop.run()
    assert checkpoints.read_checkpoint_config(last)["train"]["precision"] == "fp32"


def test_resume_with_other_architecture_is_refused(latents_run, tmp_path):
    make(latents_run, tmp_path / "r", BASE.replace(max_steps=1)).loop.run()
    with pytest.raises(ValueError, match="different model config.*same flags to resume, or choose a new --run"):
        make(latents_run, tmp_path / "r", unet=TINY_UNET.replace(num_channels=64))


def test_a_time_limit_stops_and_saves_before_the_step_limit(latents_run, tmp_path, capsys):
    s = make(latents_run, tmp_path / "t", BASE.replace(max_steps=1000, max_train_minutes=1e-4))  # 6 ms: one step
    last = s.loop.run()
    assert 1 <= s.loop.step < 1000 and last.name == f"step_{s.loop.step:07d}"
    assert checkpoints.read_checkpoint_config(last)["train"]["max_train_minutes"] == 1e-4
    assert f"stopping at step {s.loop.step}: 0.0001 minutes of training reached" in capsys.readouterr().out


def test_config_errors_are_explained(latents_run, tmp_path):
    with pytest.raises(ValueError, match="cfg-dropout needs a class-conditional model with a null class"):
        make(latents_run, tmp_path / "x", unet=TINY_UNET.replace(null_class=False))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="max_train_minutes must be >= 0"):
        TrainConfig(max_train_minutes=-1)
    with pytest.raises(ValueError, match="precision must be 'fp32', 'bf16' or 'auto'"):
        TrainConfig(precision="fp16")
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        make(latents_run, tmp_path / "y", require_resume=True)
