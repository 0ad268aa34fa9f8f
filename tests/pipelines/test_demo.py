"""pipelines/demo.py --train's stage plan: the demo's time budget, resume, and skipping completed stages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from diffusion.training import TRAIN_PRESETS
from pipelines import demo
from pipelines.demo import demo_vae_minutes, run_stage, stages
from runfs import RunPaths, read_json


def _commands(root):
    return {name: command for name, command, _ in stages(RunPaths(root), SimpleNamespace(guidance_scale=None))}


def test_the_vae_gets_what_the_measured_diffusion_steps_leave_of_30_minutes(tmp_path):
    steps = TRAIN_PRESETS["fmnist-latent"].max_steps
    for step_seconds, want in ((0.30, 11.0), (0.65, 8.0), (0.389, None)):  # AMX Xeon, AVX2 EPYC fp32, EPYC bf16
        run = RunPaths(tmp_path / str(step_seconds))
        got = demo_vae_minutes(run, lambda s=step_seconds: s)
        if want is None:  # in between: exactly what is left
            diffusion_minutes = steps * step_seconds * demo.LOOP_OVERHEAD / 60
            want = round(demo.BUDGET_MINUTES - demo.OTHER_STAGES_MINUTES - diffusion_minutes, 1)
            assert demo.VAE_MINUTES[0] < want < demo.VAE_MINUTES[1]
        assert got == want
        assert read_json(run.root / ".done" / "plan.json")["vae_minutes"] == want


def test_the_plan_is_kept_for_a_resumed_run(tmp_path):
    run = RunPaths(tmp_path)
    first = demo_vae_minutes(run, lambda: 0.346)
    assert demo_vae_minutes(run, lambda: pytest.fail("a planned run must not measure again")) == first


def test_vae_stage_gets_the_planned_budget_and_resumes_only_from_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "diffusion_step_seconds", lambda: 0.30)
    fresh = _commands(tmp_path)["vae"]
    assert fresh[-2:] == ["--max-train-minutes", "11.0"] and "--resume" not in fresh
    (tmp_path / "vae" / "checkpoint").mkdir(parents=True)
    assert _commands(tmp_path)["vae"][-1] == "--resume"
    assert list(_commands(tmp_path)) == ["vae", "encode", "export", "diffusion", "guide", "sample"]
    assert _commands(tmp_path)["guide"][-1] == "--guide"
    assert "--guidance-scale" not in _commands(tmp_path)["sample"]  # sample.py's defaults, guide-aware


def test_a_complete_vae_stage_needs_no_plan(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "diffusion_step_seconds", lambda: pytest.fail("no VAE left to train: nothing to plan"))
    (tmp_path / "vae" / "model").mkdir(parents=True)
    (tmp_path / "vae" / "model" / "meta.json").write_text("{}")
    assert "--max-train-minutes" not in _commands(tmp_path)["vae"]


def test_the_diffusion_and_guide_stages_get_the_rest_of_the_budget():
    left = demo.minutes_left("diffusion", started=100.0, now=100.0 + 10 * 60)
    assert left == demo.BUDGET_MINUTES - 10 - demo.SAMPLE_MINUTES - demo.GUIDE_MINUTES
    assert demo.minutes_left("diffusion", started=0.0, now=29.5 * 60) == 1.0  # over budget: a minute, not nothing
    assert demo.minutes_left("guide", started=0.0, now=25 * 60) == demo.BUDGET_MINUTES - 25 - demo.SAMPLE_MINUTES
    assert demo.minutes_left("guide", started=0.0, now=29.9 * 60) == 0.5


def test_the_step_probe_times_real_training_steps():
    assert 0.0 < demo.diffusion_step_seconds(steps=2, warmup=1) < 60.0


def test_a_completed_stage_is_skipped_without_running(tmp_path, capsys):
    marker = tmp_path / "done.json"
    marker.write_text("{}")
    assert run_stage("encode", ["no_such_script.py"], marker, force=False) is None
    assert "skipped" in capsys.readouterr().out


def test_train_hands_the_diffusion_stage_the_rest_of_the_budget(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(demo, "diffusion_step_seconds", lambda: 0.30)
    monkeypatch.setattr(demo, "run_stage", lambda name, command, marker, force: seen.setdefault(name, command) and 1.0)
    assert demo.main(["--train", "--run", str(tmp_path)]) == 0
    after = {"diffusion": demo.SAMPLE_MINUTES + demo.GUIDE_MINUTES, "guide": demo.SAMPLE_MINUTES}
    for stage, reserve in after.items():
        flag = seen[stage].index("--max-train-minutes")
        assert demo.BUDGET_MINUTES - reserve - 1 < float(seen[stage][flag + 1]) <= demo.BUDGET_MINUTES - reserve
    for stage in after:  # a finished stage is not given a new limit
        (tmp_path / ".done" / stage).write_text("{}")
    seen.clear()
    demo.main(["--train", "--run", str(tmp_path)])
    assert "--max-train-minutes" not in seen["diffusion"] and "--max-train-minutes" not in seen["guide"]


def test_the_openclipart_recipe_passes_its_flags_to_every_stage(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(demo, "diffusion_step_seconds", lambda: pytest.fail("the RGB recipe's VAE budget is fixed"))
    monkeypatch.setattr(demo, "run_stage", lambda name, command, marker, force: seen.setdefault(name, command) and 1.0)
    assert demo.main(["--train", "--run", str(tmp_path), "--data", "openclipart"]) == 0
    recipe = demo.RECIPES["openclipart"]
    vae = seen["vae"]
    assert vae[vae.index("--data") + 1] == "openclipart" and vae[vae.index("--preset") + 1] == "photos64"
    assert float(vae[vae.index("--max-train-minutes") + 1]) == recipe.vae_minutes
    for stage in ("diffusion", "guide"):
        assert seen[stage][seen[stage].index("--preset") + 1] == "rgb-latent"
    assert "--guide" in seen["guide"] and "--guide" not in seen["diffusion"]
    assert seen["sample"][seen["sample"].index("--num-samples") + 1] == str(5 * recipe.classes)  # 5 per class


def test_sampling_a_recipe_without_its_shipped_run_says_how_to_train_it(tmp_path):
    with pytest.raises(SystemExit, match="make demo-train DATA=openclipart"):
        demo.main(["--run", str(tmp_path), "--data", "openclipart", "--pretrained", str(tmp_path / "none")])
