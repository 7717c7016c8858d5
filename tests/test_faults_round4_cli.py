"""Fault injection, round 4 (issue 25, a short extra hunt): the service and the CLI's arguments,
as a realistic user meets them, each fixed as a class:

- every route that answers ``GET`` answers ``HEAD`` (same status and headers, no body):
  ``curl -I /healthz`` and an uptime monitor's HEAD check got 405 from a healthy server, and
  ``/`` answered 405 while ``/static/index.html`` answered 200;
- fervid's environment variables are checked where they are read, with an error naming them:
  ``FERVID_PROGRESS_SECONDS=abc`` was a ValueError traceback from the first progress bar,
  in the middle of a run (after its outputs were opened);
- a multipart body Starlette's parser refuses gets the app's answer: one ``bad_multipart`` code
  for a malformed body, and the batch limit for too many files (``max_batch + 2`` files named
  Starlette's internal limit, 33 for a limit of 32, under another code);
- one seed type (0..2**32-1) on every verb: ``data show --seed -1`` read the whole CSV and then
  died in numpy with a traceback.

Hermetic: synthetic images and the bundled weights (the fast ONNX model, for GET /v1/models)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pytest

from faultkit import assert_one_line_error, cli, run_fervid, write_image
from fervid import EmotionRecognizer
from fervid.errors import FervidError, UserValueError

# --------------------------------------------------------------------------- HEAD on every GET route


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from fervid.serve.app import create_app

    rec = EmotionRecognizer("fast", detector="skip", backend="onnx")  # nothing loads until used
    cache = tmp_path_factory.mktemp("cache")
    with TestClient(create_app(rec, load=False, cache_dir=cache)) as c:
        yield c


def _get_paths(client) -> list[str]:  # type: ignore[no-untyped-def]
    """Every GET route of the app without a path parameter, plus one file of each parametrised
    or mounted route: the list comes from the app, so a route added later is covered."""
    paths = []
    routes = list(client.app.routes)
    while routes:
        route = routes.pop()
        if hasattr(route, "original_router"):  # an included router (FastAPI >= 0.120)
            routes += route.original_router.routes
        methods = getattr(route, "methods", None) or set()
        path = getattr(route, "path", "")
        if "GET" in methods and "{" not in path:
            paths.append(path)
    return [*paths, "/models/index.json", "/static/index.html", "/static/app.js"]


def test_every_get_route_answers_head_with_the_same_status_and_headers_and_no_body(client) -> None:  # type: ignore[no-untyped-def]
    paths = _get_paths(client)
    assert {"/", "/healthz", "/docs", "/openapi.json"} <= set(paths)
    for path in paths:
        get = client.get(path)
        head = client.head(path)
        assert get.status_code == 200, (path, get.text[:200])
        assert head.status_code == get.status_code, (path, head.status_code)
        assert head.content == b"", path
        for name in ("content-type", "content-security-policy", "x-frame-options", "x-content-type-options"):
            assert head.headers.get(name) == get.headers.get(name), (path, name)
        if "content-length" in get.headers:
            assert head.headers["content-length"] == get.headers["content-length"], path


def test_head_on_a_post_route_is_still_405_and_on_an_unknown_path_404(client) -> None:  # type: ignore[no-untyped-def]
    assert client.head("/v1/predict").status_code == 405
    assert client.head("/no/such/page").status_code == 404
    assert client.head("/static/../../etc/passwd").status_code == 404


def test_head_reaches_the_api_key_check(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from fervid.serve.app import create_app

    rec = EmotionRecognizer("fast", detector="skip", backend="onnx")
    with TestClient(create_app(rec, load=False, cache_dir=tmp_path, api_key="k3y")) as c:
        assert c.head("/v1/models").status_code == 401
        assert c.head("/healthz").status_code == 200  # liveness stays open, as for GET


# --------------------------------------------------------------------------- malformed multipart


def test_one_file_over_the_batch_limit_and_many_over_it_get_the_same_answer(client) -> None:  # type: ignore[no-untyped-def]
    """Before: max_batch + 1 files answered ``too_many_files`` "at most 32", max_batch + 2 and
    more answered ``bad_request`` "Maximum number of files is 33" (Starlette's own limit)."""
    limit = client.app.state.fervid.max_batch
    img = b"not decoded: refused before"
    answers = set()
    for n in (limit + 1, limit + 2, 3 * limit):
        r = client.post("/v1/predict/batch", files=[("file", (f"{i}.png", img, "image/png")) for i in range(n)])
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        answers.add((err["code"], err["message"]))
    assert answers == {("too_many_files", f"at most {limit} images per batch")}


@pytest.mark.parametrize(
    "ctype",
    ["multipart/form-data", "multipart/form-data; boundary=xyz", "multipart/form-data; boundary="],
)
@pytest.mark.parametrize("path", ["/v1/predict", "/v1/predict/batch"])
def test_a_malformed_multipart_body_is_one_code(client, path: str, ctype: str) -> None:  # type: ignore[no-untyped-def]
    """Before: a missing boundary or a body that is not multipart answered ``bad_request``
    (Starlette's), other malformed bodies ``bad_multipart`` (the app's)."""
    r = client.post(path, content=b"\xff\xd8 not multipart at all", headers={"content-type": ctype})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "bad_multipart" and err["message"].startswith("malformed multipart body: "), err


def test_too_many_text_fields_is_a_malformed_body(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post(
        "/v1/predict/batch", data={f"f{i}": "x" for i in range(40)}, files=[("file", ("a.png", b"x", "image/png"))]
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_multipart"


# --------------------------------------------------------------------------- FERVID_* variables


BAD_SECONDS = ["abc", "nan", "inf", "-1", "1e999", "5s", "0x10"]


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_a_bad_progress_seconds_variable_is_one_error_naming_it(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from fervid.runtime import progress_seconds

    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", value)
    with pytest.raises(UserValueError, match="FERVID_PROGRESS_SECONDS") as info:
        progress_seconds()
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(("value", "seconds"), [("", 5.0), (" 2.5 ", 2.5), ("0", 0.0), ("1e1", 10.0)])
def test_a_good_progress_seconds_variable_is_read(value: str, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    from fervid.runtime import LOG_PROGRESS_SECONDS, progress_seconds

    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", value)
    assert progress_seconds() == (seconds if value.strip() else LOG_PROGRESS_SECONDS)


def test_a_bad_progress_seconds_stops_predict_before_it_starts(tmp_path: Path) -> None:
    """The user's command: a folder of photos to a log (the bar is drawn), with the variable
    mistyped. Before: a ValueError traceback from tqdm's set-up, after the run had started."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"{i}.png", seed=i)
    out = tmp_path / "annotated"
    r = run_fervid(
        ["predict", str(folder), "--detector", "skip", "--json", "--out", str(out)],
        cwd=tmp_path,
        env={"FERVID_PROGRESS_SECONDS": "abc"},
        timeout=60,
    )
    assert_one_line_error(r.returncode, r.stderr, "FERVID_PROGRESS_SECONDS", "'abc'")
    assert not out.exists()


def test_the_cli_checks_the_variable_for_every_verb(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", "nan")
    rc, _, err = cli(["models"], capsys)
    assert_one_line_error(rc, err, "FERVID_PROGRESS_SECONDS")


# --------------------------------------------------------------------------- seeds


SEED_VERBS = [
    ["data", "show", "DATA", "--out", "grid.png", "--seed"],
    ["train", "--data", "DATA", "--seed"],
    ["finetune", "--data", "DATA", "--seed"],
    ["study", "--data", "DATA", "--seeds", "0"],
]


@pytest.mark.parametrize("value", ["-1", str(2**32), "1.5", "0x10", "nan"])
@pytest.mark.parametrize("argv", SEED_VERBS, ids=lambda a: a[0] if a[0] != "data" else "data-show")
def test_every_seed_argument_is_refused_by_argparse_outside_0_to_2_32(
    argv: list[str], value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One seed type on every verb, refused before the data is read. Before: ``data show
    --seed -1`` read the whole CSV and then died in numpy (``ValueError: expected non-negative
    integer``); ``finetune`` and ``study`` found out after parsing, ``train`` took 2**32."""
    data = tmp_path / "missing.csv"  # never opened: argparse refuses first
    rc, _, err = cli([a if a != "DATA" else str(data) for a in argv] + [value], capsys)
    assert rc == 2, err
    assert "--seed" in err and value in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["0", str(2**32 - 1)])
def test_the_seed_type_takes_the_whole_range(value: str) -> None:
    from fervid.cli.argtypes import seed

    assert seed(value) == int(value)


def test_sample_grid_names_a_negative_seed(tmp_path: Path) -> None:
    from faultkit import synthetic_data
    from fervid.data.plots import sample_grid

    with pytest.raises(UserValueError, match="seed"):
        sample_grid(synthetic_data(n_train=14, n_val=7), tmp_path / "g.png", seed=-1)
    assert not (tmp_path / "g.png").exists()


def test_data_show_with_a_negative_seed_is_a_usage_error_not_a_traceback(data_root: Path, tmp_path: Path) -> None:
    """The user's command, as a subprocess on the real CSV."""
    out = tmp_path / "grid.png"
    r = run_fervid(
        ["data", "show", str(data_root / "fer2013" / "fer2013.csv.gz"), "--out", str(out), "--seed", "-1"],
        cwd=tmp_path,
        timeout=60,
    )
    assert_one_line_error(r.returncode, r.stderr, "--seed", "-1", status=2)
    assert not out.exists()


# --------------------------------------------------------------------------- empty paths


def _output_options() -> list[tuple[str, argparse.Action]]:
    """Every ``--out`` and ``--csv`` option of every verb (and of ``data``'s actions), from the
    parser itself: a verb added later is covered."""
    from fervid.cli import build_parser

    found = []
    todo = [("fervid", build_parser(None))]
    while todo:
        name, parser = todo.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {verb}", sub) for verb, sub in action.choices.items()]
            elif {"--out", "--csv"} & set(action.option_strings):
                found.append((f"{name} {action.option_strings[0]}", action))
    return found


def test_every_output_option_refuses_an_empty_path() -> None:
    """``--out "$DIR"`` with DIR unset: before, ``predict``, ``evaluate`` and ``video --csv``
    read "" as "no output" (exit 0, the annotated copies, report or timeline never written),
    ``batch`` died in ``Path.with_name`` and ``data`` wrote to "."."""
    options = _output_options()
    assert len(options) >= 12, [n for n, _ in options]
    for name, action in options:
        assert action.type is not None, name
        for empty in ("", "  "):
            with pytest.raises(argparse.ArgumentTypeError, match="empty path"):
                action.type(empty)
        assert action.type("out dir/a b.parquet") == "out dir/a b.parquet", name


def test_predict_with_an_empty_out_is_a_usage_error_not_a_silent_skip(tmp_path: Path) -> None:
    photo = write_image(tmp_path / "a.png")
    r = run_fervid(["predict", str(photo), "--detector", "skip", "--out", ""], cwd=tmp_path, timeout=60)
    assert_one_line_error(r.returncode, r.stderr, "--out", "empty path", status=2)
    assert r.stdout == ""


@pytest.mark.parametrize(("out", "words"), [("", "empty"), (" ", "empty"), (".", "is a folder"), ("/", "is a folder")])
def test_run_batch_names_an_output_that_is_no_file(
    out: str, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: "" and "." were a ValueError traceback, " " wrote `` .sources.parquet`` beside a
    faces table named " " in the working folder."""
    from fervid.batch import run_batch

    monkeypatch.chdir(tmp_path)  # a regression writes here, not into the checkout
    write_image(tmp_path / "a.png")
    with pytest.raises(FervidError, match=words):
        run_batch(tmp_path / "a.png", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.parametrize(
    ("source", "words"),
    [("", "empty path"), ("  ", "empty path"), ("http://example.com/a.jpg", "a URL"), ("file:///tmp/a.jpg", "a URL")],
)
def test_run_batch_refuses_a_source_that_names_no_file(
    source: str, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``batch ""`` processed the working folder (Path("") is ".") and reported success;
    a URL became ``http:/example.com/a.jpg: no such file or folder``."""
    from fervid.batch import run_batch

    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "a.png")  # what "" would have picked up
    with pytest.raises(FervidError, match=words):
        run_batch([tmp_path / "a.png", source], tmp_path / "out.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# --------------------------------------------------------------------------- serve beyond this machine


@pytest.mark.parametrize(
    ("host", "address", "api_key", "warned"),
    [
        ("0", "0.0.0.0", None, True),
        ("0.0.0.0", "0.0.0.0", None, True),
        ("::", "::", None, True),
        ("192.168.1.20", "192.168.1.20", None, True),
        ("fe80::1%eth0", "fe80::1%eth0", None, True),
        ("0.0.0.0", "0.0.0.0", "k3y", False),
        ("127.0.0.1", "127.0.0.1", None, False),
        ("localhost", "::1", None, False),
        ("127.0.0.2", "127.0.0.2", None, False),
    ],
)
def test_a_server_open_to_the_network_without_a_key_is_warned_about(
    host: str, address: str, api_key: str | None, warned: bool
) -> None:
    from fervid.cli.serve import exposure_warning

    message = exposure_warning(host, address, api_key)
    assert (message is not None) == warned, message
    if warned:
        assert message is not None and host in message and "--api-key" in message


def test_serve_on_all_interfaces_without_a_key_says_so_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``fervid serve --host 0`` (0.0.0.0) without a key: before, the API and the page were open
    to the network with no word of it. The server itself is not started here."""
    import uvicorn

    from fervid.cli.serve import check_listen

    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, **kw: started.append(host))
    monkeypatch.setattr(EmotionRecognizer, "load", lambda self: self)
    monkeypatch.delenv("FERVID_API_KEY", raising=False)
    assert check_listen("0", 0) == "0.0.0.0"
    with pytest.warns(UserWarning, match="listens beyond this machine and no --api-key"):
        rc, _, err = cli(["serve", "--host", "0", "--port", "0", "--model", "fast", "--detector", "skip"], capsys)
    assert rc == 0 and started == ["0"], err
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*listens beyond")
        rc, _, err = cli(["serve", "--port", "0", "--model", "fast", "--detector", "skip"], capsys)
    assert rc == 0 and started == ["0", "127.0.0.1"], err
