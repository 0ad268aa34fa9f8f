"""train_vae.py's resume rule: rerunning the same command continues RUN/vae/checkpoint without --resume."""

import argparse

import pytest

from pipelines.resume_vae import decide_resume
from runfs import write_json

FLAGS = ("lr", "epochs", "channel_mult")


def args(run, **given):
    return argparse.Namespace(run=str(run), resume=False, overwrite=False, **{f: given.get(f) for f in FLAGS})


@pytest.fixture
def run_with_checkpoint(tmp_path):
    write_json(tmp_path / "vae" / "config.json", {"lr": 0.001, "epochs": 3, "channel_mult": [1, 2, 2]})
    write_json(tmp_path / "vae" / "checkpoint" / "meta.json", {"step": 7})
    return tmp_path


def test_an_existing_checkpoint_is_resumed_with_a_line_saying_so(run_with_checkpoint, capsys):
    assert decide_resume(args(run_with_checkpoint), FLAGS)
    assert f"resuming {run_with_checkpoint / 'vae' / 'checkpoint'} at step 7 with its saved config" in \
        capsys.readouterr().out
    # the same flags as before, or new stopping flags, resume too
    assert decide_resume(args(run_with_checkpoint, lr=0.001, channel_mult=(1, 2, 2), epochs=9), FLAGS)


def test_no_checkpoint_or_overwrite_starts_anew(tmp_path, run_with_checkpoint):
    assert not decide_resume(args(tmp_path / "fresh"), FLAGS)
    overwrite = args(run_with_checkpoint)
    overwrite.overwrite = True
    assert not decide_resume(overwrite, FLAGS)


def test_flags_that_contradict_the_checkpoint_are_refused(run_with_checkpoint):
    with pytest.raises(SystemExit, match=r"holds a checkpoint trained with other settings: --lr 0.01 \(the "
                                         r"checkpoint has 0.001\); --channel-mult \[1, 2\] \(the checkpoint has "
                                         r"\[1, 2, 2\]\).*--overwrite to start again"):
        decide_resume(args(run_with_checkpoint, lr=0.01, channel_mult=(1, 2)), FLAGS)


def test_a_checkpoint_left_as_old_by_a_killed_replace_is_found(run_with_checkpoint, capsys):
    vae = run_with_checkpoint / "vae"
    (vae / "checkpoint").rename(vae / ".checkpoint.old")
    assert decide_resume(args(run_with_checkpoint), FLAGS) and (vae / "checkpoint" / "meta.json").is_file()
