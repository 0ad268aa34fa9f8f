"""What kill -9 leaves behind is removed by the next write; a folder replace is recoverable at every point; a full
disk and an unwritable folder are named as such (issue 33, items 4 and 5)."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runfs import atomic as atomic_module
from runfs import atomic_dir, atomic_path, write_json
from runfs.errors import DiskFullError, NotWritableError
from runfs.leftovers import find_leftovers, recover, sweep, temp_prefix
from runfs.writable import check_writable

ROOT = Path(__file__).resolve().parents[2]


def dead_pid() -> int:
    """The id of a process that has finished (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_write_removes_what_killed_writers_left_and_keeps_live_ones(tmp_path):
    tag = temp_prefix(tmp_path / "latents").rsplit("-", 2)[0]  # ".latents.HOST"
    dead = tmp_path / f"{tag}-{dead_pid()}-abcd1234.tmp"  # a killed encode.py's half-written latents
    (dead / "sub").mkdir(parents=True)
    older = tmp_path / ".bridge.k2j4h5g6.tmp"  # the unnamed form written before temporaries said who made them
    older.mkdir()
    live = tmp_path / f"{tag}-{os.getppid()}-zzzz9999.tmp"  # a running process's: never touched
    live.mkdir()
    keras_file = tmp_path / f".encoder.keras.{tag.split('.')[-1]}-{dead_pid()}-q1w2e3r4.keras.tmp"
    keras_file.write_bytes(b"half")
    assert find_leftovers(tmp_path) == sorted([dead, older, live, keras_file])
    with atomic_dir(tmp_path / "latents") as d:
        (d / "meta.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["latents", live.name])


def test_a_replace_killed_between_its_renames_is_put_back(tmp_path):
    target = tmp_path / "checkpoint"
    with atomic_dir(target) as d:
        (d / "w").write_text("1")
    os.replace(target, tmp_path / ".checkpoint.old")  # what the non-exchange replace leaves when killed halfway
    assert recover(target) and (target / "w").read_text() == "1"
    os.replace(target, tmp_path / ".checkpoint.old")
    assert sweep(tmp_path) == [f"restored {target} from .checkpoint.old (a replace was interrupted)"]
    (tmp_path / ".checkpoint.old").mkdir()  # a finished replace whose clean-up was killed: the old copy goes
    assert sweep(tmp_path)[0].startswith(f"removed {tmp_path / '.checkpoint.old'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


@pytest.mark.parametrize("exchange", [True, False])
def test_sigkill_inside_a_folder_replace_leaves_a_complete_folder(tmp_path, exchange):
    """A process killed (SIGKILL, KTLDM_KILL_AT) in the middle of replacing a folder: the target is the old or the
    new folder whole, or (without an atomic exchange) put back from .NAME.old by the next reader; nothing stays."""
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "w").write_text("old")
    script = ("import sys; from runfs import atomic, atomic_dir\n"
              f"atomic._renameat2 = atomic._renameat2 if {exchange} else None\n"
              "with atomic_dir(sys.argv[1]) as d:\n    (d / 'w').write_text('new')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), atomic_module.KILL_AT_ENV: "replace:1"}
    done = subprocess.run([sys.executable, "-c", script, str(target)], env=env, cwd=ROOT)
    assert done.returncode == -9  # killed where it was told to be
    if exchange:
        assert (target / "w").read_text() == "new"  # the exchange happened; only the old copy was left
    else:
        assert not target.exists() and (tmp_path / ".ckpt.old" / "w").read_text() == "old"
    assert find_leftovers(tmp_path)  # something was left behind, which the next process's first write removes:
    sweep(tmp_path)
    assert (target / "w").read_text() == ("new" if exchange else "old") and find_leftovers(tmp_path) == []


def test_the_exchange_keeps_the_target_complete_at_every_moment(tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "w").write_text("old")
    seen = []
    monkeypatch.setattr(atomic_module, "fault_point", lambda point: seen.append((target / "w").read_text()))
    with atomic_dir(target) as d:
        (d / "w").write_text("new")
    assert seen == ["old", "new"] and (target / "w").read_text() == "new"  # before and after the swap


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4480 vs 4374"),  # torch.save
    RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed"),
])
def test_a_full_disk_is_named_and_nothing_half_written_stays(tmp_path, error):
    with pytest.raises(DiskFullError, match=r"could not write .*state.pt: the disk is full \(.* MiB free where it "
                                            r"goes;.*Nothing half-written was left behind: free some space"):
        with atomic_path(tmp_path / "state.pt") as tmp:
            tmp.write_bytes(b"partial")
            raise error
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DiskFullError, match="the disk is full"), atomic_dir(tmp_path / "step_0000010") as d:
        (d / "model.safetensors").write_bytes(b"x")
        raise error
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(ValueError, match="^bad$"), atomic_path(tmp_path / "x"):
        raise ValueError("bad")


def test_check_writable_names_the_folder_and_the_reason(tmp_path):
    assert check_writable(tmp_path / "new" / "samples") == tmp_path / "new" / "samples"
    assert not (tmp_path / "new").exists()  # the check creates nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotWritableError, match=r"cannot write the samples to .*file/samples \(.*is a file"):
        check_writable(tmp_path / "file" / "samples", "the samples")
    with pytest.raises(NotWritableError, match=r"cannot write the output to /sys/ktl \(Permission denied in /sys\)"):
        check_writable("/sys/ktl")  # a read-only place even for root


def test_write_json_goes_through_the_same_guard(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskFullError, match="info.json: the disk is full"):
        write_json(tmp_path / "info.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []
