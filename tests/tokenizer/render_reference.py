#!/usr/bin/python3
"""Reference renderer for velocity's chat-template tests: renders Jinja exactly as Hugging Face
transformers does (apply_chat_template / _compile_jinja_template), with Debian's python3-jinja2.

  render_reference.py < {"template": "...", "context": {...}}      -> prints the rendering
  render_reference.py --batch < JSON lines of {template, context}  -> JSON lines of
      {"ok": true, "output": "..."} or {"ok": false, "error": "..."}

strftime_now() formats a fixed UTC time when VELOCITY_FIXED_TIME (Unix seconds) is set, so the
C++ side (RenderOptions::fixed_time) can agree with it.
"""
import json
import os
import sys
from datetime import datetime, timezone

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(jinja2.ext.Extension):
    # transformers' {% generation %} extension, minus the assistant-mask bookkeeping: the block's
    # body is rendered as is.
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    fixed = os.environ.get("VELOCITY_FIXED_TIME")
    if fixed is not None:
        return datetime.fromtimestamp(int(fixed), tz=timezone.utc).strftime(format)
    return datetime.now().strftime(format)


def make_env():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


_compiled = {}


def render(env, case):
    source = case["template"]
    if source not in _compiled:
        _compiled[source] = env.from_string(source)
    return _compiled[source].render(**case.get("context", {}))


def main():
    env = make_env()
    if "--batch" in sys.argv[1:]:
        out = sys.stdout
        for line in sys.stdin:
            if not line.strip():
                continue
            case = json.loads(line)
            try:
                result = {"ok": True, "output": render(env, case)}
            except Exception as e:  # any jinja2 / Python error counts as "raises"
                result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            out.write(json.dumps(result, ensure_ascii=True) + "\n")
            out.flush()
        return 0
    case = json.load(sys.stdin)
    try:
        sys.stdout.write(render(env, case))
    except Exception as e:
        sys.stderr.write(f"{type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
