"""The OpenAPI 3.1 description of every HTTP endpoint the daemon serves.

Written by hand next to the handlers' contracts (DESIGN.md "The originate
API", docs/internals.md) and checked against the running daemon by
schemathesis in the test suite: every answer must match the schema given
here, so this file cannot drift from the code unnoticed.
"""

from __future__ import annotations

from typing import Any

from smsd.ui.openapi_console import CONSOLE_PATHS, SESSION_SCHEME

JSON = "application/json"

ERROR_CODES = {
    "400": "The request is wrong; the body says why and nothing was stored.",
    "401": "Missing or wrong HTTP basic credentials.",
    "403": "The user's licence or role does not allow this.",
    "404": "No such item.",
    "413": "Request body larger than 2 MiB.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: str, schema: str = "Error") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        out[code] = _json(_ref(schema), ERROR_CODES.get(code, "Error"))
    return out


NULL_STR = {"type": ["string", "null"]}
NULL_INT = {"type": ["integer", "null"]}
ID_PARAM = {"name": "id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "string"}}, "additionalProperties": True,
    },
    "OriginateAnswer": {
        "description": "Wildix-compatible: success, warning (numbers refused) or error.",
        "type": "object", "required": ["type", "result"],
        "properties": {
            "type": {"enum": ["result", "warning", "error"]},
            "result": {"anyOf": [{"const": "Success"}, {"type": "array",
                                                        "items": {"type": "string"}},
                                 {"type": "null"}]},
            "reason": {"type": "string"},
        },
    },
    "Refusal": {
        "type": "object", "required": ["number", "reason"],
        "properties": {"number": {"type": "string"}, "reason": {"type": "string"}},
    },
    "SendRequest": {
        "type": "object", "required": ["to", "text"],
        "properties": {
            "to": {"anyOf": [{"type": "array", "items": {"type": "string"}, "minItems": 1},
                             {"type": "string"}],
                   "description": "E.164 numbers, a list or comma separated"},
            "text": {"type": "string", "maxLength": 670},
            "send_at": {"type": ["string", "null"], "description": "ISO 8601; naive is UTC"},
        },
    },
    "SendAnswer": {
        "type": "object", "required": ["ids"],
        "properties": {
            "ids": {"type": "array", "items": {"type": "integer"}},
            "refused": {"type": "array", "items": _ref("Refusal")},
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "state", "recipient", "text", "encoding", "parts", "origin",
                     "created_at", "updated_at", "part_states", "history"],
        "properties": {
            "id": {"type": "integer"},
            "state": {"enum": ["queued", "scheduled", "sending", "submitting", "sent",
                               "delivered", "failed", "expired"]},
            "user": NULL_STR, "sender": NULL_STR, "recipient": {"type": "string"},
            "text": {"type": "string"}, "encoding": {"type": "string"},
            "parts": {"type": "integer"}, "gateway": NULL_STR, "modem": NULL_STR,
            "origin": {"type": "string"}, "created_at": {"type": "string"},
            "send_at": NULL_STR, "updated_at": {"type": "string"}, "error": NULL_STR,
            "conversation_id": NULL_INT,
            "part_states": {"type": "array", "items": {"type": "object"}},
            "history": {"type": "array", "items": {
                "type": "object", "required": ["at", "state"],
                "properties": {"at": {"type": "string"}, "state": {"type": "string"},
                               "detail": NULL_STR}}},
        },
    },
    "Participant": {
        "type": "object", "required": ["extension", "active"],
        "properties": {"extension": {"type": "string"}, "active": {"type": "boolean"},
                       "joined_at": {"type": "string"}, "left_at": NULL_STR},
    },
    "Conversation": {
        "type": "object",
        "required": ["id", "title", "external", "service", "did", "participants"],
        "properties": {
            "id": {"type": "integer"}, "title": {"type": "string"},
            "external": {"type": "string", "description": "the customer's number"},
            "service": {"type": "object", "required": ["kind", "name"],
                        "properties": {"kind": {"enum": ["group", "did"]},
                                       "name": {"type": "string"}}},
            "did": {"type": "string"}, "assignee": NULL_STR,
            "created_at": {"type": "string"}, "updated_at": {"type": "string"},
            "last_message_at": NULL_STR,
            "participants": {"type": "array", "items": _ref("Participant")},
            "messages": {"type": "array", "items": _ref("ConversationItem")},
        },
    },
    "ConversationItem": {
        "type": "object", "required": ["direction", "id", "text", "at"],
        "properties": {"direction": {"enum": ["in", "out"]}, "id": {"type": "integer"},
                       "from": NULL_STR, "to": NULL_STR, "text": {"type": "string"},
                       "at": {"type": "string"}, "state": {"type": "string"},
                       "user": NULL_STR},
    },
    "Extension": {
        "type": "object", "required": ["extension"],
        "properties": {"extension": {"type": "string", "minLength": 1}},
    },
    "Blocked": {
        "type": "object", "required": ["number", "reason"],
        "properties": {"number": {"type": "string"}, "by": NULL_STR,
                       "reason": {"type": "string"}, "created_at": {"type": "string"}},
    },
    "OptOut": {
        "type": "object", "required": ["number", "did", "keyword"],
        "properties": {"number": {"type": "string"},
                       "did": {"type": "string",
                               "description": "the company number; '' = unknown (any)"},
                       "keyword": {"type": "string"}, "created_at": {"type": "string"}},
    },
    "Call": {
        "type": "object",
        "required": ["channel", "direction", "state", "number", "name", "since", "answered_at"],
        "properties": {
            "channel": {"type": "string", "description": "e.g. PJSIP/100-00000001"},
            "direction": {"enum": ["in", "out", None],
                          "description": "in: the phone was rung; out: it dialled"},
            "state": {"type": "string", "description": "ringing, up, ring, down, ..."},
            "number": {**NULL_STR, "description": "the other party's number when known"},
            "name": NULL_STR, "since": {"type": "string"}, "answered_at": NULL_STR},
    },
    "Health": {
        "type": "object", "required": ["status", "problems", "gateways", "modems", "queue"],
        "properties": {"status": {"enum": ["ok", "unhealthy"]},
                       "problems": {"type": "array", "items": {"type": "string"}},
                       "gateways": {"type": "object"}, "modems": {"type": "array"},
                       "queue": {"type": "object"}, "timezone": {"type": "string"},
                       "ami": {"type": ["object", "null"]}},
    },
}


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, tag: str, auth: bool = True,
        description: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    op["security"] = [{"basic": []}] if auth else []
    return op


_ORIGINATE_PARAMS = [
    {"name": "number", "in": "query", "schema": {"type": "string"},
     "description": "comma-separated E.164 numbers"},
    {"name": "message", "in": "query", "schema": {"type": "string", "maxLength": 300}},
    {"name": "postpone", "in": "query", "schema": {"type": "string"},
     "description": "dd/mm/yyyy HH:MM in the daemon's time zone"},
]
_ORIGINATE_RESPONSES = {
    "200": _json(_ref("OriginateAnswer"), "Queued (result) or partly refused (warning)"),
    **{c: _json(_ref("OriginateAnswer"), ERROR_CODES[c]) for c in ("400", "401", "403")},
    "413": _json(_ref("Error"), ERROR_CODES["413"]),
}
_CONV = "/api/v1/conversations"
_CONV_ANSWER = _json(_ref("Conversation"), "The conversation after the change")
_CONV_ERRORS = _errors("400", "401", "403", "404", "413")
_CONV_ERRORS["503"] = _json(_ref("Error"), "Conversations are not enabled in this daemon")

PATHS: dict[str, Any] = {
    "/api/v1/originate/sms": {
        "get": _op("Send an SMS (Wildix originate call)", _ORIGINATE_RESPONSES,
                   params=_ORIGINATE_PARAMS, tag="originate",
                   description="Query, form or JSON parameters; the answer's JSON spacing is "
                               "the Wildix contract's."),
        "post": {**_op("Send an SMS (Wildix originate call, form or JSON body)",
                       _ORIGINATE_RESPONSES, params=_ORIGINATE_PARAMS, tag="originate"),
                 "requestBody": {"required": False, "content": {
                     "application/x-www-form-urlencoded": {"schema": {
                         "type": "object", "properties": {
                             "number": {"type": "string"}, "message": {"type": "string"},
                             "postpone": {"type": "string"}}}}}}},
    },
    "/api/v1/sms": {
        "post": _op("Send to one or many numbers (all-or-nothing on number syntax)", {
            "201": _json(_ref("SendAnswer"), "Queued"),
            **_errors("400", "401", "403", "413")}, body=_ref("SendRequest"), tag="sms"),
        "get": _op("List messages, newest first", {
            "200": _json({"type": "object", "required": ["messages"], "properties": {
                "messages": {"type": "array", "items": _ref("Message")}}}, "A page"),
            **_errors("400", "401", "403")}, tag="sms", params=[
            {"name": "state", "in": "query", "schema": {"type": "string"}},
            {"name": "user", "in": "query", "schema": {"type": "string"}},
            {"name": "since", "in": "query", "schema": {"type": "string"}},
            {"name": "until", "in": "query", "schema": {"type": "string"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                          "maximum": 1000}},
            {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}}]),
    },
    "/api/v1/sms/{id}": {
        "get": _op("One message with its parts and history", {
            "200": _json(_ref("Message"), "The message"),
            **_errors("400", "401", "403", "404")}, tag="sms", params=[
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]),
    },
    "/api/v1/blocklist": {
        "get": _op("Blocked inbound senders, and the numbers that opted out (STOP)", {
            "200": _json({"type": "object", "required": ["blocked"], "properties": {
                "blocked": {"type": "array", "items": _ref("Blocked")},
                "opted_out": {"type": "array", "items": _ref("OptOut")}}}, "The lists"),
            **_errors("401", "403")}, tag="blocklist"),
        "post": _op("Block a number", {
            "201": _json({"type": "object", "required": ["blocked"],
                          "properties": {"blocked": {"type": "string"}}}, "Blocked"),
            **_errors("400", "401", "403", "413")}, tag="blocklist",
            body={"type": "object", "required": ["number"], "properties": {
                "number": {"type": "string"}, "reason": {"type": "string", "maxLength": 200}}}),
    },
    "/api/v1/blocklist/{number}": {
        "delete": _op("Unblock a number", {
            "200": _json({"type": "object", "required": ["unblocked"],
                          "properties": {"unblocked": {"type": "string"}}}, "Unblocked"),
            **_errors("400", "401", "403")}, tag="blocklist", params=[
            {"name": "number", "in": "path", "required": True, "schema": {"type": "string"}}]),
    },
    "/api/v1/opt-outs/{number}": {
        "delete": _op("Lift an opt-out: the number may be sent to again (admins)", {
            "200": _json({"type": "object", "required": ["opted_in", "did", "removed"],
                          "properties": {"opted_in": {"type": "string"}, "did": NULL_STR,
                                         "removed": {"type": "integer", "minimum": 0}}},
                         "Removed (removed = 0: the number had not opted out)"),
            **_errors("400", "401", "403")}, tag="blocklist", params=[
            {"name": "number", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "did", "in": "query", "schema": {"type": "string"},
             "description": "only the opt-out from this company number ('' = the one "
                            "recorded without a DID); absent: every opt-out of the number"}],
            description="A number opts out by texting STOP and back in with START; an "
                        "admin may lift it by hand (the daemon logs who did)."),
    },
    "/api/v1/modems/{modem}/ussd": {
        "post": _op("A USSD request (balance check) through one modem", {
            "200": _json({"type": "object", "required": ["modem", "code", "status"],
                          "properties": {"modem": {"type": "string"},
                                         "code": {"type": "string"},
                                         "status": {"type": "integer"}, "text": NULL_STR}},
                         "The network's answer (TS 27.007 7.15 status)"),
            **_errors("400", "401", "403", "404", "413"),
            "502": _json(_ref("Error"), "The modem refused the request"),
            "503": _json(_ref("Error"), "The modem is not ready or went away"),
            "504": _json(_ref("Error"), "No answer in time")}, tag="modems",
            params=[{"name": "modem", "in": "path", "required": True,
                     "schema": {"type": "string"}, "example": "gsm0"}],
            body={"type": "object", "required": ["code"],
                  "properties": {"code": {"type": "string", "example": "*100#"}}},
            description="Only for users listed in [gateways.gsm] ussd_users."),
    },
    "/api/v1/calls/current": {
        "get": _op("The user's current calls (from AMI), with the other party's number", {
            "200": _json({"type": "object", "required": ["extension", "tracking", "calls"],
                          "properties": {"extension": {"type": "string"},
                                         "tracking": {"type": "boolean"},
                                         "calls": {"type": "array", "items": _ref("Call")}}},
                         "The calls of the user's endpoint; tracking false: AMI is not "
                         "configured or not connected, so nothing is known"),
            **_errors("401", "403")}, tag="calls",
            description="Followed from Newchannel, NewConnectedLine, Newstate, DialBegin, "
                        "BridgeEnter and Hangup events (asterisk-conf/manager.conf lets "
                        "them through) and CoreShowChannels after each AMI login."),
    },
    "/api/v1/nodes": {
        "get": _op("Every smsd node of the database and whether it is alive", {
            "200": _json({"type": "object", "required": ["backend", "nodes"], "properties": {
                "backend": {"enum": ["sqlite", "postgresql"]},
                "nodes": {"type": "array", "items": {
                    "type": "object",
                    "required": ["name", "alive", "version", "gateways", "modems"],
                    "properties": {
                        "name": {"type": "string"}, "alive": {"type": "boolean"},
                        "this": {"type": "boolean"}, "version": {"type": "string"},
                        "heartbeat_at": {"type": "string", "format": "date-time"},
                        "gateways": {"type": "array", "items": {
                            "type": "object", "required": ["name", "available"],
                            "properties": {"name": {"type": "string"},
                                           "available": {"type": "boolean"}}}},
                        "modems": {"type": "array", "items": {
                            "type": "object", "required": ["id", "state"],
                            "properties": {"id": {"type": "string"},
                                           "state": {"type": "string"},
                                           "own_number": NULL_STR, "operator": NULL_STR}}},
                    }}}}}, "The nodes (on SQLite: this daemon only)"),
            **_errors("401", "403")}, tag="operations",
            description="On SQLite the one node is this daemon; with the shared PostgreSQL "
                        "store every node's heartbeat decides `alive`."),
    },
    _CONV: {
        "get": _op("The user's conversations", {
            "200": _json({"type": "object", "required": ["conversations"], "properties": {
                "conversations": {"type": "array", "items": _ref("Conversation")}}}, "List"),
            **_CONV_ERRORS}, tag="conversations"),
        "post": _op("Create (or join) the conversation with a number on a service", {
            "201": _json({"type": "object", "required": ["conversation", "created"],
                          "properties": {"conversation": _ref("Conversation"),
                                         "created": {"type": "boolean"}}}, "Created"),
            "200": _json({"type": "object", "required": ["conversation", "created"],
                          "properties": {"conversation": _ref("Conversation"),
                                         "created": {"type": "boolean"}}}, "Joined"),
            **_CONV_ERRORS}, tag="conversations",
            body={"type": "object", "required": ["number"], "properties": {
                "number": {"type": "string"}, "service": {"type": "string"}}}),
    },
    _CONV + "/{id}": {
        "get": _op("A conversation with its messages", {
            "200": _json(_ref("Conversation"), "The conversation"), **_CONV_ERRORS},
            tag="conversations", params=[ID_PARAM]),
    },
    _CONV + "/{id}/messages": {
        "get": _op("A conversation's messages, oldest first", {
            "200": _json({"type": "object", "required": ["messages"], "properties": {
                "messages": {"type": "array", "items": _ref("ConversationItem")}}},
                "Messages"), **_CONV_ERRORS}, tag="conversations", params=[ID_PARAM]),
        "post": _op("Reply to the customer (STOP on a US/Canadian DID blocks them)", {
            "202": _json({"type": "object", "required": ["id"],
                          "properties": {"id": {"type": "integer"}}}, "Queued"),
            "200": _json({"type": "object", "required": ["blocked", "id"],
                          "properties": {"blocked": {"const": True}, "id": {"type": "null"}}},
                         "STOP: the customer was blocked, nothing sent"),
            **_CONV_ERRORS}, tag="conversations", params=[ID_PARAM],
            body={"type": "object", "required": ["text"], "properties": {
                "text": {"type": "string", "maxLength": 670}}}),
    },
    _CONV + "/{id}/participants": {
        "post": _op("Add an internal participant", {"200": _CONV_ANSWER, **_CONV_ERRORS},
                    tag="conversations", params=[ID_PARAM], body=_ref("Extension")),
    },
    _CONV + "/{id}/participants/{ext}": {
        "delete": _op("Remove an internal participant", {"200": _CONV_ANSWER, **_CONV_ERRORS},
                      tag="conversations", params=[ID_PARAM, {
                          "name": "ext", "in": "path", "required": True,
                          "schema": {"type": "string"}}]),
    },
    _CONV + "/{id}/assign": {
        "post": _op("Assign to a member of the service", {"200": _CONV_ANSWER, **_CONV_ERRORS},
                    tag="conversations", params=[ID_PARAM], body=_ref("Extension")),
        "put": _op("Reassign", {"200": _CONV_ANSWER, **_CONV_ERRORS},
                   tag="conversations", params=[ID_PARAM], body=_ref("Extension")),
    },
    "/api/v1/stats": {
        "get": _op("A month's figures: total, per user, per gateway and per day", {
            "200": {"description": "The month (JSON, or CSV with format=csv)", "content": {
                JSON: {"schema": {"type": "object", "required": ["month", "total"],
                                  "additionalProperties": True}},
                "text/csv": {"schema": {"type": "string"}}}},
            **_errors("400", "401", "403")}, tag="reports", params=[
            {"name": "month", "in": "query", "schema": {"type": "string"},
             "description": "YYYY-MM (default: this month, in policy.timezone)"},
            {"name": "user", "in": "query", "schema": {"type": "string"},
             "description": "one user's figures (admins may name anyone)"},
            {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}}]),
    },
    "/api/v1/reports": {
        "get": _op("The message list (time, user, from, to, gateway, parts, status, cost)", {
            "200": {"description": "The rows (JSON, or CSV with format=csv)", "content": {
                JSON: {"schema": {"type": "object", "required": ["reports"], "properties": {
                    "reports": {"type": "array", "items": {"type": "object"}}}}},
                "text/csv": {"schema": {"type": "string"}}}},
            **_errors("400", "401", "403")}, tag="reports", params=[
            {"name": n, "in": "query", "schema": {"type": "string"}}
            for n in ("month", "since", "until", "user", "to", "state", "gateway")] + [
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}}]),
    },
    "/api/v1/mail2sms": {
        "post": {**_op("Mail2SMS: a raw e-mail (what `smsd mail2sms` posts)", {
            "201": _json(_ref("SendAnswer"), "Queued"),
            "400": _json({"type": "object"}, "Malformed mail, or every number refused"),
            **_errors("403", "404", "413")}, tag="mail2sms", auth=False,
            description="The mail's SMSPASSWORD: line is the credential; no basic auth."),
                 "requestBody": {"required": True, "content": {
                     "text/plain": {"schema": {"type": "string"}},
                     "message/rfc822": {"schema": {"type": "string"}}}}},
    },
    "/api/v1/classound/webhook": {
        "post": _op("The carrier's webhook: inbound SMS/MMS and delivery status", {
            "200": _json({"type": "object"}, "Taken"),
            **_errors("400", "401", "413")}, tag="classound", auth=False,
            body={"type": "object"},
            description="Signed with the shared secret ([gateways.classound] "
                        "webhook_secret) in the signature header; unsigned calls get 401."),
    },
    "/api/v1/mms/{key}/{name}": {
        "get": _op("A file of an inbound MMS", {
            "200": {"description": "The file", "content": {
                "application/octet-stream": {"schema": {"type": "string"}}}},
            **_errors("401", "403", "404")}, tag="mms", params=[
            {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]),
    },
    "/healthz": {
        "get": _op("Can this daemon send an SMS right now?", {
            "200": _json(_ref("Health"), "Healthy"),
            "503": _json(_ref("Health"), "Not healthy; problems say why")},
            tag="operations", auth=False),
    },
    "/metrics": {
        "get": _op("Prometheus metrics", {"200": {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}}}},
            tag="operations", auth=False),
    },
    "/api/v1/openapi.json": {
        "get": _op("This description", {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                   tag="operations", auth=False),
    },
}


def spec(server_url: str = "/") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smsd HTTP API",
            "version": "1",
            "description": "SMS gateway daemon for Asterisk. Authentication is HTTP basic "
                           "with the [[users]] of the config (API licence: UC-Business or "
                           "above). The web console at /ui/ stands on the same rules.",
        },
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                "session": SESSION_SCHEME},
            "schemas": SCHEMAS,
        },
        "paths": {**PATHS, **CONSOLE_PATHS},
    }
