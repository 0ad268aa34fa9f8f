"""Measurement code behind `pipelines/benchmark.py` (latent vs pixel space) and the other bench scripts.

Torch side only: nothing here imports TensorFlow or Keras except `export_decoders`, which runs in its own
subprocess (see `decoders.py`).
"""
