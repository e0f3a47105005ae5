"""Connecting a sweep to Ray, checked before Ray starts.

Without an address a sweep starts Ray in this process, bound to loopback and without a dashboard:
nothing to start by hand, nothing reachable from the network. With an address it joins an existing
cluster (``ray start --head`` on one node, ``ray start --address HEAD:PORT`` on the others) with
Ray's token authentication.

Ray is imported inside the functions only.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adaptive_weights.errors import RefusedError

__all__ = ["require_ray_tune", "ensure_loopback", "init_local_ray", "ensure_cluster_auth", "ray_session",
           "LOOPBACK_ENV", "AUTH_MODE_ENV", "AUTH_MODES", "auth_mode", "TUNE_EXTRA"]

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_MODES = ("token", "disabled")
TUNE_EXTRA = "pip install 'adaptive-weights[tune]'"


def require_ray_tune() -> None:
    """Refuse a sweep before anything starts when Ray Tune (the ``tune`` extra: Ray, and pandas for
    its results) is not installed. Looks without importing: Ray must be imported after the loopback
    setting (:func:`ensure_loopback`)."""
    if any(importlib.util.find_spec(module) is None for module in ("ray", "pandas")):
        raise RefusedError(f"running a sweep needs Ray Tune, which is not installed: {TUNE_EXTRA}")


def auth_mode(environ: Mapping[str, str] | None = None) -> str | None:
    """``RAY_AUTH_MODE`` as Ray reads it (in any case), or None when unset or empty. Ray enforces
    authentication for ``token`` only and reads every other value as off, so anything but
    ``token`` or ``disabled`` (``tokn``, `` token``, ``1``) is refused by name: a typo must not
    turn authentication off without a word."""
    env = os.environ if environ is None else environ
    raw = env.get(AUTH_MODE_ENV, "")
    if raw == "":
        return None
    if raw.lower() not in AUTH_MODES:
        raise RefusedError(f"{AUTH_MODE_ENV}={raw!r}: expected 'token' or 'disabled' (Ray reads any other value as "
                           "disabled, which would turn authentication off)")
    return raw.lower()


def ensure_loopback() -> None:
    """Make every Ray process of a single-machine run bind to 127.0.0.1 (docs/sweeps.md, "On this
    machine"). Ray reads the variable when it is imported, so it must be set before that."""
    if "ray" in sys.modules:
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise RuntimeError(
                f"Ray was imported before {LOOPBACK_ENV}=0 was set, so a local Ray would bind to the network "
                f"address; set {LOOPBACK_ENV}=0 in the environment (the Makefile does) or pass --address")
    os.environ[LOOPBACK_ENV] = "0"


def init_local_ray(*, verbose: int = 1, **kwargs: Any) -> None:
    """The in-process Ray of a sweep without ``--address``: loopback only, no dashboard."""
    ensure_loopback()
    import ray

    ray.init(address="local", include_dashboard=False, configure_logging=verbose > 0,
             log_to_driver=verbose > 1, **kwargs)


def ensure_cluster_auth(environ: Mapping[str, str] | None = None) -> str:
    """Ray's token authentication for ``--address`` (Ray >= 2.52): ``RAY_AUTH_MODE=token`` unless
    the environment sets a mode, and a token from ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH``
    or ``~/.ray/auth_token`` (the cluster's own: ``ray get-auth-token`` on the head prints it).
    Returns the mode; refuses token mode without a token before Ray starts."""
    env = os.environ if environ is None else environ
    mode = auth_mode(env) or "token"
    if environ is None:
        os.environ[AUTH_MODE_ENV] = mode
    if mode != "token":
        return mode
    token_path = env.get("RAY_AUTH_TOKEN_PATH")
    if env.get("RAY_AUTH_TOKEN"):
        return mode
    path = Path(token_path).expanduser() if token_path else Path(env.get("HOME", "~")).expanduser() / ".ray" / "auth_token"
    if not path.is_file():
        raise RefusedError(
            f"--address: Ray's token authentication ({AUTH_MODE_ENV}=token) needs the cluster's token; none in "
            f"RAY_AUTH_TOKEN, and {path} does not exist: copy the head's token there (ray get-auth-token on the head "
            f"prints it) or set RAY_AUTH_TOKEN_PATH; {AUTH_MODE_ENV}=disabled connects without authentication")
    return mode


@contextmanager
def ray_session(address: str | None, *, verbose: int) -> Iterator[None]:
    """Ray for the body: an already initialised Ray as it is, else the in-process one (``address``
    None) or the cluster at ``address``, shut down afterwards."""
    if address is None:
        ensure_loopback()
        auth_mode()  # a mistyped mode would turn the in-process Ray's authentication off
    else:
        ensure_cluster_auth()
    import ray

    started = False
    if not ray.is_initialized():
        if address is None:
            init_local_ray(verbose=verbose)
        else:
            ray.init(address=address, log_to_driver=verbose > 1)
        started = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()
