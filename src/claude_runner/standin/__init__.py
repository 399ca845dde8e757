"""The stand-in Messages API: a local server the real Claude Code CLI talks to instead of
Anthropic's, for the test suite and for rehearsals (``--rehearse``).

Modules, each with one job (import the one you need; this package imports nothing, so
the plan loader can validate ``rehearse:`` with ``script`` without loading a server):

- ``script``: the rehearsal script model (``rehearse:`` in a plan), pure data;
- ``replies``: what the stand-in model answers to one request (text, tool call,
  structured output, HTTP error, hang);
- ``answer``: a script and a request -> the reply;
- ``schemagen``: a value that satisfies a JSON Schema (default structured outputs);
- ``wire``: reading the CLI's requests and writing Messages API responses;
- ``server``: the HTTP server (``StandinAPI``);
- ``env``: the environment that points an agent at a running stand-in.
"""
