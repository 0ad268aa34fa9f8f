"""pipelines/tune_guidance.py: the sweep scores what evaluate.py scores, keeps the best, and sample.py then uses it."""

import argparse
import json
import shutil

import numpy as np
import pytest

from diffusion.config import DEFAULT_GUIDANCE_SCALE
from pipelines.evaluate import main as evaluate
from pipelines.sample import main as sample
from pipelines.tune_guidance import Point, beyond, choose, edge_notes, scales, sweep
from pipelines.tune_guidance import main as tune


def point(w, fid, acc):
    return Point(guidance_scale=w, guide_scale=1.0, fid=fid, kid=0.0, class_accuracy=acc, seconds=1.0)


def test_the_lowest_fid_wins_among_points_with_realistic_class_accuracy():
    over_guided, good, weak = point(3.0, 0.4, 0.99), point(2.0, 0.5, 0.92), point(1.0, 0.9, 0.80)
    assert choose([weak, good, over_guided], real_accuracy=0.89, gap=0.05) == (good, True)
    assert choose([weak, good, over_guided], real_accuracy=0.89, gap=0.2) == (over_guided, True)
    assert choose([weak, over_guided], real_accuracy=0.89, gap=0.05) == (over_guided, False)  # none within
    unconditional = [point(1.0, 0.7, None), point(1.0, 0.6, None)]
    assert choose(unconditional, real_accuracy=None, gap=0.05) == (unconditional[1], True)


def test_a_best_point_on_the_grid_edge_says_which_way_to_extend_it():
    grid_w, grid_s = [1.25, 1.5, 2.0], [1.0, 1.2, 1.4]
    low = Point(1.25, 1.4, 0.5, 0.0, 0.9, 1.0)
    assert edge_notes(low, grid_w, grid_s) == [
        "the best guidance scale 1.25 is the lowest tried: add lower ones to --guidance-scales",
        "the best guide scale 1.4 is the highest tried: add higher ones to --guide-scales"]
    assert edge_notes(Point(1.5, 1.0, 0.5, 0.0, 0.9, 1.0), grid_w, grid_s) == []  # inside, and 1 means "none"
    assert edge_notes(Point(2.0, 1.0, 0.5, 0.0, 0.9, 1.0), grid_w, [1.0]) == [
        "the best guidance scale 2 is the highest tried: add higher ones to --guidance-scales"]


def test_the_scale_past_an_edge_keeps_the_grid_spacing_and_never_goes_below_1():
    assert beyond(1.4, [1.0, 1.2, 1.4]) == 1.6  # 1.4 + 0.2 in floating point is 1.5999...: rounded
    assert beyond(1.25, [1.5, 1.25, 2.0]) == 1.0  # unsorted grid; the lower edge steps down to 1 ...
    assert beyond(1.1, [1.1, 1.5]) == 1.0  # ... and no further
    assert beyond(1.0, [1.0, 1.2]) is None  # 1 is "no guidance of that kind": nothing lies past it
    assert beyond(1.5, [1.25, 1.5, 2.0]) is None  # inside
    assert beyond(2.0, [2.0]) is None  # one point: no spacing to step by


def test_the_sweep_extends_the_grid_until_the_best_point_is_inside_it():
    calls = []

    def measure(w, s, tag):  # a bowl with its minimum at w = 0.9 (below 1: the grid stops at 1) and s = 1.6
        calls.append((w, s))
        return Point(w, s, fid=(w - 0.9) ** 2 + (s - 1.6) ** 2, kid=0.0, class_accuracy=None, seconds=0.0)

    def pick(points):
        return min(points, key=lambda p: p.fid)

    w_grid, s_grid = [1.25, 1.5, 1.75], [1.0, 1.2, 1.4]
    points, w_out, s_out = sweep(measure, w_grid, s_grid, extend=0, pick=pick)
    assert len(points) == 9 and (w_out, s_out) == (w_grid, s_grid)
    calls.clear()
    points, w_out, s_out = sweep(measure, w_grid, s_grid, extend=5, pick=pick)
    # Round 1 adds w 1.0 and s 1.6 (7 new points), round 2 adds s 1.8 (4 more); then (1.0, 1.6) is inside the grid.
    assert (w_out, s_out) == ([1.0, 1.25, 1.5, 1.75], [1.0, 1.2, 1.4, 1.6, 1.8])
    assert len(calls) == len(set(calls)) == 20  # every grid point measured once
    assert sorted(calls) == [(p.guidance_scale, p.guide_scale) for p in points]
    assert (pick(points).guidance_scale, pick(points).guide_scale) == (1.0, 1.6)
    assert edge_notes(pick(points), w_out, s_out) == []
    calls.clear()
    _, w_out, s_out = sweep(measure, w_grid, s_grid, extend=1, pick=pick)
    assert len(calls) == 16 and s_out == [1.0, 1.2, 1.4, 1.6]  # stopped after one round, still on the edge


def test_scale_lists_are_parsed_and_checked():
    assert scales("1.5, 2,2,2.5") == [1.5, 2.0, 2.5]
    for bad in ("two", "", "-1", "1,nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            scales(bad)


def test_tuned_scales_score_as_evaluate_py_and_become_sample_py_defaults(tiny_pipeline_run, banded_folder,
                                                                         tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_pipeline_run, run)  # the shared fixture stays without a guidance.json
    common = ["--no-progress"]
    eval_flags = ["--data", str(banded_folder), "--cache-dir", str(tmp_path / "cache")]
    sampling = ["--num-samples", "30", "--batch-size", "30", "--sampler", "dpmpp", "--timestep-respacing",
                "trailing4"]
    # --confirm 2 at the sweep's own sample count re-samples both points: the same seed and labels, the same scores.
    grid = ["--guidance-scales", "1,4", "--max-accuracy-gap", "1", "--extend", "0"]
    assert tune(["--run", str(run), *grid, "--confirm", "2", "--confirm-samples", "30", *sampling, *eval_flags,
                 *common]) == 0
    result = json.loads((run / "guidance.json").read_text())
    sweep = result["sweep"]
    assert [(p["guidance_scale"], p["guide_scale"]) for p in sweep] == [(1.0, 1.0), (4.0, 1.0)]  # no guide here
    best = min(sweep, key=lambda p: p["fid"])  # every point is within a gap of 1
    assert (result["guidance_scale"], result["fid"]) == (best["guidance_scale"], best["fid"])
    def scores(points):
        return [{k: v for k, v in p.items() if k != "seconds"} for p in points]

    assert scores(result["confirmed"]) == scores(sorted(sweep, key=lambda p: p["fid"]))
    assert result["confirm_samples"] == 30
    assert result["checkpoint"] == "step_0000002" and result["guide"] is None and result["chosen_within_gap"]
    assert result["grid_edge_notes"] == edge_notes(Point(**best), [1.0, 4.0], [1.0])
    assert DEFAULT_GUIDANCE_SCALE not in (1.0, 4.0)  # so that the check below tells the file's scale from it
    assert "| guidance | guide | FID |" in capsys.readouterr().out

    # The sweep with the U-Net in onnxruntime: images within a grey level of torch's, so nearly the same scores.
    assert tune(["--run", str(run), *grid, "--backend", "onnx", "--out", str(tmp_path / "onnx.json"), *sampling,
                 *eval_flags, *common]) == 0
    by_onnx = json.loads((tmp_path / "onnx.json").read_text())
    assert (result["backend"], by_onnx["backend"]) == ("torch", "onnx")
    for p, q in zip(sweep, by_onnx["sweep"], strict=True):
        assert (q["guidance_scale"], q["class_accuracy"]) == (p["guidance_scale"], p["class_accuracy"])
        assert q["fid"] == pytest.approx(p["fid"], rel=0.02)

    # sample.py without guidance flags now samples at the tuned scale: the images the tuner scored, which
    # evaluate.py scores the same.
    assert sample(["--run", str(run), *sampling, "--out", str(tmp_path / "s"), *common]) == 0
    info = json.loads((tmp_path / "s" / "info.json").read_text())
    assert info["guidance_scale"] == result["guidance_scale"]
    assert info["guidance_source"] == str(run / "guidance.json")
    assert evaluate(["--samples", str(tmp_path / "s" / "samples_30x16x16x1.npz"), "--run", str(run),
                     "--num-recon", "0", "--out", str(tmp_path / "e"), *eval_flags, *common]) == 0
    scored = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert scored["fid"] == pytest.approx(result["fid"], rel=1e-9)
    assert scored["kid"]["mean"] == pytest.approx(result["kid"], rel=1e-9, abs=1e-12)
    assert scored["class_accuracy"]["samples"] == pytest.approx(result["class_accuracy"])

    from pipelines.package_run import main as package  # the tuned scales travel with a packed run

    assert package(["--run", str(run), "--out", str(tmp_path / "packed")]) == 0
    assert sample(["--run", str(tmp_path / "packed"), *sampling, "--out", str(tmp_path / "p"), *common]) == 0
    packed = np.load(tmp_path / "p" / "samples_30x16x16x1.npz")["arr_0"]
    np.testing.assert_array_equal(packed, np.load(tmp_path / "s" / "samples_30x16x16x1.npz")["arr_0"])


def test_user_errors_are_explained(tiny_pipeline_run, banded_folder, tmp_path, capsys):
    flags = ["--run", str(tiny_pipeline_run), "--data", str(banded_folder), "--cache-dir", str(tmp_path / "c"),
             "--no-progress", "--out", str(tmp_path / "g.json")]
    assert tune([*flags, "--guide-scales", "1.2,1.4"]) == 2
    assert "--guide-scales needs a guide model" in capsys.readouterr().err
    assert tune([*flags, "--guidance-scales", "2"]) == 2
    assert "nothing to tune" in capsys.readouterr().err
    for flag, value, need in (("--num-samples", "1", ">= 2"), ("--confirm-samples", "1", ">= 2"),
                              ("--confirm", "-1", ">= 0"), ("--extend", "-1", ">= 0")):
        with pytest.raises(SystemExit) as exit_info:  # refused when parsed, before any model is loaded
            tune([*flags, flag, value])
        assert exit_info.value.code == 2
        assert f"argument {flag}: {value} is out of range: need {need}" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists() and not (tiny_pipeline_run / "guidance.json").exists()
