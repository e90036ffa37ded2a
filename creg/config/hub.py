"""Is a model's weights at hand? A fast answer before a loader waits minutes on a dead network.

A model is a local directory or a Hugging Face hub id. A hub id is usable when its files are in the
local cache, or when the hub can be reached. Offline -- ``HF_HUB_OFFLINE=1`` or no connection
within :data:`CONNECT_TIMEOUT_S` -- an id that is not cached fails at once with
:class:`ModelUnavailable`, whose message says how to get the weights.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

#: Seconds to wait for a TCP connection to the hub before calling the machine offline.
CONNECT_TIMEOUT_S = 3.0


class ModelUnavailable(RuntimeError):
    """The model is neither a local directory nor in the cache, and the hub cannot be reached."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline_by_setting() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """A TCP connection to the hub (``HF_ENDPOINT`` or huggingface.co, port 443) opens within
    ``timeout`` seconds; name resolution included (it runs in a thread, since it has no timeout)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    ok: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def cached_file(repo_id: str, filename: str) -> str | None:
    """The local path of ``filename`` of hub model ``repo_id`` if it is in the cache, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache  # lazy: guarded
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # noqa: BLE001 - an id the hub library rejects is simply not cached
        return None
    return found if isinstance(found, str) else None


def looks_like_path(model: str) -> bool:
    """A name that can only be a local path (absolute, ./, ~, or more than one '/')."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


#: a Hugging Face repo id: "name" or "org/name" of letters, digits, "-", "_" and "." (no ":" or spaces).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def check_available(model: str) -> None:
    """Raise :class:`ModelUnavailable` at once when ``model`` cannot be loaded here; return otherwise."""
    if not model or Path(model).expanduser().is_dir():
        return
    if looks_like_path(model):
        raise ModelUnavailable(f"model directory not found: {model}")
    if not HUB_ID.fullmatch(model):  # not a hub repo id ("org/name"): the adapter's own kind of name
        return
    if cached_file(model, "config.json") is not None:
        return
    reason = ("HF_HUB_OFFLINE is set" if offline_by_setting()
              else None if hub_reachable() else f"the hub cannot be reached (no connection in {CONNECT_TIMEOUT_S:.0f} s)")
    if reason is None:
        return
    raise ModelUnavailable(
        f"model {model!r} is not in the local Hugging Face cache and {reason}: on a machine with network run "
        f"`huggingface-cli download {model}` and copy the cache (~/.cache/huggingface, or $HF_HOME) here, "
        "or pass a local directory with the model in save_pretrained layout"
    )
