"""keras-torch-ldm's Python API: a trained run as one object (torch + onnxruntime; no TensorFlow).

    from keras_torch_ldm import LatentDiffusion

    pipe = LatentDiffusion.from_run("pretrained/fmnist", device="auto")
    images, labels = pipe.sample(16, classes=[0, 3], sampler="dpmpp", steps=20, guidance_scale=2.0, seed=0)
"""

from keras_torch_ldm.pipeline import LatentDiffusion
from keras_torch_ldm.settings import Samples, SampleSettings

__all__ = ["LatentDiffusion", "SampleSettings", "Samples"]
