"""Helpers shared by the benchmarks: machine info, git commit, CIFAR-10 unpacking, JSON output."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import tarfile
import time
from pathlib import Path
from typing import ClassVar

import trainer  # noqa: F401  (CPU kernel options, before any benchmark imports TensorFlow)
from trainer.host_speed import cpu_flags, cpu_identity  # one /proc/cpuinfo reader, the product's

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
CIFAR_TARBALL = SHARED_DATASETS / "cifar10-jpg.tar.gz"
# The seeds' datasets in ../shared/datasets: tarball and the folder it unpacks to.
SHARED_TARBALLS = {"mnist": ("mnist-png.tar.gz", "mnist"),
                   "cifar10": ("cifar10-jpg.tar.gz", "cifar10")}


# The CPU features that decide our training speed: vector width, bfloat16, AMX.
_SPEED_FLAGS = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"}


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
    }
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        info.update(cpu_identity(text))
        info["cpu_flags"] = sorted(f for f in cpu_flags(text) if f in _SPEED_FLAGS)
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
        from trainer.model import bf16_supported, onednn_enabled

        info["bf16_supported"] = bf16_supported()
        info["onednn"] = onednn_enabled()
    except ImportError:
        pass
    return info


@dataclasses.dataclass(frozen=True)
class HostRates:
    """The host's best matrix-product rates (FLOP/s by dtype), taken by the bench run itself
    before its pipeline runs, so that each result carries the speed of the host it ran on.
    """

    rates: dict[str, float]

    NOTE: ClassVar[str] = ("the best chained square matrix product (bench/roofline.py's "
                           "measurement, trainer/host_speed.py matmul_rate), measured in this "
                           "run before the pipeline ran")

    def to_dict(self) -> dict:
        return {"matmul_gflops": {k: round(v / 1e9, 1) for k, v in self.rates.items()},
                "note": self.NOTE}


def measure_host_rates() -> HostRates:
    """float32, and bfloat16 where the host runs it natively, at the roofline's defaults."""
    from trainer.host_speed import matmul_rate
    from trainer.model import bf16_supported

    dtypes = ["float32", "bfloat16"] if bf16_supported() else ["float32"]
    rates = {}
    for dtype in dtypes:
        rates[dtype] = matmul_rate(dtype)
        print(f"host {dtype} matrix product: {rates[dtype] / 1e9:.1f} GFLOP/s", flush=True)
    return HostRates(rates)


def compute_dtype(config: dict) -> str:
    """The dtype a trained config's layers computed in, as trainer/model.py decided it
    (precision "auto" is bfloat16 only on a host with native bfloat16).
    """
    from trainer.config import TrainerConfig
    from trainer.model import dtype_policy

    policy = dtype_policy(TrainerConfig.from_dict(config))
    return "bfloat16" if policy == "mixed_bfloat16" else "float32"


def step_share(flops_per_image: int, images_per_second: float, rate: float) -> dict:
    """The arithmetic of a training step against the host: GFLOP/image, GFLOP/s, share."""
    achieved = images_per_second * flops_per_image
    return {"training_gflop_per_image": round(flops_per_image / 1e9, 4),
            "achieved_gflops": round(achieved / 1e9, 1),
            "host_matmul_gflops": round(rate / 1e9, 1),
            "share_of_host_rate": round(achieved / rate, 3)}


def train_step_share(config: dict, images_per_second: float | None, rates: HostRates) -> dict:
    """A run's training speed as a share of the host's matrix-product rate in the dtype it
    computed in: the figure trainer/fit_estimate.py TRAIN_STEP_SHARE takes from measurements.
    `config` is the Trainer record's (history.json). The share is null, with the reason, where
    the arithmetic does not apply.
    """
    from trainer.config import ModelKind, TrainerConfig
    from trainer.fit_estimate import config_flops_per_image

    trained = TrainerConfig.from_dict(config)
    dtype = compute_dtype(config)
    out: dict = {"recipe": trained.recipe, "compute_dtype": dtype}
    if trained.model.kind == ModelKind.TRANSFER:
        return {**out, "share_of_host_rate": None,
                "reason": "a pretrained backbone (features extracted once, then its top "
                          "fine-tuned): no model FLOP count for it"}
    if not images_per_second:
        return {**out, "share_of_host_rate": None, "reason": "no training images/s recorded"}
    if dtype not in rates.rates:
        return {**out, "share_of_host_rate": None,
                "reason": f"no {dtype} matrix-product rate measured on this host"}
    flops = config_flops_per_image(trained)  # the run's own model: its widths, stride...
    return {**out, **step_share(flops, images_per_second, rates.rates[dtype])}


def tta_accuracy(model, dataset, config) -> float:
    """Accuracy of (image, label) examples with the recipe's test-time augmentation, as the
    exported serving_default signature computes it.
    """
    probabilities, labels = tta_probabilities(model, dataset, config)
    return float((probabilities.argmax(-1) == labels).mean())


def tta_probabilities(model, dataset, config):
    """Class probabilities [n, classes] of (image, label) examples with the recipe's test-time
    augmentation (as serving_default computes them), and the labels [n].
    """
    import numpy as np

    from trainer.model import class_probabilities

    probabilities, labels = [], []
    for images, batch_labels in dataset.batch(1000):
        probabilities.append(class_probabilities(model, images, config.evaluation.tta_flip,
                                                 config.evaluation.tta_translate).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(probabilities), np.concatenate(labels)


def run_not_fit_share(fit_seconds: float | None, wall_seconds: float) -> float | None:
    """The share of a whole run (ingest and pipeline) spent outside the Trainer's fit."""
    if fit_seconds is None or not wall_seconds:
        return None
    return round(1 - fit_seconds / wall_seconds, 3)


def relative(path: str | os.PathLike) -> str:
    """A path as results record it: relative to the repository, never a machine's own."""
    return os.path.relpath(Path(path).resolve(), REPO)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def cifar10_folder(work_dir: Path, tarball: Path = CIFAR_TARBALL) -> Path:
    """Unpacks the shared CIFAR-10 JPEG tarball once; returns the folder with train/ and test/."""
    return unpacked(work_dir, tarball, "cifar10")


def shared_dataset(work_dir: Path, name: str) -> Path:
    """One of SHARED_TARBALLS, unpacked once under work_dir."""
    tarball, folder = SHARED_TARBALLS[name]
    return unpacked(work_dir, SHARED_DATASETS / tarball, folder)


def unpacked(work_dir: Path, tarball: Path, folder_name: str) -> Path:
    folder = work_dir / folder_name
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return folder
    if not tarball.is_file():
        raise SystemExit(f"{tarball} not found: the benchmark needs ../shared/datasets beside "
                         "the repository (see ../shared/datasets/README.md)")
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tarfile.open(tarball) as tar:
        tar.extractall(work_dir, filter="data")
    print(f"unpacked {tarball.name} in {time.monotonic() - start:.1f}s")
    return folder


def load_split(items: list[tuple[str, int]], shape: tuple[int, int, int],
               resize_mode: str = "stretch"):
    """(float32 image in [0, 1], int32 label) of each (file, label) item, decoded and given the
    model's size as the Transform graph does (trainer/preprocessing.py decode_images).
    """
    import tensorflow as tf

    from trainer.preprocessing import decode_images

    files = [Path(path).read_bytes() for path, _ in items]
    labels = [label for _, label in items]
    data = tf.data.Dataset.from_tensor_slices((files, labels)).batch(512)
    return data.map(lambda b, y: (decode_images(b, *shape, resize_mode), y)).unbatch()


def channel_statistics(images, channels: int, min_std: float = 1.0 / 255.0):
    """Per-channel mean and std over every pixel of a dataset of (image, label), as the
    Transform graph's tft.mean computes them, the std floored as there (preprocessing._MIN_STD).
    """
    import tensorflow as tf

    sums = images.batch(2048).reduce(
        (tf.zeros(channels), tf.zeros(channels), tf.constant(0.0)),
        lambda acc, b: (acc[0] + tf.reduce_sum(tf.reduce_mean(b[0], [1, 2]), 0),
                        acc[1] + tf.reduce_sum(tf.reduce_mean(tf.square(b[0]), [1, 2]), 0),
                        acc[2] + tf.cast(tf.shape(b[0])[0], tf.float32)),
    )
    mean = sums[0] / sums[2]
    std = tf.sqrt(tf.maximum(sums[1] / sums[2] - tf.square(mean), min_std**2))
    return mean, std


def run_cli(args: list[str]) -> tuple[float, str]:
    """`python -m pipeline ARGS` in the repository: (wall seconds, stdout); exits on failure."""
    import sys

    command = [sys.executable, "-m", "pipeline", *args]
    print("$", " ".join(command), flush=True)
    start = time.monotonic()
    completed = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"exit {completed.returncode}: {' '.join(args)}")
    return round(time.monotonic() - start, 1), completed.stdout


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def train_images_per_second(config, steps: int) -> float:
    """Training images/s of the recipe's own model, optimizer, loss and batch size on random
    images (throughput does not depend on pixel values): `steps` batches after a warm-up.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from trainer.model import build_model
    from trainer.train import compile_model

    batch = config.optimizer.batch_size
    rng = np.random.default_rng(0)
    images = rng.random((batch * 4, *config.image_shape), dtype=np.float32)
    labels = keras.utils.to_categorical(
        rng.integers(0, config.num_classes, batch * 4), config.num_classes)
    model = build_model(config, images[:1000] if config.uses_whitening else None)
    compile_model(model, config, steps_per_epoch=100)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).cache().repeat()
    model.fit(batches, steps_per_epoch=2, epochs=1, verbose=0)  # tracing and first-step setup
    start = time.monotonic()
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.monotonic() - start)


def peak_rss_mib() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


@contextlib.contextmanager
def held(path: Path | None):
    """The timing lock held (blocking, a kernel flock: the test suite's `flock` takes the same
    lock) while the body runs; nothing without a path.
    """
    if path is None:
        yield
        return
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sample(items: list, limit: int | None, seed: int) -> list:
    """A seeded sample of `limit` items (all without a limit), in their order."""
    import numpy as np

    if not limit or limit >= len(items):
        return items
    picked = np.sort(np.random.default_rng(seed).choice(len(items), limit, replace=False))
    return [items[i] for i in picked]
