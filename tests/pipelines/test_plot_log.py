"""pipelines/plot_log.py: a PNG from a training log, clear errors when there is nothing to plot."""

from __future__ import annotations

import pytest
from PIL import Image

from pipelines.plot_log import main, read_log

HEADER = "step,samples,loss,mse,mse_q0,mse_q1,mse_q2,mse_q3\n"


def test_plots_the_log_beside_it(tmp_path, capsys):
    log = tmp_path / "diffusion" / "log.csv"
    log.parent.mkdir()
    log.write_text(HEADER + "".join(f"{s},{s * 8},{1 / s},{1 / s},{2 / s},{1 / s},{0.5 / s},{0.1 / s}\n"
                                    for s in (10, 20, 30)))
    assert read_log(log)["mse_q3"] == pytest.approx([0.01, 0.005, 0.1 / 30])
    assert main(["--run", str(tmp_path)]) == 0
    with Image.open(tmp_path / "diffusion" / "loss.png") as png:
        assert png.format == "PNG" and png.size[0] > 300
    assert "3 logged steps up to step 30" in capsys.readouterr().out


def test_missing_or_empty_log_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="train first"):
        main(["--run", str(tmp_path)])
    (tmp_path / "log.csv").write_text(HEADER)
    with pytest.raises(SystemExit, match="no logged steps yet"):
        main(["--log", str(tmp_path / "log.csv")])
