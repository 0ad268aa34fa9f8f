"""What the loop minimises: the diffusion loss, or the noisy-input classifier's cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffusion.training.loop import Objective


def diffusion_objective(diffusion) -> Objective:
    """guided-diffusion's `training_losses` (loss, plus mse/vb where the loss type has them)."""

    def losses(model, x_start, t, y, noise):
        return diffusion.training_losses(model, x_start, t, model_kwargs={} if y is None else {"y": y}, noise=noise)

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
