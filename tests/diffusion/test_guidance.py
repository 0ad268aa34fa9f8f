"""Classifier-free guidance and autoguidance wrappers, and the classifier-gradient cond_fn."""

import pytest
import torch
from torch import nn

from diffusion import LossType, ModelMeanType, ModelVarType, SpacedDiffusion, get_named_beta_schedule, space_timesteps
from diffusion.guidance import AutoGuidance, ClassifierFreeGuidance, Guidance, classifier_cond_fn


class ClassModel(nn.Module):
    """Class-conditional toy denoiser with num_classes + 1 embeddings (the last = null); counts forwards."""

    def __init__(self, out_channels=2, num_classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, out_channels, 1)
        self.emb = nn.Embedding(num_classes + 1, out_channels)
        self.batches = []

    def forward(self, x, t, y=None, scale=None):
        self.batches.append(x.shape[0])
        out = self.conv(x) + self.emb(y)[:, :, None, None] + 0.001 * t.float().view(-1, 1, 1, 1)
        return out if scale is None else out * scale.view(-1, 1, 1, 1)


@pytest.mark.parametrize("out_channels", [2, 4])
def test_cfg_at_scale_one_is_the_conditional_model(out_channels):
    model = ClassModel(out_channels)
    x, t, y = torch.randn(5, 2, 3, 3), torch.arange(5), torch.tensor([0, 1, 2, 1, 0])
    with torch.no_grad():
        guided = ClassifierFreeGuidance(model, 1.0, null_label=3)(x, t, y=y)
        assert model.batches == [10]  # one batched forward of conditional + unconditional
        assert torch.equal(guided, model(x, t, y=y))


@pytest.mark.parametrize("out_channels", [2, 4])
def test_cfg_combines_the_mean_channels_and_keeps_conditional_variance(out_channels):
    model = ClassModel(out_channels)
    x, t, y = torch.randn(4, 2, 3, 3), torch.arange(4), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        cond, uncond = model(x, t, y=y), model(x, t, y=torch.full_like(y, 3))
        guided = ClassifierFreeGuidance(model, 3.0, null_label=3)(x, t, y=y)
    torch.testing.assert_close(guided[:, :2], uncond[:, :2] + 3.0 * (cond[:, :2] - uncond[:, :2]))
    assert torch.equal(guided[:, 2:], cond[:, 2:])


def test_cfg_duplicates_per_example_kwargs_and_needs_labels():
    model = ClassModel()
    x, t, y = torch.randn(2, 2, 1, 1), torch.arange(2), torch.tensor([0, 1])
    scale = torch.tensor([1.0, 2.0])
    with torch.no_grad():
        guided = ClassifierFreeGuidance(model, 1.0, null_label=3)(x, t, y=y, scale=scale)
        assert torch.equal(guided, model(x, t, y=y, scale=scale))
    with pytest.raises(ValueError, match="needs class labels: pass model_kwargs"):
        ClassifierFreeGuidance(model, 2.0, null_label=3)(x, t)


def test_cfg_guides_only_inside_its_interval():
    model = ClassModel(4)
    x, y = torch.randn(4, 2, 3, 3), torch.tensor([0, 1, 2, 1])
    t = torch.tensor([99, 100, 600, 601])  # the interval's ends are inside
    with torch.no_grad():
        cond, uncond = model(x, t, y=y), model(x, t, y=torch.full_like(y, 3))
        model.batches.clear()
        guided = ClassifierFreeGuidance(model, 3.0, null_label=3, interval=(100, 600))(x, t, y=y)
        full = uncond[:, :2] + 3.0 * (cond[:, :2] - uncond[:, :2])
    torch.testing.assert_close(guided[1:3, :2], full[1:3])
    torch.testing.assert_close(guided[[0, 3], :2], cond[[0, 3], :2])  # scale 1 outside: the conditional output
    assert torch.equal(guided[:, 2:], cond[:, 2:])


def test_cfg_outside_its_interval_skips_the_unconditional_forward():
    model = ClassModel()
    x, t, y = torch.randn(3, 2, 2, 2), torch.full((3,), 900), torch.tensor([0, 1, 2])
    with torch.no_grad():
        guided = ClassifierFreeGuidance(model, 3.0, null_label=3, interval=(0, 800))(x, t, y=y)
        assert model.batches == [3]  # one conditional forward, not 2 x 3
        assert torch.equal(guided, model(x, t, y=y))
    with pytest.raises(ValueError, match="low end must not exceed the high end"):
        ClassifierFreeGuidance(model, 3.0, null_label=3, interval=(800, 0))


def test_cfg_samples_through_a_spaced_diffusion_like_the_conditional_model_at_scale_one():
    d = SpacedDiffusion(space_timesteps(100, "ddim5"), betas=get_named_beta_schedule("cosine", 100),
                        model_mean_type=ModelMeanType.EPSILON, model_var_type=ModelVarType.LEARNED_RANGE,
                        loss_type=LossType.MSE)
    model = ClassModel(4)
    with torch.no_grad():
        model.conv.weight.mul_(0.1)
        model.emb.weight.clamp_(-1, 1)  # keep the variance channels inside LEARNED_RANGE's [-1, 1]
    kwargs = dict(model_kwargs={"y": torch.tensor([0, 1, 2])}, generator=None)
    torch.manual_seed(0)
    guided = d.p_sample_loop(ClassifierFreeGuidance(model, 1.0, null_label=3), (3, 2, 2, 2), **kwargs)
    torch.manual_seed(0)
    plain = d.p_sample_loop(model, (3, 2, 2, 2), **kwargs)
    assert torch.isfinite(guided).all() and torch.equal(guided, plain)


@pytest.mark.parametrize("out_channels", [2, 4])
def test_autoguidance_extrapolates_from_the_guide_with_the_same_labels(out_channels):
    good, bad = ClassModel(out_channels), ClassModel(out_channels)
    with torch.no_grad():
        bad.conv.weight.mul_(0.5)
        x, t, y = torch.randn(4, 2, 3, 3), torch.arange(4), torch.tensor([0, 1, 2, 1])
        g, b = good(x, t, y=y), bad(x, t, y=y)
        good.batches.clear()
        guided = AutoGuidance(good, bad, 2.5)(x, t, y=y)
        assert good.batches == [4] and bad.batches[-1] == 4  # one forward each, the same labels, no null class
        torch.testing.assert_close(guided[:, :2], b[:, :2] + 2.5 * (g[:, :2] - b[:, :2]))
        assert torch.equal(guided[:, 2:], g[:, 2:])  # a learned variance is the main model's
        assert torch.equal(AutoGuidance(good, bad, 1.0)(x, t, y=y), g)
        assert torch.equal(AutoGuidance(good, good, 7.0)(x, t, y=y), g)  # guided by itself: nothing to push from


def test_classifier_free_and_autoguidance_add_up():
    good, bad = ClassModel(4), ClassModel(4)
    with torch.no_grad():
        bad.conv.weight.mul_(0.5)
        x, t, y = torch.randn(4, 2, 3, 3), torch.arange(4), torch.tensor([0, 1, 2, 1])
        c, u, b = good(x, t, y=y), good(x, t, y=torch.full_like(y, 3)), bad(x, t, y=y)
        both = Guidance(good, 2.0, null_label=3, guide=bad, guide_scale=1.5)(x, t, y=y)
        cfg = ClassifierFreeGuidance(good, 2.0, null_label=3)(x, t, y=y)
        auto = AutoGuidance(good, bad, 1.5)(x, t, y=y)
    torch.testing.assert_close(both[:, :2], c[:, :2] + 1.0 * (c[:, :2] - u[:, :2]) + 0.5 * (c[:, :2] - b[:, :2]))
    torch.testing.assert_close(both[:, :2], cfg[:, :2] + auto[:, :2] - c[:, :2])  # each term on its own
    assert torch.equal(both[:, 2:], c[:, 2:])


def test_autoguidance_guides_only_inside_its_interval():
    good, bad = ClassModel(), ClassModel()
    with torch.no_grad():
        bad.conv.weight.mul_(0.5)
        x, y = torch.randn(4, 2, 3, 3), torch.tensor([0, 1, 2, 1])
        t = torch.tensor([99, 100, 600, 601])
        g, b = good(x, t, y=y), bad(x, t, y=y)
        guided = AutoGuidance(good, bad, 3.0, interval=(100, 600))(x, t, y=y)
        torch.testing.assert_close(guided[1:3], b[1:3] + 3.0 * (g[1:3] - b[1:3]))
        assert torch.equal(guided[[0, 3]], g[[0, 3]])
        bad.batches.clear()
        assert torch.equal(AutoGuidance(good, bad, 3.0, interval=(0, 50))(x, t, y=y), g)
        assert bad.batches == []  # outside the interval the guide is not run
    with pytest.raises(ValueError, match="low end must not exceed the high end"):
        AutoGuidance(good, bad, 3.0, interval=(800, 0))


def test_classifier_cond_fn_is_the_scaled_log_softmax_gradient():
    torch.manual_seed(0)
    weight = torch.randn(4, 6, dtype=torch.float64)  # a linear classifier over the flattened x
    classifier = lambda x, t: x.flatten(1) @ weight.T  # noqa: E731
    x, t, y = torch.randn(3, 6, dtype=torch.float64), torch.arange(3), torch.tensor([0, 3, 1])
    grad = classifier_cond_fn(classifier, 2.5)(x, t, y=y)
    probs = torch.softmax(classifier(x, t), dim=-1)
    expected = 2.5 * (weight[y] - probs @ weight)  # d/dx log softmax_y(W x) = W_y - sum_k p_k W_k
    torch.testing.assert_close(grad, expected)
    with pytest.raises(ValueError, match="needs the target labels"):
        classifier_cond_fn(classifier, 1.0)(x, t)
