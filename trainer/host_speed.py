"""This host's matrix-product rate: measured in about a second, cached per host.

`matmul_rate` is the one copy of the chained-matmul timing (bench/roofline.py imports it and
times larger products more often); `host_rate` is what `--recipe auto` asks: the rate in one
dtype, from the cache under the user's cache folder when it holds one for this host (same CPU
model, flags and usable cores, same TensorFlow), else measured with a short run
(`measure_rate`) and cached. The record is HostSpeed (`host-speed.json`), written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import ClassVar

from schema.records import Record, RecordError

log = logging.getLogger(__name__)

HOST_SPEED_FILE = "host-speed.json"


def matmul_rate(dtype: str, sizes: tuple[int, ...] = (2048, 4096), tries: int = 5,
                flop: float = 1.1e11) -> float:
    """The best FLOP/s of chained square products of each size, over `tries` timings each
    (each timing about `flop` FLOPs: a second at 100 GFLOP/s with the default).
    """
    return max(_chained_matmul_rate(dtype, size, tries, flop) for size in sizes)


def _chained_matmul_rate(dtype: str, size: int, tries: int, flop: float) -> float:
    import tensorflow as tf

    repeats = max(1, round(flop / (2 * size**3)))
    a = tf.random.normal([size, size], dtype=tf.float32)
    a = tf.cast(a / math.sqrt(size), dtype)

    @tf.function
    def chain(x):
        for _ in range(repeats):
            x = tf.linalg.matmul(x, a)
        return tf.reduce_sum(tf.cast(x[:1, :1], tf.float32))

    chain(a).numpy()  # trace and warm up
    best = math.inf
    for _ in range(tries):
        start = time.perf_counter()
        chain(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best


def measure_rate(dtype: str) -> float:
    """The quick run-time measurement: 2048-square products, 3 timings of about 0.1 s each at
    300 GFLOP/s (about a second with tracing). The one function tests replace.
    """
    return matmul_rate(dtype, sizes=(2048,), tries=3, flop=3e10)


def cpu_identity(cpuinfo: str) -> dict:
    """Vendor, family, model number and model name of the first CPU in /proc/cpuinfo's text:
    family and model number tell CPU generations apart where model names are vague.
    """
    fields = _first_processor(cpuinfo)

    def number(key: str) -> int | str | None:
        value = fields.get(key)
        return int(value) if value is not None and value.isdigit() else value

    return {"cpu_vendor": fields.get("vendor_id"), "cpu_family": number("cpu family"),
            "cpu_model_number": number("model"), "cpu_model": fields.get("model name")}


def cpu_flags(cpuinfo: str) -> list[str]:
    """The first CPU's feature flags in /proc/cpuinfo's text."""
    return _first_processor(cpuinfo).get("flags", "").split()


def _first_processor(cpuinfo: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block only
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def host_key() -> str:
    """What makes a cached rate this host's: CPU model, its flags, usable cores, TensorFlow."""
    model, flags = "", []
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        model, flags = cpu_identity(text)["cpu_model"] or "", cpu_flags(text)
    except OSError:
        pass
    try:
        import tensorflow as tf

        version = tf.__version__
    except ImportError:
        version = ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]
    return f"{model or 'unknown CPU'}|flags {digest}|{cores} cores|tensorflow {version}"


@dataclasses.dataclass(frozen=True)
class HostSpeed(Record):
    """This host's matrix-product rates (FLOP/s by dtype) and the host they are valid for."""

    FILE: ClassVar[str] = HOST_SPEED_FILE

    host: str
    rates: dict[str, float] = dataclasses.field(default_factory=dict)
    measured: dict[str, str] = dataclasses.field(default_factory=dict)  # dtype -> UTC time


@dataclasses.dataclass(frozen=True)
class HostRate:
    rate: float  # FLOP/s
    source: str  # "measured on this host" or "cached for this host"


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/tfx-image, else ~/.cache/tfx-image."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tfx-image"


def read_cache(folder: Path, key: str) -> HostSpeed | None:
    """The cached record if it is this host's; None if absent, damaged, newer or another's."""
    try:
        record = HostSpeed.read(folder)
    except (RecordError, OSError) as e:
        log.debug("host speed cache ignored: %s", e)
        return None
    return record if record is not None and record.host == key else None


def write_cache(folder: Path, record: HostSpeed) -> None:
    """Writes the record atomically (a temporary file renamed over it); a cache that cannot
    be written is only logged.
    """
    path = Path(HostSpeed.path_in(folder))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary.write_text(record.to_json(), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as e:
        log.debug("host speed cache not written to %s: %s", path, e)
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def host_rate(dtype: str, folder: Path | None = None) -> HostRate:
    """This host's matrix-product rate in `dtype`: cached, else measured now and cached."""
    folder = cache_dir() if folder is None else folder
    key = host_key()
    record = read_cache(folder, key)
    if record is not None and record.rates.get(dtype, 0) > 0:
        return HostRate(record.rates[dtype], "cached for this host")
    log.info("[pipeline] measuring this host's %s matrix-product rate (cached in %s)",
             dtype, folder)
    rate = measure_rate(dtype)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    old = record or HostSpeed(host=key)
    write_cache(folder, HostSpeed(host=key, rates={**old.rates, dtype: rate},
                                  measured={**old.measured, dtype: now}))
    return HostRate(rate, "measured on this host")
