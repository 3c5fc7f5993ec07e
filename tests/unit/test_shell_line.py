"""Console line discipline, fed byte by byte as a serial console delivers it."""

from __future__ import annotations

from appliance.shell.line import MAX_LINE, Cancel, Echo, EndOfInput, Line, LineEditor


def run(data: bytes, **kw: object) -> tuple[list[object], bytes]:
    ed = LineEditor(**kw)  # type: ignore[arg-type]
    events = [e for b in data for e in ed.feed(bytes([b]))]
    echo = b"".join(e.data for e in events if isinstance(e, Echo))
    return [e for e in events if not isinstance(e, Echo)], echo


def lines(data: bytes, **kw: object) -> list[str]:
    return [e.text for e in run(data, **kw)[0] if isinstance(e, Line)]


def test_cr_lf_and_crlf_each_end_one_line() -> None:
    assert lines(b"a\rb\nc\r\nd\n\re\r\r") == ["a", "b", "c", "d", "", "e", ""]


def test_backspace_and_del_erase() -> None:
    events, echo = run(b"ab\x08c\x7f\x7f\x7fxy\r")
    assert [e.text for e in events if isinstance(e, Line)] == ["xy"]
    assert echo == b"ab\b \bc\b \b\b \bxy\r\n"


def test_ctrl_u_erases_the_line() -> None:
    assert lines(b"garbage\x15version\n") == ["version"]


def test_ctrl_c_cancels_the_line() -> None:
    events, echo = run(b"config wr\x03ok\n")
    assert isinstance(events[0], Cancel)
    assert [e.text for e in events if isinstance(e, Line)] == ["ok"]
    assert b"^C\r\n" in echo


def test_history_up_and_down() -> None:
    assert lines(b"one\ntwo\n\x1b[A\x1b[A\n") == ["one", "two", "one"]
    assert lines(b"one\ntwo\n\x1b[A\x1b[A\x1b[B\n") == ["one", "two", "two"]
    # down past the newest entry gives back what was being typed
    assert lines(b"one\ndraft\x1b[A\x1b[B\n") == ["one", "draft"]
    # SS3 form (application cursor keys) and an up with no history
    assert lines(b"\x1bOAx\n") == ["x"]
    assert lines(b"a\n\x1bOA\n") == ["a", "a"]


def test_other_escape_sequences_are_ignored() -> None:
    assert lines(b"ab\x1b[C\x1b[1;5D\x1b[3~c\n") == ["abc"]
    assert lines(b"a\x1bxb\n") == ["axb"]  # lone ESC: dropped


def test_binary_bytes_are_kept_for_the_shell_to_name() -> None:
    events, echo = run(b"a\x01\xff\n")
    (line,) = [e for e in events if isinstance(e, Line)]
    assert line.text == "a\x01\udcff"
    assert echo == b"a??\r\n"


def test_overlong_lines_are_marked_not_run() -> None:
    events, _ = run(b"x" * (MAX_LINE + 10) + b"\nok\n")
    first, second = [e for e in events if isinstance(e, Line)]
    assert first.overlong and len(first.text) == MAX_LINE
    assert not second.overlong and second.text == "ok"


def test_ctrl_d_ends_only_where_allowed_and_only_on_an_empty_line() -> None:
    assert not any(isinstance(e, EndOfInput) for e in run(b"\x04")[0])
    assert isinstance(run(b"\x04", ctrl_d_ends=True)[0][0], EndOfInput)
    assert lines(b"ab\x04\n", ctrl_d_ends=True) == ["ab\x04"]


def test_history_keeps_no_duplicates_or_blanks() -> None:
    ed = LineEditor()
    for _ in ed.feed(b"a\na\n\n  \nb\n"):
        pass
    assert ed.history == [b"a", b"b"]
