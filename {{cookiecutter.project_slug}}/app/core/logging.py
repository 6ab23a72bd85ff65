"""Log records of the `app.*` loggers to stderr, beside Uvicorn's own output."""

import logging

FORMAT = "%(levelname)s:     %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logger = logging.getLogger("app")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
