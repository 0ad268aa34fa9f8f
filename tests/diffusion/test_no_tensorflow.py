"""The sampling path never imports TensorFlow or Keras (checked in a fresh interpreter, whatever else ran)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, torch
import diffusion
from diffusion import SpacedDiffusion, space_timesteps, get_named_beta_schedule, ModelMeanType, ModelVarType, LossType
from diffusion.guidance import ClassifierFreeGuidance, classifier_cond_fn
d = SpacedDiffusion(space_timesteps(100, "trailing4"), betas=get_named_beta_schedule("cosine", 100),
                    model_mean_type=ModelMeanType.EPSILON, model_var_type=ModelVarType.FIXED_SMALL,
                    loss_type=LossType.MSE)
model = lambda x, t: 0.1 * x
for loop in (d.p_sample_loop, d.ddim_sample_loop, d.dpm_solver_pp_sample_loop):
    loop(model, (1, 1, 2, 2))
d.training_losses(model, torch.zeros(1, 1, 2, 2), torch.tensor([1]))
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print("LOADED:" + ",".join(bad))
"""


def test_diffusion_never_imports_tensorflow_or_keras():
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED:\n" in result.stdout or result.stdout.strip() == "LOADED:", result.stdout
