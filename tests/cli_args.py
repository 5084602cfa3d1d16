"""The smallest command lines of ``train`` and ``bench`` that the CLI tests share."""

TINY_TRAIN = ["train", "--model", "moons", "--steps", "2", "--no-progress", "--threads", "1"]
TINY_BENCH = [
    "bench",
    "--no-compile",
    "--generation-sizes",
    "0",
    "--repeats",
    "1",
    "--threads",
    "1",
    "--batch-sizes",
    "2",
    "--steps",
    "2",
]
