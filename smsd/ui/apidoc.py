"""``/api/v1/openapi.json`` and ``/api/v1/doc``: the API described, readable without a CDN.

The page is rendered here from the same dictionary as the JSON, so it needs
no script at all (and nothing from outside the package).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from smsd.ui.openapi_spec import spec
from smsd.ui.render import EMPTY, Html, h, join, page


async def openapi_json(request: web.Request) -> web.StreamResponse:
    return web.json_response(spec(), dumps=lambda o: json.dumps(o, indent=1))


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    return json.dumps(schema, ensure_ascii=False)


def _operation(path: str, method: str, op: dict[str, Any]) -> Html:
    params = join(h("<li><code>$n</code> ($where$req) $d</li>", n=p["name"], where=p["in"],
                    req=", required" if p.get("required") else "",
                    d=p.get("description", "")) for p in op.get("parameters", []))
    body = EMPTY
    if "requestBody" in op:
        content = op["requestBody"]["content"]
        body = join(h("<p>Body <code>$ct</code>: <code>$s</code></p>", ct=ct,
                      s=_schema_text(c["schema"])) for ct, c in content.items())
    responses = join(
        h("<li><strong>$code</strong> $d $s</li>", code=code, d=r["description"],
          s=join(h("<code>$t</code>", t=_schema_text(c["schema"]))
                 for c in r.get("content", {}).values()))
        for code, r in op["responses"].items())
    anchor = f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", "")
    return h('<article class="card" id="$a"><h3><code>$m $p</code></h3><p>$s</p><p>$desc</p>'
             '$params$body<h4>Answers</h4><ul>$responses</ul></article>',
             a=anchor, m=method.upper(), p=path, s=op["summary"],
             desc=op.get("description", ""), body=body, responses=responses,
             params=h("<h4>Parameters</h4><ul>$x</ul>", x=params) if params else EMPTY)


async def doc(request: web.Request) -> web.StreamResponse:
    s = spec()
    by_tag: dict[str, list[Html]] = {}
    for path, methods in s["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append(_operation(path, method, op))
    sections = join(h("<section><h2>$t</h2>$ops</section>", t=tag, ops=join(ops))
                    for tag, ops in by_tag.items())
    schemas = join(h('<article class="card" id="schema-$n"><h3>$n</h3><pre>$j</pre></article>',
                     n=name, j=json.dumps(sc, indent=1, ensure_ascii=False))
                   for name, sc in s["components"]["schemas"].items())
    body = h('<p>$d</p><p>Machine-readable: <a href="/api/v1/openapi.json">openapi.json</a> '
             '(OpenAPI $v).</p>$sections<h2>Schemas</h2>$schemas',
             d=s["info"]["description"], v=s["openapi"], sections=sections, schemas=schemas)
    return page("smsd HTTP API", body, active="/api/v1/doc")


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/openapi.json", openapi_json, allow_head=False),
            web.get("/api/v1/doc", doc, allow_head=False)]
