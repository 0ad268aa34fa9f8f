"""A preset's U-Net fitted to the data it will learn: size, channels, levels, attention and labels from the data.

A preset is written for one input size (fmnist-latent: 8x8x8 latents, 10 classes). Trained on other latents, its
channel multipliers and attention resolutions may not exist at that size, and its class conditioning may not apply
to unlabelled data. `fit_unet` keeps the preset's intent: the default levels for the new size (the reference's table,
`CHANNEL_MULT_BY_SIZE`) and attention at the same levels counted from the coarsest one. A field the user set
explicitly (`keep`) is never changed.
"""

from __future__ import annotations

from collections.abc import Collection

from diffusion.config import CHANNEL_MULT_BY_SIZE, UNetConfig, channel_mult_for


def default_channel_mult(size: int) -> str:
    """The reference's multipliers for `size`, else 1 then 2s down to a 4-pixel (or odd) coarsest level."""
    if size in CHANNEL_MULT_BY_SIZE:
        return ",".join(f"{m:g}" for m in CHANNEL_MULT_BY_SIZE[size])
    levels = 1
    while size % 2 ** levels == 0 and size // 2 ** levels >= 4:
        levels += 1
    return ",".join(["1", *["2"] * (levels - 1)])


def _reached(size: int, channel_mult: str) -> list[int]:
    """The resolutions a U-Net of input `size` works at, finest first."""
    return [size // 2 ** level for level in range(len(channel_mult_for(size, channel_mult)))]


def attention_from_bottom(unet: UNetConfig) -> list[int]:
    """The levels with attention, counted from the coarsest (0 = the coarsest level)."""
    if not unet.attention_resolutions:
        return []
    reached = _reached(unet.image_size, unet.channel_mult)
    return sorted(len(reached) - 1 - reached.index(int(r)) for r in unet.attention_resolutions.split(","))


def fit_unet(unet: UNetConfig, shape: tuple[int, int, int], num_classes: int | None,
             keep: Collection[str] = ()) -> tuple[UNetConfig, list[str]]:
    """(the preset `unet` fitted to data of `shape` (C, H, W) with `num_classes` (None: unlabelled), what changed).

    keep: fields the user set; they stay as they are (an impossible combination then fails with the config's own
    error when the model is built)."""
    channels, height, width = shape
    if height != width:
        raise ValueError(f"the U-Net needs square inputs; the data is {height}x{width}")
    changes: dict[str, object] = {}
    if height != unet.image_size and "image_size" not in keep:
        mult = unet.channel_mult if "channel_mult" in keep else default_channel_mult(height)
        if mult != unet.channel_mult:
            changes["channel_mult"] = mult
        if "attention_resolutions" not in keep and unet.attention_resolutions:
            reached = _reached(height, mult)
            levels = [p for p in attention_from_bottom(unet) if p < len(reached)]
            attention = ",".join(str(reached[len(reached) - 1 - p]) for p in sorted(levels, reverse=True))
            if attention != unet.attention_resolutions:
                changes["attention_resolutions"] = attention
        changes["image_size"] = height
    if channels != unet.in_channels and "in_channels" not in keep:
        changes["in_channels"] = channels
    if num_classes is None:
        if unet.class_cond and "class_cond" not in keep:
            changes.update(class_cond=False, null_class=False)
    elif unet.class_cond and num_classes != unet.num_classes and "num_classes" not in keep:
        changes["num_classes"] = num_classes
    fitted = unet.replace(**changes)
    notes = [f"{k} {getattr(unet, k)!r} -> {v!r}" for k, v in changes.items()]
    return fitted, notes


def describe(unet: UNetConfig) -> str:
    """One line: input, levels, attention, conditioning."""
    cond = (f"class-conditional ({unet.num_classes} classes{', null class' if unet.null_class else ''})"
            if unet.class_cond else "unconditional")
    return (f"{unet.image_size}x{unet.image_size}x{unet.in_channels} input, {unet.num_channels} channels x "
            f"({unet.channel_mult or default_channel_mult(unet.image_size)}), {unet.num_res_blocks} res blocks, "
            f"attention at {unet.attention_resolutions or 'none'}, {cond}")
