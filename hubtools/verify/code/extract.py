"""The program in an answer: the last fenced code block of the query's language.

The last block, because answers often show a draft or a usage example before the
final program. Fences follow CommonMark's rules (three or more backticks or
tildes, closed by a fence of the same character at least as long; an unclosed
block runs to the end of the text), parsed line by line here: fences are the
only Markdown this stage needs, and a full Markdown parser would be a new
dependency for a dozen lines.
"""

from __future__ import annotations

import re

# The info-string words that name each language (compared lower-cased).
LANGUAGE_TAGS: dict[str, frozenset[str]] = {
    "python": frozenset({"python", "py", "python3", "py3"}),
    "cpp": frozenset({"cpp", "c++", "cc", "cxx", "c++17", "cpp17"}),
}
_ALIASES = {tag: lang for lang, tags in LANGUAGE_TAGS.items() for tag in tags}

_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$")
_THINK_CLOSE = "</think>"


def language_of(name: str) -> str:
    """The canonical language ("python" or "cpp") for a name such as "py" or "C++"."""
    lang = _ALIASES.get(str(name).strip().lower())
    if lang is None:
        known = ", ".join(sorted(LANGUAGE_TAGS))
        raise ValueError(f"unsupported code language {name!r}; use one of: {known}")
    return lang


def code_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as (first word of the info string, lower-cased; code)."""
    blocks: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if not opened or (opened["fence"][0] == "`" and "`" in opened["info"]):
            i += 1
            continue
        fence, info = opened["fence"], opened["info"].strip()
        indent = len(lines[i]) - len(lines[i].lstrip(" "))
        body: list[str] = []
        i += 1
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                if len(line) - len(line.lstrip(" ")) <= 3:
                    break
            body.append(_unindent(line, indent))
            i += 1
        i += 1
        tag = info.split()[0].lower() if info else ""
        blocks.append((tag, "\n".join(body) + "\n" if body else ""))
    return blocks


def _unindent(line: str, indent: int) -> str:
    """CommonMark: remove up to the opening fence's indentation from each content line."""
    n = 0
    while n < indent and n < len(line) and line[n] == " ":
        n += 1
    return line[n:]


def extract_program(answer: str, language: str) -> str | None:
    """The last block tagged with the language, or None; the think part is never searched."""
    if _THINK_CLOSE in answer:
        answer = answer.rsplit(_THINK_CLOSE, 1)[1]
    tags = LANGUAGE_TAGS[language_of(language)]
    for tag, code in reversed(code_blocks(answer)):
        if tag.strip("{}.") in tags and code.strip():
            return code
    return None
