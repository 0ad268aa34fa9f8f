"""What the loop minimises: the diffusion loss, or the noisy-input classifier's cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffusion.gaussian_diffusion import ModelMeanType
from diffusion.training.loop import Objective

# The min-SNR weight of the mse term in each parameterisation, from SNR_t and min(SNR_t, gamma).
_MIN_SNR_WEIGHTS = {
    ModelMeanType.START_X: lambda snr, clipped: clipped,
    ModelMeanType.EPSILON: lambda snr, clipped: clipped / snr,
    ModelMeanType.VELOCITY: lambda snr, clipped: clipped / (snr + 1.0),
}


def _check_min_snr(mean_type: ModelMeanType) -> None:
    if mean_type not in _MIN_SNR_WEIGHTS:
        raise ValueError(f"--snr-gamma needs an eps, x0 or v parameterisation, not {mean_type.name.lower()}")


def min_snr_weight(alphas_cumprod, t: torch.Tensor, gamma: float, mean_type: ModelMeanType) -> torch.Tensor:
    """Min-SNR-gamma weight of each example's mse term [N] (Hang et al. 2023, "Efficient Diffusion Training via
    Min-SNR Weighting Strategy", sec. 3.4): min(SNR_t, gamma) on the x0 loss, which is min(SNR_t, gamma) / SNR_t
    on the eps loss and min(SNR_t, gamma) / (SNR_t + 1) on the v loss; SNR_t = alpha_bar_t / (1 - alpha_bar_t)."""
    _check_min_snr(mean_type)
    alpha_bar = torch.as_tensor(alphas_cumprod, dtype=torch.float64, device=t.device)[t]
    snr = alpha_bar / (1.0 - alpha_bar)
    return _MIN_SNR_WEIGHTS[mean_type](snr, snr.clamp(max=gamma)).float()


def diffusion_objective(diffusion, snr_gamma: float = 0.0) -> Objective:
    """guided-diffusion's `training_losses` (loss, plus mse/vb where the loss type has them); with `snr_gamma` > 0
    the mse term of "loss" is min-SNR weighted ("mse" itself stays unweighted, so logs stay comparable)."""
    if snr_gamma > 0:
        if diffusion.loss_type.is_vb():
            raise ValueError("--snr-gamma weights the mse loss; it cannot be combined with --use-kl")
        _check_min_snr(diffusion.model_mean_type)

    def losses(model, x_start, t, y, noise):
        terms = diffusion.training_losses(model, x_start, t, model_kwargs={} if y is None else {"y": y}, noise=noise)
        if snr_gamma > 0:
            weight = min_snr_weight(diffusion.alphas_cumprod, t, snr_gamma, diffusion.model_mean_type)
            terms["loss"] = weight * terms["mse"] + terms["vb"] if "vb" in terms else weight * terms["mse"]
        return terms

    return losses


def classifier_objective(diffusion) -> Objective:
    """Cross-entropy of the classifier on x_t = q_sample(x_start, t) (the reference's classifier_train.py)."""

    def losses(model, x_start, t, y, noise):
        if y is None:
            raise ValueError("the guidance classifier needs labelled data; these latents have no labels")
        logits = model(diffusion.q_sample(x_start, t, noise=noise), t)
        return {"loss": F.cross_entropy(logits.float(), y, reduction="none"),
                "acc": (logits.argmax(dim=-1) == y).float()}

    return losses


@torch.no_grad()
def classifier_accuracy(model, diffusion, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> float:
    """Share of `x` (noised to `t`) that the classifier labels correctly."""
    logits = model(diffusion.q_sample(x, t), t)
    return float((logits.argmax(dim=-1) == y).float().mean())
