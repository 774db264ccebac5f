"""The console's own routes in the OpenAPI description (tag "console").

The console posts HTML forms (it works without script) to these routes,
which call the same core functions as the JSON API.  They are described so
that every HTTP endpoint of the daemon is; they answer HTML (or CSV, or
text/event-stream) to a signed-in browser, so schemathesis, which speaks
basic auth, leaves them out (tests/ui checks them instead).
"""

from __future__ import annotations

from typing import Any

HTML = {"text/html": {"schema": {"type": "string"}}}
CSV = {"text/csv": {"schema": {"type": "string"}}}
FORM = "application/x-www-form-urlencoded"


def _answers(ok: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "200": {"description": ok, "content": content or HTML},
        "303": {"description": "Done (POST) or not signed in (GET): go to Location"},
        "401": {"description": "Not signed in (script and event-stream requests)"},
        "403": {"description": "No valid CSRF token, or not allowed for this user",
                "content": HTML},
    }


def _op(summary: str, *, fields: tuple[str, ...] = (), content: dict[str, Any] | None = None,
        params: tuple[str, ...] = (), query: tuple[str, ...] = (),
        multipart: bool = False, form: bool = False) -> dict[str, Any]:
    """``fields`` (or ``form``: the CSRF token alone) make it a form POST."""
    op: dict[str, Any] = {"summary": summary, "tags": ["console"],
                          "security": [{"session": []}], "responses": _answers(summary, content)}
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in params]
    parameters += [{"name": q, "in": "query", "schema": {"type": "string"}} for q in query]
    if parameters:
        op["parameters"] = parameters
    if fields or form or multipart:
        props: dict[str, Any] = {f: {"type": "string"} for f in ("csrf", *fields)}
        if multipart:
            props["file"] = {"type": "string", "format": "binary"}
        op["requestBody"] = {"required": True, "content": {
            ("multipart/form-data" if multipart else FORM): {
                "schema": {"type": "object", "required": ["csrf"], "properties": props}}}}
    return op


_C = "/ui/conversations"
CONSOLE_PATHS: dict[str, Any] = {
    "/ui": {"get": _op("Redirect to the conversations")},
    "/ui/": {"get": _op("Redirect to the conversations")},
    "/ui/login": {"get": _op("The sign-in form"),
                  "post": _op("Sign in (sets the session cookie)",
                              fields=("username", "password"))},
    "/ui/logout": {"post": _op("Sign out", form=True)},
    "/ui/events": {"get": _op("Live updates: status, conversation, modems, call "
                              "(Server-Sent Events)",
                              content={"text/event-stream": {"schema": {"type": "string"}}})},
    _C: {"get": _op("The user's conversations"),
         "post": _op("Create or join a conversation", fields=("number", "service"))},
    _C + "/{id}": {"get": _op("A conversation's thread", params=("id",))},
    _C + "/{id}/reply": {"post": _op("Reply", params=("id",), fields=("text",))},
    _C + "/{id}/rename": {"post": _op("Rename", params=("id",), fields=("title",))},
    _C + "/{id}/participants": {"post": _op("Add a participant", params=("id",),
                                            fields=("extension",))},
    _C + "/{id}/participants/remove": {"post": _op("Remove a participant", params=("id",),
                                                   fields=("extension",))},
    _C + "/{id}/assign": {"post": _op("Assign", params=("id",), fields=("assignee",))},
    "/ui/send": {"get": _op("The send form", query=("to",)),
                 "post": _op("Send to one or many numbers", fields=("to", "text", "send_at"))},
    "/ui/send/bulk": {"post": _op("Send to the numbers of a CSV file",
                                  fields=("bulk-text", "bulk-send_at"), multipart=True)},
    "/ui/send/batch": {"post": _op("One batch of a bulk upload (JSON answer)",
                                   fields=("to", "text", "send_at"),
                                   content={"application/json": {"schema": {
                                       "type": "object"}}})},
    "/ui/messages": {"get": _op("Messages, filtered", query=(
        "state", "user", "gateway", "number", "since", "until"))},
    "/ui/messages.csv": {"get": _op("The filtered messages as CSV", content=CSV, query=(
        "state", "user", "gateway", "number", "since", "until"))},
    "/ui/messages/{id}": {"get": _op("A message's history timeline", params=("id",))},
    "/ui/modems": {"get": _op("Modems and gateways (admins)")},
    "/ui/modems/{modem}/probe": {"post": _op("Read signal and registration now",
                                             params=("modem",), form=True)},
    "/ui/modems/{modem}/ussd": {"post": _op("USSD (users in ussd_users)", params=("modem",),
                                            fields=("code",))},
    "/ui/stats": {"get": _op("Statistics of a month", query=("month",))},
    "/ui/stats.csv": {"get": _op("The month's report as CSV (admins)", content=CSV,
                                 query=("month",))},
    "/ui/blocklist": {"get": _op("Blocked numbers and opt-outs (admins)"),
                      "post": _op("Block a number", fields=("number", "reason"))},
    "/ui/blocklist/remove": {"post": _op("Unblock a number", fields=("number",))},
    "/ui/blocklist/opt-outs": {"post": _op(
        "Opt a number out (did: from that company number, '' = from every one)",
        fields=("number", "did"))},
    "/ui/blocklist/opt-outs/remove": {"post": _op(
        "Lift an opt-out (did: its company number, '' = recorded without one)",
        fields=("number", "did"))},
    "/ui/search": {"get": _op("Search users, conversations and contacts", query=("q",))},
    "/ui/phonebook": {"post": _op("Import contacts (CSV name,number)", fields=("x",),
                                  multipart=True)},
    "/ui/phonebook.csv": {"get": _op("Export the phonebook", content=CSV)},
    "/api/v1/doc": {"get": _op("This description as a page")},
}

SESSION_SCHEME = {"type": "apiKey", "in": "cookie", "name": "smsd_session"}
