"""Settings shared by the whole test suite."""

import os

# Quiet TensorFlow's C++ logging and pin the Keras backend before anything imports Keras.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
