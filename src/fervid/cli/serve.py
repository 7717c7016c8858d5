"""``fervid serve``: the REST API and the web page (live camera, inference in the browser).

    fervid serve [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-upload-mb N] [--max-pixels N]
                 [--workers N] [--model NAME] [--detector NAME] [--photo-max-side PX] [--backend auto|torch|onnx]
                 [--device D] [... the other recognizer arguments]

Open http://HOST:PORT/ for the page (the camera's frames never leave the browser: the face
detector and the emotion model run there through onnxruntime-web), http://HOST:PORT/docs
for the API (``POST /v1/predict`` with a multipart field ``file`` or the raw image bytes ->
the JSON of ``fervid predict --json``; ``POST /v1/predict/batch``; ``GET /v1/models``;
``GET /healthz``). ``--api-key`` (or ``$FERVID_API_KEY``) protects ``/v1/*``: clients send
``X-API-Key: KEY`` or ``Authorization: Bearer KEY``. ``--workers N`` runs N server
processes (uvicorn workers), each with its own copy of the model; within a process one
prediction runs at a time, in a worker thread, using all cores. Needs
``pip install 'fervid[serve]'``.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import socket
import warnings

from fervid.cli.argtypes import port, positive_float, positive_int
from fervid.cli.recognizer_args import add_recognizer_args, config_from_args
from fervid.errors import UserValueError
from fervid.inference.config import DEFAULTS
from fervid.safety import describe_os_error


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="REST API and web page with the live camera",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8000, help="port (default 8000)")
    p.add_argument(
        "--api-key",
        dest="api_key",
        default=os.environ.get("FERVID_API_KEY") or None,
        help="require this key on /v1/* (X-API-Key header or Bearer token; default $FERVID_API_KEY); "
        "an empty key is refused, not read as 'no authentication'",
    )
    p.add_argument(
        "--max-upload-mb",
        dest="max_upload_mb",
        type=positive_float,
        default=16.0,
        help="largest request body in MiB, one image or a whole batch (default 16)",
    )
    p.add_argument(
        "--max-pixels",
        dest="max_pixels",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"largest image in pixels, as its header declares, refused before decoding (default {DEFAULTS.max_pixels})",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="server processes, each with its own model and the same recognizer settings (default 1)",
    )
    add_recognizer_args(p)
    return p


def check_listen(host: str, port: int) -> str:
    """Refuse, before the model loads, an address the server could not listen on, naming
    it: a host that does not resolve (``999.1.1.1``), an address of another machine
    (``8.8.8.8``), a port in use or reserved. Returns the IP address ``host`` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
        raise UserValueError(f"--host {host}: not an IP address or a host name that resolves ({reason})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(addr)
        except OSError as e:
            reason = "not an address of this machine" if e.errno == errno.EADDRNOTAVAIL else describe_os_error(e)
            raise UserValueError(f"cannot listen on {host}:{port}: {reason}") from None
    return str(addr[0])


def exposure_warning(host: str, address: str, api_key: str | None) -> str | None:
    """The warning for a server that other machines can reach with no API key (``--host
    0.0.0.0``, ``--host 0``, a LAN address), else ``None``: the API and the page were open to the
    network without a word, though ``--help`` calls the default "this machine only"."""
    if api_key is not None or ipaddress.ip_address(address.split("%", 1)[0]).is_loopback:
        return None
    return (
        f"--host {host} ({address}) listens beyond this machine and no --api-key is set: anyone who "
        "can reach this port can use the API (set --api-key or $FERVID_API_KEY, or keep the default 127.0.0.1)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from fervid.serve.app import ENV_CONFIG, check_api_key, create_app, serve_config
    except ImportError as e:
        raise UserValueError(f"serve needs FastAPI and uvicorn: pip install 'fervid[serve]' ({e})") from None
    check_api_key(args.api_key)  # an empty key would turn authentication off: refuse it before anything
    address = check_listen(args.host, args.port)
    exposed = exposure_warning(args.host, address, args.api_key)
    if exposed:
        warnings.warn(exposed, stacklevel=1)
    from fervid.inference.recognizer import EmotionRecognizer

    config = config_from_args(args)
    rec = EmotionRecognizer.from_config(config)  # checks the detector and its options now
    url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
    if args.workers > 1:
        # Each worker process builds its own app (and model) from this environment variable: the
        # whole recognizer config, so every worker answers as one process would.
        os.environ[ENV_CONFIG] = json.dumps(serve_config(config, args.api_key, args.max_upload_mb))
        print(
            f"fervid serve: model {config.model}, detector {config.detector}, {args.workers} worker processes; open {url} (API docs: {url}docs)",
            flush=True,
        )
        uvicorn.run(
            "fervid.serve.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="info",
        )
        return 0
    rec.load()  # here, so that an unknown model or a bad checkpoint is one clear line, not a server traceback
    app = create_app(rec, api_key=args.api_key, max_upload_mb=args.max_upload_mb, max_pixels=config.max_pixels)
    print(
        f"fervid serve: model {config.model}, detector {config.detector}; open {url} (API docs: {url}docs)", flush=True
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
