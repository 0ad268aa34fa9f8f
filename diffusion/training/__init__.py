"""Training the latent diffuser and the guidance classifier: guided-diffusion's TrainLoop, made robust.

`TrainConfig` (flags), data sources (`LatentData`, `PixelData`), checkpoint folders, EMA, the loop itself.
"""

from diffusion.training.config import TRAIN_PRESETS, TrainConfig
from diffusion.training.data import LatentData, PixelData, TrainData
from diffusion.training.loop import TrainingDiverged, TrainLoop

__all__ = ["TRAIN_PRESETS", "TrainConfig", "LatentData", "PixelData", "TrainData", "TrainLoop", "TrainingDiverged"]
