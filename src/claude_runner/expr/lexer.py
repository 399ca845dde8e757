"""Splitting expression text into tokens.

Two compiled regular expressions do the work at C speed: in a template, one finds where
the expression ends (the first ``}}`` outside a string: the language has no braces, so
no other reading is possible), scanning at most ``MAX_EXPRESSION_CHARS``; then
``findall`` cuts that span into tokens, each with its offset in the whole text, so
errors point at the right column. A catch-all alternative makes the tokens contiguous:
a character that is no token shows up as one and is reported.

A token is a plain ``(kind, text, offset)`` tuple: plans hold thousands of expressions,
and a tuple is several times cheaper to make than a named tuple.
"""

from __future__ import annotations

import re

from claude_runner.errors import ExpressionError
from claude_runner.expr.bounds import MAX_EXPRESSION_CHARS

NUMBER, STRING, NAME, OP, END = "number", "string", "name", "op", "end"
Token = tuple[str, str, int]

_TOKENS = re.compile(
    r"""
    (\s*)(
      -?(?:0[xX][0-9A-Fa-f]+|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)  # number
    | [A-Za-z_][A-Za-z0-9_-]*                                          # name
    | '[^']*(?:''[^']*)*'                                              # string
    | &&|\|\||==|!=|<=|>=|[<>!()\[\].,]                                # operator
    | \S                                                               # anything else
    )""",
    re.VERBOSE,
)
# The body of an expression in a template: strings, and anything but a quote or '}}'.
_BODY = re.compile(r"(?:[^'}]+|'[^']*(?:''[^']*)*'|\}(?!\}))*")
_OPERATORS = frozenset(
    ["&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".", ","]
)
_FIRST = dict.fromkeys("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_", NAME)
_FIRST.update(dict.fromkeys("0123456789", NUMBER))

_HINTS = {
    '"': "strings use single quotes: 'text' (write '' for a quote inside)",
    "=": "use '==' to compare",
    "&": "use '&&'",
    "|": "use '||'",
    "-": "there is no arithmetic; a negative number is written -1",
    "+": "there is no arithmetic",
    "*": "there is no arithmetic, and no '*' filter",
    "/": "there is no arithmetic",
    "%": "there is no arithmetic",
    "{": "the language has no braces; '}}' ends an expression in a template",
    "}": "the language has no braces; '}}' ends an expression in a template",
}


def describe(token: Token) -> str:
    kind, text, _ = token
    if kind == END:
        return "'}}'" if text else "end of the expression"
    if kind == OP:
        return repr(text)
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"{kind} {shown!r}" if kind == NAME else f"{kind} {shown}"


def tokenize(text: str, start: int, *, in_template: bool) -> tuple[list[Token], int]:
    """Tokens of the expression starting at ``start``, ending with an END token, and
    the offset just after the expression (after its ``}}`` in a template)."""
    if in_template:
        body = _BODY.match(text, start, start + MAX_EXPRESSION_CHARS + 1)
        stop = body.end() if body else start  # it always matches, if only empty text
        closed = text.startswith("}}", stop)
    else:
        stop, closed = len(text), True
    if stop - start > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"expression longer than {MAX_EXPRESSION_CHARS:,} characters", text=text, offset=start
        )
    tokens: list[Token] = []
    append = tokens.append
    first = _FIRST.get
    operators = _OPERATORS
    pos = start
    for space, token in _TOKENS.findall(text, start, stop):
        pos += len(space)
        kind = first(token[0])
        if kind is None:
            if token in operators:
                kind = OP
            elif len(token) > 1 and token[0] in "-'":  # one char: a bare '-' or quote
                kind = NUMBER if token[0] == "-" else STRING
            else:
                raise _bad_character(text, pos)
        append((kind, token, pos))
        pos += len(token)
    if not closed:
        if text.startswith("'", stop):  # the body stops at a string that does not end
            raise _bad_character(text, stop)
        raise ExpressionError(
            "'${{' is never closed", text=text, offset=start - 3, hint="end it with '}}'"
        )
    if in_template:
        append((END, "}}", stop))
        return tokens, stop + 2
    append((END, "", stop))
    return tokens, stop


def _bad_character(text: str, pos: int) -> ExpressionError:
    char = text[pos]
    if char == "'":
        hint = "close it with ' (write '' for a quote inside)"
        return ExpressionError("unterminated string", text=text, offset=pos, hint=hint)
    return ExpressionError(
        f"unexpected character {char!r}", text=text, offset=pos, hint=_HINTS.get(char, "")
    )
