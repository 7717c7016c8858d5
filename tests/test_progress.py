"""Long jobs report progress: a bar on a terminal, plain lines (no carriage returns) in logs,
nothing with ``--no-progress``. $FERVID_PROGRESS_SECONDS=0 makes every update a line here."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest

from fervid.runtime import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def every_update(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", "0")


def test_log_gets_plain_lines(every_update: None, monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    for _ in progress_bar(range(4), desc="scoring", unit="face"):
        pass
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0].startswith("scoring: 0/4 face (0%)")
    assert any(line.startswith("scoring: 4/4 face (100%)") for line in lines)
    assert all(line.startswith("scoring: ") for line in lines)


def test_a_log_gets_the_final_line_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """tqdm draws the final state on the last update and again when it closes; the log gets it
    once. A repeat while the bar runs is a keep-alive line and is kept. (Lines every 1000 s,
    the bar's clock moved back so that the last update draws, and no elapsed time in the
    layout: nothing here depends on the machine's speed.)"""
    from fervid.runtime import _LineStream

    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", "1000")
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(total=1, desc="scoring", bar_format="{desc}: {n_fmt}/{total_fmt}")
    bar.start_t -= 2000  # as if the job had run past the first line's delay and the interval
    bar.last_print_t -= 2000
    bar.update(1)  # draws "1/1"; the close draws it again
    bar.close()
    assert log.getvalue().splitlines().count("scoring: 1/1") == 1, log.getvalue()

    out = io.StringIO()
    lines = _LineStream(out)
    lines.write("\rscoring: 0/2")
    lines.write("\rscoring: 0/2")  # keep-alive: kept
    lines.closing()
    lines.write("\rscoring: 0/2")  # the close's redraw of the same state: dropped
    assert out.getvalue().splitlines() == ["scoring: 0/2", "scoring: 0/2"]


def test_terminal_gets_a_bar_and_no_progress_gets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = progress_bar(total=3, desc="export", unit="tail")
    time.sleep(1.2)  # past the bar's one-second delay: quick jobs stay quiet
    bar.update(3)
    bar.close()
    assert "\r" in term.getvalue() and "export" in term.getvalue()  # redrawn in place
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    bar = progress_bar(total=3, desc="export", enabled=False)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""


def test_a_long_step_without_counts_is_not_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    from fervid.runtime import progress_stage

    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", "0.05")
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with progress_stage("exporting"):
        time.sleep(0.4)
    lines = log.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("exporting: 00:00 elapsed") for line in lines), lines
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    with progress_stage("exporting", enabled=False):
        time.sleep(0.1)
    assert quiet.getvalue() == ""


def test_int8_export_reports_calibration_and_tail_search(
    every_update: None, fer_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime", reason="int8 export needs onnxruntime: pip install 'fervid[onnx]'")
    from fervid.export.onnx import export_onnx

    report = export_onnx(
        "fast", tmp_path / "q.onnx", int8=True, calibration_data=fer_csv, n_calibration=64, n_selection=200,
        check=False, progress=True,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err, "cursor moves or redraws in a log"
    for step in ("loading faces: ", "onnx export (fp32 graph): ", "int8 quantization: ", "int8 agreement: "):
        assert step in err, f"{step!r} missing from the log"
    assert "int8 calibration: " in err and "batch" in err
    plans = [line for line in err.splitlines() if line.startswith("int8 plan search: ")]
    assert plans and plans[-1].startswith("int8 plan search: ")
    done = int(plans[-1].split(": ")[1].split("/")[0])
    from fervid.export.onnx import INT8_PLANS

    # the search stopped at the plan it chose
    assert INT8_PLANS[done - 1] == (report.activations, report.fp32_tail) and done == len(report.tried)
    export_onnx("fast", tmp_path / "r.onnx", int8=True, calibration_data=fer_csv, n_calibration=64, fp32_tail=0.5,
                check=False, progress=False)  # fmt: skip
    assert capsys.readouterr().err == ""


def test_evaluate_cli_reports_scoring(every_update: None, fer_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fervid.cli import main

    assert main(["evaluate", "fast", "--data", str(fer_csv), "--max-images", "600", "--batch-size", "128"]) == 0
    err = capsys.readouterr().err
    assert "evaluating 1 model(s) on 600 images (PrivateTest)" in err
    assert "scoring (tta none): 600/600 face (100%)" in err
    assert main(["evaluate", "fast", "--data", str(fer_csv), "--max-images", "600", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_bench_cli_reports_rows(every_update: None, fer_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fervid.cli import main

    argv = ["bench", "--what", "classifier", "--models", "fast", "--backends", "torch,onnx", "--repeats", "1"]
    assert main(argv + ["--data", str(fer_csv), "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "fervid bench: 0/2 row (0%)" in err and "fervid bench: 2/2 row (100%)" in err
    assert "classifier fast onnx" in err  # the row being measured is named


def test_reading_a_csv_the_first_time_is_not_silent(
    monkeypatch: pytest.MonkeyPatch, fer_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """FER2013's first read (parsing 35,887 rows, then cached) took 11-21 s with no output; it
    is a progress step now, which ``--no-progress`` turns off like every other bar."""
    import gzip
    import itertools
    import shutil

    from fervid.cli import main

    small = tmp_path / "small.csv"
    with gzip.open(fer_csv, "rt") as f:
        small.write_text("".join(itertools.islice(f, 101)))
    monkeypatch.setenv("FERVID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", "0")  # a line at once: this CSV is read in no time
    assert main(["data", "info", str(small)]) == 0
    assert "reading small.csv (cached for the next time): 00:00 elapsed" in capsys.readouterr().err
    assert main(["data", "info", str(small)]) == 0  # from the cache: nothing to wait for
    assert "reading" not in capsys.readouterr().err
    shutil.rmtree(tmp_path / "cache")
    assert main(["data", "info", str(small), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_no_progress_turns_off_every_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within ``progress_off()`` (what the CLI runs a verb in under ``--no-progress``) a bar or
    a step asked for by a library call stays quiet too, in any thread; outside it they speak."""
    import threading

    from fervid.runtime import progress_off, progress_stage

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", "0")

    def work() -> None:
        for _ in progress_bar(range(3), desc="scoring", unit="face"):
            pass
        with progress_stage("exporting"):
            pass

    with progress_off():
        work()
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert log.getvalue() == ""
    with progress_off(False):
        work()
    assert "scoring: 3/3 face (100%)" in log.getvalue() and "exporting: 00:00 elapsed" in log.getvalue()


def test_a_slow_step_between_updates_still_writes_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """tqdm draws only when updated: a batch slower than the interval (a loaded machine scored
    256 faces in 15-19 s) left a log silent that long. The bar is redrawn while it waits."""
    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", "0.1")
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(total=2, desc="scoring", unit="batch")
    time.sleep(0.8)  # one slow batch: 8 intervals without an update
    bar.update(2)
    bar.close()
    waiting = [line for line in log.getvalue().splitlines() if line.startswith("scoring: 0/2 batch")]
    assert len(waiting) >= 3, log.getvalue()
    after = log.getvalue()
    time.sleep(0.3)  # closed: nothing more
    assert log.getvalue() == after


def test_cli_lines_reach_a_pipe_at_once() -> None:
    """A verb's stdout in a log or a pipe is line-buffered: ``fervid train`` printed its budget
    line at start-up, and a log got it with the final JSON two minutes later (block buffering)."""
    import os
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    repo = Path(__file__).resolve().parents[1]
    # the verb prints one line, then works on for a minute: the line must arrive before it ends
    code = (
        "import sys, time, fervid.cli.models as verb\n"
        "verb.run = lambda args: print('started') or time.sleep(60) or 0\n"
        "from fervid.cli import main\n"
        "sys.exit(main(['models']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a user's shell has it
    env["PYTHONPATH"] = str(repo / "src")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(proc.stdout.readline)
            try:
                assert first.result(timeout=45) == "started\n"
            finally:
                proc.kill()
    finally:
        proc.wait()


def test_a_quick_job_writes_no_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job done before the first interval leaves a log as it was (a bad CSV's one-line error
    stays one line): the first line comes after LOG_FIRST_LINE_SECONDS."""
    from fervid.runtime import progress_stage

    monkeypatch.delenv("FERVID_PROGRESS_SECONDS", raising=False)
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    for _ in progress_bar(range(3), desc="scoring", unit="face"):
        pass
    with progress_stage("reading"):
        pass
    assert log.getvalue() == ""


def test_a_terminal_that_reports_no_size_gets_a_bar() -> None:
    """A pseudo-terminal of 0 x 0 (what `script`, `docker run -t` and many CI runners give) drew
    no bar at all: tqdm sized it to nothing. It gets an 80-column bar."""
    import os
    import subprocess

    pty = pytest.importorskip("pty", reason="no pseudo-terminals here")
    repo = Path(__file__).resolve().parents[1]
    code = (
        "import time\n"
        "from fervid.runtime import progress_bar\n"
        "bar = progress_bar(total=3, desc='scoring', unit='face')\n"
        "for _ in range(3):\n"
        "    time.sleep(0.6)\n"
        "    bar.update(1)\n"
        "bar.close()\n"
    )
    master, slave = pty.openpty()  # no size set: 0 rows, 0 columns
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = out.decode("utf-8", errors="replace")
    assert "scoring:" in text and "\r" in text and "2/3" in text, repr(text)


def test_the_first_line_of_a_slow_first_step_comes_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bar whose first update is slow writes its first log line after LOG_FIRST_LINE_SECONDS,
    not after the whole interval (fervid finetune's first batch: 5 s more of silence)."""
    from fervid import runtime

    monkeypatch.setenv("FERVID_PROGRESS_SECONDS", "1.0")
    monkeypatch.setattr(runtime, "LOG_FIRST_LINE_SECONDS", 0.2)
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(total=2, desc="epoch", unit="batch")
    time.sleep(0.7)  # first line due at 0.2 s, the next one at 1.2 s
    early = log.getvalue()
    bar.update(2)
    bar.close()
    assert early.startswith("epoch: 0/2 batch (0%)"), repr(early)
