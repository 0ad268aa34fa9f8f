"""Test-wide settings: quiet TensorFlow, Keras on the TensorFlow backend, small thread pools (2-core CI)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
