"""Stage 1: the Keras 3 convolutional VAE (TensorFlow backend), its data sources, training and encoding."""
