"""`--help` for config keys: every `section.key` with its type, value and the comment in ragtune/config.py."""

from __future__ import annotations

import dataclasses
import inspect
import re

from ragtune import config as config_module

_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^=#]+?(?:=\s*.*?)?(?:#\s*(?P<comment>.*))?$")
_COMMENT = re.compile(r"^\s+#\s?(?P<text>.*)$")


def field_comments(cls: type) -> dict[str, str]:
    """{field: its comment}: the trailing `# ...` of its line, after any `# ...` lines just above it."""
    comments, above = {}, []
    for line in inspect.getsource(cls).splitlines()[1:]:
        if m := _COMMENT.match(line):
            above.append(m["text"].strip())
            continue
        if (m := _FIELD.match(line)) and m[1] in {f.name for f in dataclasses.fields(cls)}:
            comments[m[1]] = " ".join([*above, (m["comment"] or "").strip()]).strip()
        above = []
    return comments


def config_keys_help(cfg: config_module.ExperimentConfig) -> str:
    """One line per key: `--section.key  TYPE  = value  comment`, values as this config sets them."""
    rows = []

    def walk(obj, prefix: str) -> None:
        comments = field_comments(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            changed = "" if value == default else f"  (default {default!r})"
            rows.append((f"--{prefix}{f.name}", str(f.type), f"{value!r}{changed}", comments.get(f.name, "")))

    walk(cfg, "")
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"  {k:<{width[0]}}  {t:<{width[1]}}  = {v:<{width[2]}}  {c}".rstrip() for k, t, v, c in rows)
