"""fervid as a service: a REST API and a web page with the live camera (inference in the browser).

>>> from fervid import EmotionRecognizer
>>> from fervid.serve import create_app
>>> app = create_app(EmotionRecognizer("fast"))          # any ASGI server can run it
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)       # what `fervid serve` does

Needs the ``serve`` extra (``pip install 'fervid[serve]'``: FastAPI, uvicorn,
python-multipart, onnx). Nothing is imported or loaded until :func:`create_app` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fervid.serve.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fervid.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'fervid.serve' has no attribute {name!r}")
