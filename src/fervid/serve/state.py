"""What one app's requests share: the recognizer, the limits, the browser models and the
prediction slots, kept on ``app.state.fervid`` and handed to the endpoints as a dependency."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import Depends, Request

from fervid.serve.browser import BrowserModels

if TYPE_CHECKING:
    from fervid.inference.recognizer import EmotionRecognizer


@dataclass
class ServeState:
    recognizer: EmotionRecognizer
    api_key: str | None
    max_bytes: int
    max_pixels: int
    max_batch: int
    limiter: anyio.CapacityLimiter
    """At most this many predictions at once, in worker threads (the others wait their turn)."""
    browser: BrowserModels
    loaded: bool = False
    # The recognizer's lazy loading is not thread-safe: the first load is serialised.
    _load_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ensure_loaded(self) -> None:
        with self._load_lock:
            if not self.loaded:
                self.recognizer.load()
                self.loaded = True


def get_state(request: Request) -> ServeState:
    state: ServeState = request.app.state.fervid
    return state


StateDep = Annotated[ServeState, Depends(get_state)]
"""An endpoint parameter annotated with this receives the app's :class:`ServeState`."""
