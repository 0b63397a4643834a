"""What oslo.log writes, captured as text, for tests of what a log line carries."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

from oslo_config import cfg
from oslo_log import formatters
from oslo_log import log as oslo_logging


@contextlib.contextmanager
def oslo_log_text(logger_name: str, level: int = logging.INFO) -> Iterator[io.StringIO]:
    """The lines oslo.log's ContextFormatter (``[instance: <uuid>]`` and all) writes for
    ``logger_name`` and its children while the block runs; the logger is put back after."""
    conf = cfg.ConfigOpts()
    oslo_logging.register_options(conf)
    conf([])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatters.ContextFormatter(config=conf))
    logger = logging.getLogger(logger_name)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
