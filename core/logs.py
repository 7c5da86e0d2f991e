"""Log set-up of the command-line tools: one line per event on stderr, UTC ISO-8601 times."""
from __future__ import annotations

import logging
import sys
import time

FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATEFMT = "%Y-%m-%dT%H:%M:%S"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def utc_formatter() -> logging.Formatter:
    """`2024-05-01T12:00:00.123Z INFO feed.stream: connected`."""
    fmt = logging.Formatter(FORMAT, DATEFMT)
    fmt.converter = time.gmtime
    return fmt


def setup_logging(level: str = "INFO") -> None:
    """Send the root logger to stderr in the UTC format (once per process) and set its level by name."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(utc_formatter())
        root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
