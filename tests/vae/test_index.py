"""The file index of a folder source: determinism, a split that depends on names only, labels, staleness."""

import json

import numpy as np
import pytest
from PIL import Image

from vae.data.index import FileIndex, assign_splits, open_index


def save(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for i in range(10):
        save(root / ("cats" if i % 2 else "dogs") / f"{i:02d}.png", 20 * i)
    return root


def test_the_index_is_a_function_of_the_folder_and_the_seed(folder):
    a = FileIndex.build(folder, seed=3, val_fraction=0.3)
    b = FileIndex.build(folder, seed=3, val_fraction=0.3)
    assert a.to_dict() == b.to_dict()
    assert a.files[:2] == ["cats/01.png", "cats/03.png"]  # relative POSIX paths, sorted
    assert a.count("val") == 3 and a.count("train") == 7
    assert a.class_names == ["cats", "dogs"]
    assert a.split_labels("train").tolist() == [a.labels[i] for i, s in enumerate(a.splits) if s == "train"]
    other = FileIndex.build(folder, seed=4, val_fraction=0.3)
    assert other.paths("val") != a.paths("val")  # another seed, another split (of the same files)


def test_adding_files_moves_only_the_files_at_the_split_threshold():
    names = [f"img{i:03d}.png" for i in range(200)]
    before = dict(zip(names, assign_splits(names, 0, 0.1), strict=True))
    added = [f"new{i:03d}.png" for i in range(20)]
    after = dict(zip(names + added, assign_splits(names + added, 0, 0.1), strict=True))
    moved = [n for n in names if before[n] != after[n]]
    new_in_val = sum(after[n] == "val" for n in added)
    # validation = the 22 lowest hashes of 220 (20 of 200 before): an old file crosses only where the new files take
    # (or leave) places at the threshold, so |new files in val - 2| old files move, nothing else
    assert sum(s == "val" for s in after.values()) == 22
    assert len(moved) == abs(new_in_val - 2) < 20


def test_labels_from_filename_prefixes_and_none(tmp_path):
    for name in ("cat_1.png", "cat_2.png", "dog_1.png", "dog_2.webp"):
        save(tmp_path / name)
    index = FileIndex.build(tmp_path, seed=0, val_fraction=0.25, folder_labels="prefix")
    assert index.class_names == ["cat", "dog"]
    assert dict(zip(index.files, index.labels, strict=True)) == {"cat_1.png": 0, "cat_2.png": 0, "dog_1.png": 1,
                                                                 "dog_2.webp": 1}
    assert FileIndex.build(tmp_path, seed=0, val_fraction=0.25, folder_labels="none").labels is None


def test_limit_takes_the_first_files_and_marks_the_rest_unused(folder):
    index = FileIndex.build(folder, seed=0, val_fraction=0.25, limit=4)
    assert index.count("train") + index.count("val") == 4
    assert index.splits[4:] == ["unused"] * 6 and index.files[4:] == sorted(index.files)[4:]


def test_written_once_then_read_back_unchanged(folder, tmp_path):
    data_dir = tmp_path / "run" / "data"
    first = open_index(folder, data_dir, seed=1, val_fraction=0.2)
    (path,) = data_dir.glob("*.index.json")
    assert path.name.startswith("images-")
    stored = json.loads(path.read_text())
    assert stored["counts"] == {"train": 8, "val": 2} and stored["files"][0] == ["cats/01.png", first.splits[0], 0]
    mtime = path.stat().st_mtime_ns
    again = open_index(folder, data_dir, seed=1, val_fraction=0.2)  # a resumed run: the same split, file untouched
    assert again.to_dict() == first.to_dict() and path.stat().st_mtime_ns == mtime
    open_index(folder, data_dir, seed=2, val_fraction=0.2)  # other settings: an index of its own
    assert len(list(data_dir.glob("*.index.json"))) == 2


def test_a_folder_that_changed_is_refused_with_how_to_rebuild(folder, tmp_path):
    data_dir = tmp_path / "run" / "data"
    open_index(folder, data_dir, seed=0, val_fraction=0.2)
    save(folder / "cats" / "99.png")
    (folder / "dogs" / "00.png").unlink()
    with pytest.raises(ValueError, match=r"no longer matches the folder .*: 1 added \(cats/99\.png\); 1 removed "
                                         r"\(dogs/00\.png\).*rebuild the index with --rebuild-index"):
        open_index(folder, data_dir, seed=0, val_fraction=0.2)
    rebuilt = open_index(folder, data_dir, seed=0, val_fraction=0.2, rebuild=True)
    assert "cats/99.png" in rebuilt.files and "dogs/00.png" not in rebuilt.files
    assert open_index(folder, data_dir, seed=0, val_fraction=0.2).to_dict() == rebuilt.to_dict()
