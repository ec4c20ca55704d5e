"""How much memory the Trainer may spend on decoded images: `--cache-budget` and what it means.

A budget is a size ("6GiB", "500MB", "2e9") or a share of the memory available when training
starts ("50%"). Available memory is the container's limit where there is one (a Kubeflow pod
sees the node's /proc/meminfo, not its own limit), else MemAvailable.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from schema.errors import BadInput

DEFAULT_CACHE_BUDGET = "50%"

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12,
    "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30,
    "ti": 2**40, "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*%\s*$")


def check_budget(text: str) -> str:
    """`text` if it is a budget; ValueError saying what a budget looks like otherwise."""
    parse_budget(text)
    return text


def parse_budget(text: str) -> tuple[int | None, float | None]:
    """(bytes, None) for a size, (None, fraction) for a percentage."""
    percent = _PERCENT.match(str(text))
    if percent:
        fraction = float(percent.group(1)) / 100
        if not 0 < fraction <= 1:
            raise BadInput(f"cache budget {text!r}: a percentage must be in (0, 100]")
        return None, fraction
    size = _SIZE.match(str(text))
    if not size or size.group(2).lower() not in _UNITS:
        raise BadInput(
            f"cache budget {text!r} is not a size: use bytes with an optional unit (500MB, "
            f"6GiB, 2e9) or a share of the available memory (50%)"
        )
    value = float(size.group(1)) * _UNITS[size.group(2).lower()]
    if value < 1:
        raise BadInput(f"cache budget {text!r} must be at least 1 byte")
    return int(value), None


def resolve_budget(text: str, available: int | None = None) -> int:
    """The budget in bytes; a percentage is of `available` (default: available_memory())."""
    size, fraction = parse_budget(text)
    if size is not None:
        return size
    assert fraction is not None
    return int((available_memory() if available is None else available) * fraction)


def available_memory() -> int:
    """Bytes this process can still allocate: the cgroup's headroom if limited, else the host's."""
    host = _meminfo_available()
    limit = _cgroup_headroom()
    return min(host, limit) if limit is not None else host


def _meminfo_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise OSError("no MemAvailable in /proc/meminfo")


def _cgroup_headroom() -> int | None:
    """Memory left under the cgroup limit, v2 (memory.max) or v1 (memory.limit_in_bytes).

    None if unlimited.
    """
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit_text = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max":
            return None
        limit = int(limit_text)
        if limit >= 2**60:  # cgroup v1's "unlimited"
            return None
        return max(0, limit - usage)
    return None


def images_bytes(count: int, image_shape: tuple[int, ...], itemsize: int) -> int:
    """Memory of `count` decoded images: count x H x W x C x bytes per value."""
    return count * math.prod(image_shape) * itemsize


def human(size: float) -> str:
    """1.5 GB, 640 MB, 12 kB: decimal units, as `df -H` writes them."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"
