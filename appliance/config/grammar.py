"""Console grammar: splitting a line into words, and `config change|add|rem …` into an Op.

`config change <MODULE> [<SUB>] /<arg> [<value>] …` as on the box. Values with blanks are
written in double quotes (`\\"` and `\\\\` escape inside quotes); `config show`
quotes exactly those, so its output always parses back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TOKEN = 256  # longer words are refused (with the word named) before anything is parsed


class GrammarError(Exception):
    """A line could not be understood; the message names the offending word."""


@dataclass(frozen=True)
class Word:
    """One word of a console line; `quoted`: it was written in double quotes."""

    text: str
    quoted: bool = False

    @property
    def is_arg(self) -> bool:
        return not self.quoted and self.text.startswith("/")


def show_token(text: str, limit: int = 24) -> str:
    """A word as an error message names it: printable, escaped, cut if long."""
    shown = text if len(text) <= limit else text[:limit] + "…"
    out = []
    for ch in shown:
        if ch == "…" or 0x20 <= ord(ch) < 0x7F:
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # undecodable byte kept by surrogateescape
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "'" + "".join(out) + "'"


def _bad_char(word: str) -> str | None:
    for ch in word:
        if not 0x20 <= ord(ch) < 0x7F:
            return show_token(ch)
    return None


def split_words(line: str, max_token: int = MAX_TOKEN) -> list[Word]:
    """Split at blanks; double quotes group. Raises GrammarError naming the bad word.
    `max_token`: longer words are refused (a `vars create` value in hex may be longer)."""
    words: list[Word] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] in " \t":
            i += 1
            continue
        start = i
        if line[i] == '"':
            i += 1
            buf = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\':
                    i += 1
                buf.append(line[i])
                i += 1
            if i >= n:
                raise GrammarError(
                    f'unterminated quote in {show_token(line[start:])}: close it with "'
                )
            i += 1
            if i < n and line[i] not in " \t":
                raise GrammarError(
                    f"text after closing quote in {show_token(line[start:].split()[0])}: "
                    "put a blank after the quote"
                )
            word = Word("".join(buf), quoted=True)
        else:
            while i < n and line[i] not in " \t":
                i += 1
            word = Word(line[start:i])
            if '"' in word.text:
                raise GrammarError(
                    f"quote inside the word {show_token(word.text)}: quote the whole value"
                )
        bad = _bad_char(word.text)
        if bad:
            raise GrammarError(
                f"non-text character {bad} in {show_token(word.text)}: "
                "only printable characters are accepted"
            )
        if len(word.text) > max_token:
            raise GrammarError(
                f"word too long ({len(word.text)} characters, at most {max_token}): "
                f"{show_token(word.text)}"
            )
        words.append(word)
    return words


_NEEDS_QUOTES = re.compile(r'[\s"\\]')


def quote(value: str) -> str:
    """The inverse of split_words for one value."""
    if value == "" or _NEEDS_QUOTES.search(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


@dataclass(frozen=True)
class ArgWord:
    """An `/arg [value]` pair of a `config change|add|rem` line (pair_args)."""

    name: str  # without the slash, as typed
    value: str | None  # None: no value given


@dataclass(frozen=True)
class Op:
    """One `config change|add|rem` request, not yet checked against the schema."""

    verb: str  # change | add | rem
    module: str
    sub: str | None
    words: tuple[Word, ...] = field(default_factory=tuple)  # the /arg [value] words


def parse_op(verb: str, words: list[Word]) -> Op:
    """Words after `config <verb>`: MODULE [SUB] {/arg [value]}."""
    if not words:
        raise GrammarError(
            f"config {verb} needs a module: config {verb} <MODULE> [<SUB>] /<arg> <value> "
            "(help config lists the modules)"
        )
    module, rest = words[0], words[1:]
    if module.quoted or module.is_arg:
        raise GrammarError(
            f"expected a module name, got {show_token(module.text)} (help config lists them)"
        )
    sub: str | None = None
    if rest and not rest[0].is_arg:
        sub = rest[0].text
        rest = rest[1:]
    return Op(verb, module.text, sub, tuple(rest))


def pair_args(words: tuple[Word, ...], takes_value: Callable[[str], bool]) -> list[ArgWord]:
    """Pair `/arg value` words. An argument that takes a value always takes the next word
    (so `/path /log` works unquoted); a flag takes it only if it is not an argument."""
    args: list[ArgWord] = []
    i = 0
    while i < len(words):
        w = words[i]
        if not w.is_arg:
            raise GrammarError(
                f"expected /<arg>, got {show_token(w.text)}: "
                'values with blanks go in double quotes ("like this")'
            )
        name = w.text[1:]
        if not name:
            raise GrammarError("'/' without an argument name")
        value = None
        if i + 1 < len(words) and (takes_value(name) or not words[i + 1].is_arg):
            value = words[i + 1].text
            i += 1
        args.append(ArgWord(name, value))
        i += 1
    return args
