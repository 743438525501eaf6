"""``python -m nextmm serve``: the web page and the HTTP API on one loaded model, until Ctrl-C.

Everything the config says is checked before the model loads (a bad port or limit is one line, exit 2);
nextmm.serving holds the server itself.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nextmm.cli.generate import answering_model, resolve_device, resolve_dtype
from nextmm.errors import ConfigError, UserError
from nextmm.inference.memory import check_memory
from nextmm.model import NextMM

log = logging.getLogger(__name__)


def check_address(host: str, port) -> None:
    """The address must be free to listen on (checked before the model loads, which takes a while)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"port={port}: give a whole number from 1 to 65535")
    try:
        with socket.socket(socket.AF_INET6 if ":" in str(host) else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((str(host), port))
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def main(cfg: DictConfig) -> None:
    try:
        import uvicorn

        from nextmm.serving.app import build_app
    except ImportError as error:
        raise UserError(f"nextmm serve needs the serve extra ({error.name} is missing): pip install -e \".[serve]\"") \
            from None
    from nextmm.serving.limits import Limits

    limits = Limits.from_config(OmegaConf.to_container(cfg.limits))
    check_address(cfg.host, cfg.port)
    check_memory(cfg.memory, cfg.memory_limit)
    device = resolve_device(cfg.device)

    def build() -> NextMM:
        return answering_model(cfg, device, resolve_dtype(cfg.dtype, device))

    app = build_app(build, model_name=cfg.model.name, output_dir=Path(cfg.output_dir), limits=limits)
    log.info("serving %s at http://%s:%d/ (API: /v1/chat/completions); turns are written to %s",
             cfg.model.name, cfg.host, cfg.port, Path(cfg.output_dir) / "turns")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning" if cfg.quiet else "info")
