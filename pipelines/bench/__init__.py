"""Measurement code behind `pipelines/bench/latent_vs_pixel.py` (latent vs pixel space) and the other bench scripts.

Torch side only: nothing here imports TensorFlow or Keras except `export_decoders`, which runs in its own
subprocess (see `decoders.py`).
"""
