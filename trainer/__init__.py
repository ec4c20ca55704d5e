"""The Trainer's module code: model, input pipeline, run_fn and preprocessing_fn.

Importing the package turns TensorFlow's oneDNN CPU kernels on unless the environment already
says otherwise. TensorFlow enables them by itself only on CPUs with AVX512-VNNI, AVX512-BF16 or
AMX; on AVX2-only CPUs they train our CNNs faster too (bench/onednn.py measures it, into
bench/results/onednn.json). This runs
before TensorFlow is imported wherever our own entry points start the process (`python -m
pipeline`, the benchmarks, the multi-worker launcher); the container image sets the same
variable. Set TF_ENABLE_ONEDNN_OPTS=0 to opt out.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
