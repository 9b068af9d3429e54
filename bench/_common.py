"""Helpers shared by the benchmarks."""
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's resident-set high-water mark (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Start a new high-water mark from the current RSS (Linux clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")
