import json

import numpy as np
import pytest

from runfs import RunPaths, atomic_dir, atomic_path, file_digest, read_json, write_json, write_npy


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporary left behind
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_dir_swaps_whole_folder(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as d:
        (d / "w").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as d:
            (d / "w").write_text("2")
            raise KeyboardInterrupt
    assert (target / "w").read_text() == "1"
    with atomic_dir(target) as d:
        (d / "w").write_text("3")
    assert (target / "w").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_json_and_npy_round_trip(tmp_path):
    write_json(tmp_path / "c.json", {"a": [1, 2], "b": "x"})
    assert read_json(tmp_path / "c.json") == {"a": [1, 2], "b": "x"}
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_npy(tmp_path / "x.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), arr)


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*corrupt"):
        read_json(tmp_path / "bad.json")


def test_digest_changes_with_content_and_layout(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "a").write_bytes(b"1")
    first = file_digest(d)
    (d / "a").write_bytes(b"2")
    assert file_digest(d) != first
    assert RunPaths(tmp_path).latents == tmp_path / "latents"
    assert json.loads(json.dumps(str(RunPaths("r").bridge))) == "r/bridge"


def test_config_mixin_round_trip_and_unknown_keys(tmp_path):
    from dataclasses import dataclass

    from runfs import ConfigMixin

    @dataclass
    class Cfg(ConfigMixin):
        lr: float = 1e-4
        name: str = "x"

    cfg = Cfg(lr=2e-4)
    cfg.save(tmp_path / "c.json")
    assert Cfg.load(tmp_path / "c.json") == cfg
    assert cfg.replace(name="y") == Cfg(lr=2e-4, name="y")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bogus'\].*valid keys are \['lr', 'name'\]"):
        Cfg.from_dict({"lr": 1.0, "bogus": 2})


def test_written_files_and_folders_get_umask_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "f.json", {})
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("1")
            (d / "sub").mkdir()
            (d / "sub" / "owner_only").write_text("2")
            os.chmod(d / "sub" / "owner_only", 0o600)  # what safetensors' save_file leaves
            (d / "tool").write_text("#!/bin/sh\n")
            os.chmod(d / "tool", 0o700)
    finally:
        os.umask(mask)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d" / "x").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d" / "sub" / "owner_only").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d" / "tool").stat().st_mode & 0o777 == 0o755
