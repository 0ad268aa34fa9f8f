"""pipelines/tune_decoder.py's refusals: each says what is wrong and what to run (no training here)."""

import pytest

from pipelines.tune_decoder import main
from runfs import write_json


def test_bad_settings_are_explained(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # refused when parsed, before anything is loaded
        main(["--run", str(tmp_path), "--latent-noise", "-1"])
    assert exit_info.value.code == 2
    assert "argument --latent-noise: -1 is out of range: need >= 0" in capsys.readouterr().err


def test_a_run_without_latents_is_told_to_encode_first(tmp_path):
    with pytest.raises(SystemExit, match="pipelines/encode.py --run"):
        main(["--run", str(tmp_path)])


def test_an_existing_tuned_decoder_is_kept_unless_overwrite(tmp_path):
    (tmp_path / "vae" / "decoder").mkdir(parents=True)
    write_json(tmp_path / "vae" / "decoder" / "meta.json", {"base_model": "x"})
    with pytest.raises(SystemExit, match="--overwrite"):
        main(["--run", str(tmp_path)])
