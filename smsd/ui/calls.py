""""During a call": the user's current call with "SMS to this caller".

The call comes from smsd.asterisk.calls (AMI events), the same data as
``GET /api/v1/calls/current``.  The button posts the Create form of the
conversations page (``POST /ui/conversations``), which opens the existing
conversation with that number on the service or creates it.  The box is a
live region: the event stream sends ``call`` when the user's phone rings,
is answered or hangs up.
"""

from __future__ import annotations

from urllib.parse import quote

from smsd.api.calls import current_calls
from smsd.asterisk.calls import Call
from smsd.config import User
from smsd.errors import InvalidNumber
from smsd.numbers import parse_e164
from smsd.services import Services
from smsd.ui.render import EMPTY, Html, h, hidden_csrf, join
from smsd.ui.widgets import when

STATE_WORDS = {"ringing": "ringing", "ring": "dialling", "up": "talking", "down": "ringing"}


def _sms_form(number: str, services: Services, user: User, csrf: str, n: int) -> Html:
    conv = services.conversations
    options = conv.services_for(user) if conv is not None else []
    if not options:  # no service with an SMS number: a one-way SMS is still possible
        return h('<a class="button" href="$href">SMS to this caller</a>',
                 href=f"/ui/send?to={quote(number)}")
    if len(options) == 1:
        service = h('<input type="hidden" name="service" value="$s">', s=options[0].name)
    else:
        opts = join(h('<option value="$v">$t</option>', v=s.name,
                      t=f"{s.name} ({s.did})" if s.name != s.did else s.did) for s in options)
        service = h('<label for="call-service-$n">Service</label>'
                    '<select id="call-service-$n" name="service">$opts</select>', n=n, opts=opts)
    return h('<form class="inline" method="post" action="/ui/conversations">$csrf'
             '<input type="hidden" name="number" value="$number">$service'
             '<button type="submit">SMS to this caller</button></form>',
             csrf=hidden_csrf(csrf), number=number, service=service)


def _one(call: Call, services: Services, user: User, csrf: str, n: int) -> Html:
    state = STATE_WORDS.get(call.state, call.state)
    way = {"in": "Incoming call", "out": "Outgoing call"}.get(call.direction or "", "Call")
    who = call.number or "an unknown number"
    name = h(" ($name)", name=call.name) if call.name else EMPTY
    try:
        number = parse_e164(call.number or "")
    except InvalidNumber:
        number = None
    action = (_sms_form(number, services, user, csrf, n) if number else
              h('<p class="empty">$why</p>', why="No SMS: not an outside number in "
                "international form." if call.number else "No SMS: the number is not known yet."))
    return h('<div class="card call" data-call="$channel"><p><strong>$way</strong> '
             '$dir <span class="number">$who</span>$name · $state · since $since</p>'
             '$action</div>', channel=call.channel, way=way,
             dir="from" if call.direction == "in" else "with", who=who, name=name,
             state=state, since=when(call.since, services.config.policy.timezone),
             action=action)


def call_box(services: Services, user: User, csrf: str) -> Html:
    """The live region; empty when the user is on no call (or calls are not followed)."""
    _, calls = current_calls(services, user)
    inner = join(_one(c, services, user, csrf, n) for n, c in enumerate(calls))
    return h('<section id="current-call" data-live-region aria-label="Current call">'
             '$inner</section>', inner=inner)
