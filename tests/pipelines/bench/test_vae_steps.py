"""pipelines/bench/vae_steps.py: times each SSIM variant and each norm / XLA / precision it names, and leaves
vae.losses and Keras' dtype policy as it found them."""

import keras

from pipelines.bench.vae_steps import main as bench
from vae import losses


def _rows(capsys) -> list[list[str]]:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in line.strip("| ").split(" | ")] for line in lines]


def test_each_case_gets_a_row_and_the_loss_is_restored(capsys):
    matrix_form = losses.ssim_loss
    assert bench(["--ssim-weights", "2.6", "--tf-image-ssim", "--batch-size", "2", "--steps", "1", "--repeats", "2",
                  "--warmup", "0"]) == 0
    rows = _rows(capsys)
    assert [row[:2] for row in rows] == [["2.6", "vae.losses (matrix form)"], ["2.6", "tf.image.ssim"]]
    assert all(float(row[5]) > 0 and len(row[8].split(",")) == 2 for row in rows)
    assert losses.ssim_loss is matrix_form


def test_every_norm_xla_precision_combination_is_timed(capsys):
    assert bench(["--preset", "tiny", "--ssim-weights", "0", "--norms", "group,encoder", "--xla", "off",
                  "--precisions", "fp32,bf16", "--batch-size", "2", "--steps", "1", "--repeats", "1",
                  "--warmup", "0"]) == 0
    rows = _rows(capsys)
    assert [(row[2], row[3], row[4]) for row in rows] == [
        ("group", "off", "fp32"), ("group", "off", "bf16"), ("encoder", "off", "fp32"), ("encoder", "off", "bf16")]
    # Each figure follows from the step time, which is printed to 0.1 ms: compare within that rounding.
    ms = [float(row[5]) for row in rows]
    assert all(2000 / (t + 0.05) - 0.05 <= float(row[6]) <= 2000 / (t - 0.05) + 0.05  # images/s of batch 2
               for row, t in zip(rows, ms, strict=True))
    assert rows[0][7] == "1.00x"
    assert all((ms[0] - 0.05) / (t + 0.05) - 0.005 <= float(row[7][:-1]) <= (ms[0] + 0.05) / (t - 0.05) + 0.005
               for row, t in zip(rows, ms, strict=True))
    assert keras.config.dtype_policy().name == "float32"


def test_bad_choices_are_explained(capsys):
    assert bench(["--ssim-weights", "-1"]) == 2
    assert "give one or more weights >= 0" in capsys.readouterr().err
    assert bench(["--xla", "maybe"]) == 2
    assert "--xla takes on/off" in capsys.readouterr().err
    assert bench(["--precisions", "fp16"]) == 2
    assert "precision must be one of" in capsys.readouterr().err
