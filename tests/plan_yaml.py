"""Write test data as YAML that every YAML 1.2 reader (and LibYAML) reads back unchanged.

``yaml.safe_dump`` writes YAML 1.1: it leaves ``09`` or ``1_0`` unquoted because 1.1
reads them as strings, but the plan loader (YAML 1.2 core schema, as editors) reads them
as numbers. JSON is YAML 1.2; the characters a YAML reader would not take raw inside a
quoted scalar (C1 controls, DEL, line and paragraph separators, BOM, non-characters) are
written as escapes.
"""

from __future__ import annotations

import json
import re

_ESCAPE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def yaml12(data: object) -> str:
    """``data`` as one line of YAML 1.2 (JSON)."""
    text = json.dumps(data, ensure_ascii=False)
    return _ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"
