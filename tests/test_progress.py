import io
import re

import pytest
from tqdm import tqdm

from semsynth.training.stats import RunLog
from semsynth.utils import progress as progress_mod
from semsynth.utils.progress import format_duration, progress_bar
from tests.evaluation.test_evaluate import DATA, model_dir, seg_dir  # noqa: F401  (fixtures)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """A hand-driven clock for the progress module: ``clock.t = ...`` sets the time."""

    class Clock:
        t = 1000.0

    c = Clock()
    monkeypatch.setattr(progress_mod, "_clock", lambda: c.t)
    return c


def test_non_terminal_prints_rate_limited_plain_lines(clock):
    out = io.StringIO()
    bar = progress_bar(400, "generate", unit="img", stream=out, log_interval=30)
    assert not isinstance(bar, tqdm)
    clock.t += 10
    bar.update(40)  # 10 s: under the interval, nothing yet
    assert out.getvalue() == ""
    clock.t += 20
    bar.update(80)  # 30 s: the first line
    clock.t += 10
    bar.update(80)  # 40 s: 10 s after the last line, nothing
    clock.t += 19.9
    bar.update(0)
    lines = out.getvalue().splitlines()
    assert lines == ["generate: 120/400 img (30%) 4.0 img/s ETA 01:10"]
    clock.t += 0.1
    bar.set_postfix_str("loss 0.5")
    bar.update(40)  # 60 s: the second line, with the postfix
    clock.t += 5
    bar.update(160)
    bar.close()  # and always one at the end, with the elapsed time
    bar.close()  # a second close adds nothing
    text = out.getvalue()
    assert "\r" not in text
    assert text.splitlines() == ["generate: 120/400 img (30%) 4.0 img/s ETA 01:10",
                                 "generate: 240/400 img (60%) 4.0 img/s ETA 00:40 loss 0.5",
                                 "generate: 400/400 img (100%) 6.2 img/s in 01:05 loss 0.5"]


def test_non_terminal_unknown_total_resume_and_context_manager(clock):
    out = io.StringIO()
    with progress_bar(None, "scan", stream=out, log_interval=5) as bar:
        clock.t += 5
        bar.update(3)
    assert out.getvalue().splitlines() == ["scan: 3 it 0.6 it/s", "scan: 3 it 0.6 it/s in 00:05"]
    out = io.StringIO()
    bar = progress_bar(100, "train", unit="img", stream=out, log_interval=1, initial=60)
    clock.t += 2
    bar.update(10)  # the 60 images done before a resume do not count towards the rate
    assert out.getvalue().splitlines() == ["train: 70/100 img (70%) 5.0 img/s ETA 00:06"]


def test_disabled_prints_nothing(clock, capsys):
    out = FakeTerminal()
    for stream in (out, None, io.StringIO()):
        with progress_bar(10, "x", enabled=False, stream=stream, log_interval=0) as bar:
            bar.update(5)
            bar.set_postfix_str("hello")
            clock.t += 100
            bar.update(5)
    assert out.getvalue() == ""
    assert capsys.readouterr() == ("", "")


def test_terminal_gets_a_tqdm_bar_on_stderr_by_default(monkeypatch):
    term = FakeTerminal()
    with progress_bar(50, "evaluate", unit="layout", stream=term) as bar:
        assert isinstance(bar, tqdm)
        assert bar.ncols == 100  # a terminal of unknown width gets a fixed one, not tqdm's empty bar
        bar.update(20)
        bar.set_postfix_str("fid 3.2")
    text = term.getvalue()
    assert "\r" in text and "evaluate" in text and "20/50" in text and "layout" in text and "fid 3.2" in text
    fake_stderr = FakeTerminal()
    monkeypatch.setattr("sys.stderr", fake_stderr)
    with progress_bar(3, "make", unit="img") as bar:
        assert isinstance(bar, tqdm)
        bar.update(3)
    assert "make" in fake_stderr.getvalue() and "3/3" in fake_stderr.getvalue()


def test_format_duration():
    assert format_duration(68) == "01:08" and format_duration(3725) == "1:02:05"
    assert format_duration(float("inf")) == "?"


def test_runlog_bar_on_a_terminal_and_messages_between(tmp_path):
    msgs, term = io.StringIO(), FakeTerminal()
    log = RunLog(tmp_path, stream=msgs, bar_stream=term)
    log.progress(4, 12, 1.0)  # a resumed run: starts at 4
    assert isinstance(log._bar, tqdm)
    log.info("img 8/12 loss 0.1")
    log.progress(8, 12, 1.0)
    assert msgs.getvalue() == "img 8/12 loss 0.1\n"  # the message is a plain line on its own stream
    assert "train" in term.getvalue() and "/12" in term.getvalue()
    log.progress(12, 12, 1.0)
    assert log._bar is None  # finished: closed (and erased, leave=False)
    assert "img 8/12 loss 0.1" in (tmp_path / "log.txt").read_text()


def test_runlog_prints_plain_lines_off_a_terminal(tmp_path, capsys, clock):
    msgs, plain = io.StringIO(), io.StringIO()
    log = RunLog(tmp_path, stream=msgs, bar_stream=plain)
    log.progress(0, 12)
    log.progress(4, 12)
    assert plain.getvalue() == ""  # nothing before the first interval
    clock.t += 61
    log.progress(8, 12)
    clock.t += 1
    log.progress(9, 12)
    log.info("done")
    lines = plain.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: 8/12 img") and "\r" not in plain.getvalue()
    log.progress(12, 12)  # the end: one closing line
    assert plain.getvalue().splitlines()[-1].startswith("train: 12/12 img")
    assert msgs.getvalue() == "done\n"
    quiet = RunLog(tmp_path, enabled=False, stream=msgs, bar_stream=FakeTerminal())
    quiet.progress(3, 12, 1.0)
    assert quiet._bar is None


def test_commands_report_progress_as_lines_off_a_terminal(tmp_path, capsys, model_dir, seg_dir):  # noqa: F811
    from semsynth.data.synthetic_faces import write_synthetic_faces
    from semsynth.evaluation import evaluate

    write_synthetic_faces(tmp_path / "faces", 3, size=32)
    err = capsys.readouterr().err
    assert "\r" not in err and re.fullmatch(r"data make: 3/3 img \(100%\) \S+ img/s in 00:\d\d\n", err), err
    write_synthetic_faces(tmp_path / "quiet", 2, size=32, progress=False)
    assert capsys.readouterr().err == ""
    evaluate(tmp_path / "ev", model_dir, dataset_spec=DATA, metrics=["miou"], segmenter=str(seg_dir), num=4,
             batch_size=2, save_images=False)
    lines = capsys.readouterr().err.splitlines()
    assert [ln for ln in lines if ln.startswith("evaluate:")] == lines[-1:]  # short: only the closing line
    assert lines[-1].startswith("evaluate: 4/4 layout (100%) ")
