"""Every CLI number is checked when parsed (issue 33, item 3): the commands that reproduced the bad cases."""

import argparse
import json
import math

import pytest

from pipelines.cli import class_list, int_list, number, positive_int, probability, respacing


def parse_error(parse_args, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("parse", "text", "reason"), [
    (number(float), "nan", "'nan' is not a number (NaN)"),
    (number(float), "inf", "'inf' is infinite"),
    (number(float), "-inf", "'-inf' is infinite"),
    (number(float), "x", "'x' is not a number"),
    (number(float, 0), "-5", "-5 is out of range: need >= 0"),
    (number(float, 0, low_open=True), "0", "0 is out of range: need > 0"),
    (probability, "1.5", "1.5 is out of range: need <= 1"),
    (positive_int, "0", "0 is out of range: need >= 1"),
    (positive_int, "2.5", "'2.5' is not an integer"),
    (int_list, "1,x", "'1,x' is not a comma list of whole numbers"),
    (int_list, "1,0", "every value must be >= 1"),
    (class_list, "-1", "every value must be >= 0"),
    (respacing, "ddimX", "expected ddimN with a whole number N >= 1"),
    (respacing, "ddim0", "expected ddimN with a whole number N >= 1"),
    (respacing, "10,,10", "cannot parse timestep respacing"),
])
def test_number_types_refuse_with_the_reason(parse, text, reason):
    with pytest.raises(argparse.ArgumentTypeError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_number_types_accept_what_they_promise():
    assert number(float, allow_inf=True)("-inf") == -math.inf
    assert probability("0") == 0.0 and probability("1") == 1.0
    assert int_list("1,2,4") == (1, 2, 4) and class_list("0,3") == "0,3"
    assert respacing("") == "" and respacing("trailing20") == "trailing20" and respacing("10,10") == "10,10"


@pytest.mark.parametrize(("argv", "message"), [
    (["--guidance-scale", "nan"], "argument --guidance-scale: 'nan' is not a number (NaN)"),
    (["--guidance-scale", "inf"], "argument --guidance-scale: 'inf' is infinite"),
    (["--guide-scale", "nan"], "argument --guide-scale: 'nan' is not a number (NaN)"),
    (["--eta", "-5"], "argument --eta: -5 is out of range: need >= 0"),
    (["--eta", "1.5"], "argument --eta: 1.5 is out of range: need <= 1"),
    (["--num-samples", "0"], "argument --num-samples: 0 is out of range: need >= 1"),
    (["--batch-size", "0"], "argument --batch-size: 0 is out of range: need >= 1"),
    (["--timestep-respacing", "ddimX"], "argument --timestep-respacing: timestep respacing 'ddimX': expected ddimN"),
    (["--timestep-respacing", "ddim0"], "argument --timestep-respacing: timestep respacing 'ddim0': expected ddimN"),
    (["--lambda-min", "nan"], "argument --lambda-min: 'nan' is not a number (NaN)"),
])
def test_sample_refuses_bad_numbers_when_parsing(argv, message, capsys):
    from pipelines.sample import parse_args

    assert message in parse_error(parse_args, ["--run", "r", *argv], capsys)


def test_sample_refuses_a_respacing_that_does_not_fit_the_model_before_sampling(tiny_pipeline_run, tmp_path, capsys):
    from pipelines.sample import main

    # The tiny model has T = 50, of which the default --lambda-min keeps the first 46 for sampling.
    for spec, message in (("2000", "'2000' asks for 2000 steps of a 46-step process (the model's timesteps that "
                                   "sampling uses); give at most 46 (sampling uses the first 46 of the model's 50 "
                                   "timesteps: those with log-SNR >= --lambda-min -5.1; --lambda-min=-inf uses all)"),
                          ("ddim45", "'ddim45': no integer stride gives exactly 45 of 46 steps")):
        out = tmp_path / spec
        assert main(["--run", str(tiny_pipeline_run), "--timestep-respacing", spec, "--no-progress",
                     "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()  # nothing was sampled or written


def test_train_diffusion_max_steps_is_documented_and_negative_refused(tmp_path, script_help, capsys):
    from pipelines.train_diffusion import main, parse_args

    assert "0: no limit" in script_help(parse_args)["--max-steps"]
    assert "'nan' is not a number" in parse_error(parse_args, ["--run", "r", "--lr", "nan"], capsys)
    assert main(["--run", str(tmp_path), "--max-steps", "-3"]) == 2
    assert "max_steps must be >= 0 (0: off; got -3)" in capsys.readouterr().err


def test_train_vae_refuses_a_nan_learning_rate(capsys):
    from pipelines.train_vae import parse_args
    from vae.config import VAEConfig

    assert "argument --lr: 'nan' is not a number (NaN)" in parse_error(parse_args, ["--run", "r", "--lr", "nan"],
                                                                       capsys)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got nan"):
        VAEConfig.from_dict({"lr": float("nan")})  # a hand-edited config.json is refused the same way


@pytest.mark.parametrize(("field", "value", "message"), [
    ("lr", float("inf"), "lr must be a finite number"), ("weight_decay", -1.0, "weight_decay must be >= 0"),
    ("grad_clip", float("nan"), "grad_clip must be a finite number"), ("lr_anneal_steps", -1, "lr_anneal_steps"),
])
def test_train_config_refuses_bad_numbers(field, value, message):
    from diffusion.training import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_json_written_by_the_project_is_valid_json(tmp_path):
    from runfs import read_json, write_json

    write_json(tmp_path / "x.json", {"nan": float("nan"), "inf": [1.0, float("inf")], "nested": {"m": -math.inf}})
    text = (tmp_path / "x.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in the JSON"))  # strict JSON
    assert read_json(tmp_path / "x.json") == {"nan": None, "inf": [1.0, None], "nested": {"m": None}}


@pytest.mark.parametrize(("module", "argv", "message"), [
    ("pipelines.tune_guidance", ["--max-accuracy-gap", "nan"], "argument --max-accuracy-gap: 'nan' is not a number"),
    ("pipelines.tune_guidance", ["--num-samples", "1"], "argument --num-samples: 1 is out of range: need >= 2"),
    ("pipelines.tune_guidance", ["--confirm", "-1"], "argument --confirm: -1 is out of range: need >= 0"),
    ("pipelines.tune_guidance", ["--seed", "-1"], "argument --seed: -1 is out of range: need >= 0"),
    ("pipelines.encode", ["--chunk-size", "0"], "argument --chunk-size: 0 is out of range: need >= 1"),
    ("pipelines.evaluate", ["--seed", "-2"], "argument --seed: -2 is out of range: need >= 0"),
])
def test_the_other_scripts_refuse_bad_numbers_when_parsing(module, argv, message, capsys):
    import importlib

    parse_args = importlib.import_module(module).parse_args
    assert message in parse_error(parse_args, ["--run", "r", *argv], capsys)


def test_demo_refuses_a_nan_guidance_scale(capsys):
    from pipelines.demo import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--guidance-scale", "nan"])
    assert exit_info.value.code == 2
    assert "argument --guidance-scale: 'nan' is not a number (NaN)" in capsys.readouterr().err
