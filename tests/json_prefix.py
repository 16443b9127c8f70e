"""Is a text the beginning of some JSON document? A small pushdown recogniser, written for
the tests independently of the grammar code (syntax only, not schema)."""

from __future__ import annotations

import re

_NUMBER_PREFIX = re.compile(r"-?(0|[1-9][0-9]*)?(\.[0-9]*)?([eE][-+]?[0-9]*)?")


def is_json_prefix(text: str) -> bool:
    stack: list[str] = []        # "{" or "["
    expect = "value"             # value, key, colon, comma_or_end, done
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if expect == "done":
            return False
        if expect in ("value", "key") and ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                if text[j] == "\\":
                    if j + 1 >= n:
                        return True
                    if text[j + 1] == "u":
                        hexpart = text[j + 2:j + 6]
                        if not re.fullmatch(r"[0-9a-fA-F]*", hexpart):
                            return False
                        j += 6
                        continue
                    if text[j + 1] not in '"\\/bfnrt':
                        return False
                    j += 2
                    continue
                if ord(text[j]) < 0x20:
                    return False
                j += 1
            if j >= n:
                return True
            i = j + 1
            expect = "colon" if expect == "key" else "comma_or_end"
        elif expect == "key" and ch == "}":
            stack.pop()
            i += 1
            expect = "comma_or_end" if stack else "done"
        elif expect == "value":
            if ch in "{[":
                stack.append(ch)
                i += 1
                expect = "key" if ch == "{" else "value"
            elif ch == "]" and stack and stack[-1] == "[":
                stack.pop()
                i += 1
                expect = "comma_or_end" if stack else "done"
            elif ch in "tfn":
                word = {"t": "true", "f": "false", "n": "null"}[ch]
                chunk = text[i:i + len(word)]
                if not word.startswith(chunk):
                    return False
                if len(chunk) < len(word):
                    return True
                i += len(word)
                expect = "comma_or_end" if stack else "done"
            elif ch == "-" or ch.isdigit():
                match = _NUMBER_PREFIX.match(text, i)
                if not match or match.end() == i:
                    return False
                i = match.end()
                expect = "comma_or_end" if stack else "done"
            else:
                return False
        elif expect == "colon":
            if ch != ":":
                return False
            i += 1
            expect = "value"
        elif expect == "comma_or_end":
            if ch == ",":
                i += 1
                expect = "key" if stack[-1] == "{" else "value"
            elif ch == ("}" if stack[-1] == "{" else "]"):
                stack.pop()
                i += 1
                expect = "comma_or_end" if stack else "done"
            else:
                return False
        else:
            return False
    return True
