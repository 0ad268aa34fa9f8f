"""RUN/guidance.json: which scales sample.py takes from it, from flags, or from the built-in defaults, and when."""

import pytest

from diffusion.config import DEFAULT_GUIDANCE_SCALE, DEFAULT_GUIDANCE_SCALE_WITH_GUIDE, DEFAULT_GUIDE_SCALE
from diffusion.tuned_guidance import GUIDANCE_FILE, read_tuned, resolve_guidance
from runfs import write_json


def tuned(run, guide="step_0000800", checkpoint="step_0005200", w=1.25, s=1.3):
    write_json(run / GUIDANCE_FILE, {"guidance_scale": w, "guide_scale": s, "checkpoint": checkpoint, "guide": guide})


def test_without_a_file_the_built_in_scales_apply(tmp_path):
    alone = resolve_guidance(tmp_path, "step_0002600", None, null_class=True)
    assert (alone.guidance_scale, alone.guide_scale, alone.source, alone.note) == (
        DEFAULT_GUIDANCE_SCALE, 1.0, "built-in", None)
    guided = resolve_guidance(tmp_path, "step_0002600", "step_0000800", null_class=True)
    assert (guided.guidance_scale, guided.guide_scale) == (DEFAULT_GUIDANCE_SCALE_WITH_GUIDE, DEFAULT_GUIDE_SCALE)
    unconditional = resolve_guidance(tmp_path, "step_0002600", None, null_class=False)
    assert (unconditional.guidance_scale, unconditional.guide_scale) == (1.0, 1.0)


def test_the_tuned_scales_apply_to_their_checkpoint_and_flags_win(tmp_path):
    tuned(tmp_path)
    choice = resolve_guidance(tmp_path, "step_0005200", "step_0000800", null_class=True)
    assert (choice.guidance_scale, choice.guide_scale, choice.note) == (1.25, 1.3, None)
    assert choice.source == str(tmp_path / GUIDANCE_FILE)
    no_file = resolve_guidance(None, "step_0005200", "step_0000800", null_class=True)  # e.g. sample.py --pixels
    assert (no_file.guidance_scale, no_file.source) == (DEFAULT_GUIDANCE_SCALE_WITH_GUIDE, "built-in")
    one_flag = resolve_guidance(tmp_path, "step_0005200", "step_0000800", True, guidance_scale=3.0)
    assert (one_flag.guidance_scale, one_flag.guide_scale) == (3.0, 1.3)
    assert one_flag.source == f"flags and {tmp_path / GUIDANCE_FILE}"
    both = resolve_guidance(tmp_path, "step_0005200", "step_0000800", True, guidance_scale=3.0, guide_scale=1.0)
    assert (both.guidance_scale, both.guide_scale, both.source) == (3.0, 1.0, "flags")


def test_a_file_tuned_on_another_checkpoint_is_used_with_a_note(tmp_path):
    tuned(tmp_path)
    choice = resolve_guidance(tmp_path, "step_0007800", "step_0000800", null_class=True)
    assert (choice.guidance_scale, choice.guide_scale) == (1.25, 1.3)
    assert "tuned on step_0005200" in choice.note and "this is step_0007800" in choice.note
    assert "tune_guidance.py --run" in choice.note


def test_a_file_tuned_with_a_guide_does_not_apply_without_one_and_vice_versa(tmp_path):
    tuned(tmp_path)
    choice = resolve_guidance(tmp_path, "step_0005200", None, null_class=True)
    assert (choice.guidance_scale, choice.guide_scale, choice.source) == (DEFAULT_GUIDANCE_SCALE, 1.0, "built-in")
    assert "tuned with a guide model" in choice.note and "runs without one" in choice.note
    tuned(tmp_path, guide=None, w=1.5, s=1.0)
    choice = resolve_guidance(tmp_path, "step_0005200", "step_0000800", null_class=True)
    assert (choice.guidance_scale, choice.guide_scale) == (DEFAULT_GUIDANCE_SCALE_WITH_GUIDE, DEFAULT_GUIDE_SCALE)
    assert "tuned without a guide model" in choice.note
    assert resolve_guidance(tmp_path, "step_0005200", None, null_class=True).guidance_scale == 1.5


def test_a_malformed_file_is_explained(tmp_path):
    write_json(tmp_path / GUIDANCE_FILE, {"guidance_scale": 2.0})
    with pytest.raises(ValueError, match="not a guidance file of tune_guidance.py.*remake it"):
        read_tuned(tmp_path)
    assert read_tuned(tmp_path / "elsewhere") is None
