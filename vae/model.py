"""The LDM-style convolutional VAE: encoder and decoder as functional Keras models, plus loading a trained one.

Both models are plain functional graphs of Conv2D / GroupNormalization / swish / UpSampling2D (and an optional
single-head attention in the middle block), so that Keras' safe-mode loading and ONNX export work on them.
With `norm="none"` the GroupNormalization layers are left out (the same graph otherwise); `norm="encoder"` keeps
them in the encoder only.
"""

from __future__ import annotations

import os
import zipfile
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
from keras import layers

from runfs.errors import CorruptFileError
from runfs.lineage import VAE_FILES, vae_model_dir
from vae.config import VAEConfig


@keras.saving.register_keras_serializable(package="vae")
class LogVarClamp(layers.Layer):
    """Clamp the log-variance to [min_value, max_value]: exp() of it stays finite in float32 (as in LDM)."""

    def __init__(self, min_value: float = -30.0, max_value: float = 20.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_value = float(min_value)
        self.max_value = float(max_value)

    def call(self, x):
        return keras.ops.clip(x, self.min_value, self.max_value)

    def get_config(self) -> dict:
        return {**super().get_config(), "min_value": self.min_value, "max_value": self.max_value}


POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}


@contextmanager
def compute_precision(precision: str):
    """Layers built inside compute in `precision` ("fp32" or "bf16": Keras' mixed_bfloat16, whose weights stay
    float32); the global dtype policy is put back on leaving."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _norm(x, groups: int | None, name: str):
    """GroupNorm with `groups` groups; `groups=None` (the config's norm="none") returns x unchanged."""
    if groups is None:
        return x
    return layers.GroupNormalization(groups=groups, epsilon=1e-6, name=f"{name}_norm")(x)


def _norm_act(x, groups: int | None, name: str):
    return layers.Activation("swish", name=f"{name}_swish")(_norm(x, groups, name))


def res_block(x, width: int, groups: int | None, name: str):
    """(N, h, w, c) -> (N, h, w, width): two [GroupNorm-]swish-conv layers and a (1x1 projected) skip."""
    skip = x
    h = _norm_act(x, groups, f"{name}_a")
    h = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv_a")(h)
    h = _norm_act(h, groups, f"{name}_b")
    h = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv_b")(h)
    if skip.shape[-1] != width:
        skip = layers.Conv2D(width, 1, name=f"{name}_skip")(skip)
    return layers.Add(name=f"{name}_add")([skip, h])


def attention_block(x, groups: int | None, name: str):
    """(N, h, w, c) -> same: single-head self-attention over the h*w positions, residual."""
    size, width = x.shape[1], x.shape[-1]
    h = _norm(x, groups, name)
    h = layers.Reshape((size * size, width), name=f"{name}_flatten")(h)
    h = layers.MultiHeadAttention(num_heads=1, key_dim=width, name=f"{name}_mha")(h, h)
    h = layers.Reshape((size, size, width), name=f"{name}_unflatten")(h)
    return layers.Add(name=f"{name}_add")([x, h])


def _groups(cfg: VAEConfig, part: str) -> int | None:
    """GroupNorm groups of the encoder or decoder `part`, None where cfg.norm leaves that part without norms."""
    normed = {"group": ("encoder", "decoder"), "encoder": ("encoder",), "none": ()}[cfg.norm]
    return cfg.norm_groups if part in normed else None


def _middle(x, groups: int | None, cfg: VAEConfig, name: str):
    width = x.shape[-1]
    x = res_block(x, width, groups, f"{name}_res1")
    if cfg.mid_attention:
        x = attention_block(x, groups, f"{name}_attn")
    return res_block(x, width, groups, f"{name}_res2")


def build_encoder(cfg: VAEConfig) -> keras.Model:
    """images (N, S, S, C) in [-1, 1] -> (mean, logvar), each (N, S/f, S/f, z_channels); logvar clamped."""
    images = keras.Input((cfg.image_size, cfg.image_size, cfg.channels), name="images")
    groups = _groups(cfg, "encoder")
    x = layers.Conv2D(cfg.base_channels, 3, padding="same", name="enc_in")(images)
    for level, mult in enumerate(cfg.channel_mult):
        for block in range(cfg.num_res_blocks):
            x = res_block(x, cfg.base_channels * mult, groups, f"enc_l{level}_res{block}")
        if level < len(cfg.channel_mult) - 1:
            # A strided conv halves h and w (LDM's learned downsampling).
            x = layers.Conv2D(x.shape[-1], 3, strides=2, padding="same", name=f"enc_l{level}_down")(x)
    x = _middle(x, groups, cfg, "enc_mid")
    x = _norm_act(x, groups, "enc_out")
    # Two 3x3 heads rather than one conv split in two: same maths, no slicing op in the exported graph.
    mean = layers.Conv2D(cfg.z_channels, 3, padding="same", name="mean")(x)
    logvar = layers.Conv2D(cfg.z_channels, 3, padding="same", name="logvar_raw")(x)
    logvar = LogVarClamp(cfg.logvar_min, cfg.logvar_max, name="logvar")(logvar)
    return keras.Model(images, [mean, logvar], name="vae_encoder")


def build_decoder(cfg: VAEConfig) -> keras.Model:
    """unscaled latents (N, S/f, S/f, z_channels) -> images (N, S, S, C), roughly in [-1, 1] (not clipped)."""
    latents = keras.Input(cfg.latent_shape_hwc, name="latents")
    groups = _groups(cfg, "decoder")
    top = cfg.base_channels * cfg.channel_mult[-1]
    x = layers.Conv2D(top, 3, padding="same", name="dec_in")(latents)
    x = _middle(x, groups, cfg, "dec_mid")
    for level in reversed(range(len(cfg.channel_mult))):
        for block in range(cfg.num_res_blocks + 1):
            x = res_block(x, cfg.base_channels * cfg.channel_mult[level], groups, f"dec_l{level}_res{block}")
        if level > 0:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"dec_l{level}_up")(x)
            x = layers.Conv2D(x.shape[-1], 3, padding="same", name=f"dec_l{level}_upconv")(x)
    x = _norm_act(x, groups, "dec_out")
    images = layers.Conv2D(cfg.channels, 3, padding="same", name="images")(x)
    return keras.Model(latents, images, name="vae_decoder")


ENCODER_FILE, DECODER_FILE = VAE_FILES
TUNED_DECODER = "decoder"  # RUN/vae/decoder/: the decoder fine-tuned on the run's latents (vae.decoder_tune)


def save_models(folder: str | os.PathLike, encoder: keras.Model, decoder: keras.Model) -> None:
    """Write encoder.keras and decoder.keras (Keras native format) into an existing folder."""
    encoder.save(Path(folder) / ENCODER_FILE)
    save_decoder(folder, decoder)


def save_decoder(folder: str | os.PathLike, decoder: keras.Model) -> None:
    decoder.save(Path(folder) / DECODER_FILE)


def load_models(folder: str | os.PathLike) -> tuple[keras.Model, keras.Model]:
    """Load encoder.keras and decoder.keras with safe_mode=True (no code from the file is executed)."""
    return load_model_file(Path(folder) / ENCODER_FILE), load_model_file(Path(folder) / DECODER_FILE)


def load_model_file(path: Path) -> keras.Model:
    """One .keras file, safe_mode=True, called once on a zero batch (Keras' ONNX export refuses a model that has
    never been called)."""
    if path.is_file() and not _complete_zip(path):  # Keras would say "File not found" for a file that exists
        raise CorruptFileError(
            f"{path} is truncated or damaged (not a complete .keras archive). If it is in RUN/vae/model, delete that "
            "folder and rerun `python pipelines/train_vae.py --run RUN` (it finishes from RUN/vae/checkpoint); if in "
            "RUN/vae/checkpoint, the checkpoint is lost: train again with --overwrite")
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    model(np.zeros((1, *model.input_shape[1:]), np.float32))
    return model


def _complete_zip(path: Path) -> bool:
    """A .keras file is a zip archive: complete when its directory reads and every member's CRC matches."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def vae_root(vae_dir: str | os.PathLike) -> Path:
    """RUN/vae from the run folder or from RUN/vae itself."""
    vae_dir = Path(vae_dir)
    if (vae_dir / "vae").is_dir() and not (vae_dir / "model").is_dir():
        return vae_dir / "vae"
    return vae_dir


def resolve_model_dir(vae_dir: str | os.PathLike) -> Path:
    """The folder holding the model to use: DIR/vae/model (final) or else DIR/vae/checkpoint (newest complete).

    `vae_dir` may be the run folder or its vae/ sub-folder.
    """
    vae_dir = vae_root(vae_dir)
    folder = vae_model_dir(vae_dir)  # model/ or checkpoint/, put back first if a replace was killed halfway
    if folder is not None:
        return folder
    raise FileNotFoundError(
        f"no trained VAE in {vae_dir} (looked for model/ and checkpoint/ with {ENCODER_FILE} and {DECODER_FILE}); "
        f"train one first: python pipelines/train_vae.py --run RUN_DIR"
    )


def load_vae(vae_dir: str | os.PathLike, tuned_decoder: bool = True) -> tuple[VAEConfig, keras.Model, keras.Model]:
    """(config, encoder, decoder) of the final (or else newest complete) model under `vae_dir`; see the builders.

    With `tuned_decoder` (the default) the decoder comes from RUN/vae/decoder/ when `pipelines/tune_decoder.py` wrote
    one from this very model (its meta.json names the model's digest); one tuned from another model is refused."""
    from runfs import file_digest, read_json

    folder = resolve_model_dir(vae_dir)
    tuned = vae_root(vae_dir) / TUNED_DECODER
    decoder_dir = tuned if tuned_decoder and (tuned / DECODER_FILE).is_file() else folder
    if decoder_dir == tuned:
        base, digest = read_json(tuned / "meta.json").get("base_model"), file_digest(folder)
        if base != digest:
            raise ValueError(f"{tuned} was fine-tuned from another VAE than {folder} (digest {base} vs {digest}); "
                             f"rerun `python pipelines/tune_decoder.py --run RUN` or delete {tuned}")
    # Each file loaded once: the model's own decoder is not read when the tuned one replaces it.
    encoder, decoder = load_model_file(folder / ENCODER_FILE), load_model_file(decoder_dir / DECODER_FILE)
    return model_config(folder), encoder, decoder


def load_vae_config(vae_dir: str | os.PathLike) -> VAEConfig:
    """The VAEConfig of the model load_vae would load, without loading the Keras models."""
    return model_config(resolve_model_dir(vae_dir))


def model_config(folder: Path) -> VAEConfig:
    """The VAEConfig saved in a model folder (model/ or checkpoint/)."""
    from runfs import read_json

    return VAEConfig.from_dict(read_json(folder / "config.json"))
