"""pipelines/bench/vae_steps.py: times each SSIM variant it names, and leaves vae.losses as it found it."""

from pipelines.bench.vae_steps import main as bench
from vae import losses


def test_each_case_gets_a_row_and_the_loss_is_restored(capsys):
    matrix_form = losses.ssim_loss
    assert bench(["--ssim-weights", "2.6", "--tf-image-ssim", "--batch-size", "2", "--steps", "1", "--repeats", "2",
                  "--warmup", "0"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[:2] for row in rows] == [["| 2.6", "vae.losses (matrix form)"], ["| 2.6", "tf.image.ssim"]]
    assert all(float(row.split(" | ")[2]) > 0 and len(row.split(" | ")[3].split(",")) == 2 for row in rows)
    assert losses.ssim_loss is matrix_form


def test_bad_weights_are_explained(capsys):
    assert bench(["--ssim-weights", "-1"]) == 2
    assert "give one or more weights >= 0" in capsys.readouterr().err
