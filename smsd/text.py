"""Message text rules: segment counting, sender IDs, originate clean-up, links.

Segment counting asks the PDU planner itself, so the number of parts shown to
a user, billed and stored is the number the modem will send.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from smsd.codec import gsm7
from smsd.codec.pdu import plan
from smsd.errors import BadTime, ValidationError


@dataclass(frozen=True)
class SegmentInfo:
    encoding: str  # "gsm7" or "ucs2"
    parts: int
    units: int  # septets (extension characters count 2) or UTF-16 code units


def segments(text: str) -> SegmentInfo:
    """How ``text`` goes out: GSM-7 160/153 septets a part, else UCS-2 70/67 units.

    Raises ``PduError`` (a ValidationError) for text no SMS can carry.
    """
    encoding, parts = plan(text)
    if encoding == "gsm7":
        units = gsm7.septet_count(text)
    else:
        units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    return SegmentInfo(encoding=encoding, parts=parts, units=units)


# --------------------------------------------------------------- sender ID

# SEED-NOTES "Sender ID": the characters an alphanumeric sender may hold.
SENDER_ID_ALPHABET = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    '@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&()*+,-./:;<>=?¡äöñüà'
)
SENDER_ID_MAX = 11  # at most 11 characters, spaces included (SEED-NOTES)


# Letters NFKD does not reduce to an allowed one, mapped to what they look
# like: stroked Latin letters and the Greek capitals GSM shows as Latin ones.
_SIMILAR = {
    "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ð": "D", "ð": "d", "Ħ": "H", "ħ": "h",
    "ı": "i", "Œ": "OE", "œ": "oe", "Þ": "Th", "þ": "th", "Ŧ": "T", "ŧ": "t",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}  # fmt: skip


def _allowed(candidate: str | None) -> bool:
    return bool(candidate) and all(c in SENDER_ID_ALPHABET for c in candidate or "")


# Invisible characters (format, control, lone combining marks) are dropped
# rather than shown as "?".
_INVISIBLE = frozenset({"Cf", "Cc", "Cs", "Mn", "Me"})


def _sender_char(ch: str) -> str:
    """One character of a name as the sender-ID alphabet can show it."""
    if unicodedata.category(ch) in _INVISIBLE:
        return ""
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    candidates: list[str | None] = []
    for form in (ch, base):
        candidates += [
            form,
            form.lower() if form.isupper() else None,  # non-Latin capitals: Ö -> ö
            _SIMILAR.get(form),  # Ł -> L
        ]
    for form in (ch, base):
        upper = form.upper()
        if len(upper) == 1 and upper != form:
            candidates += [upper, _SIMILAR.get(upper)]  # Greek small letters: δ -> Δ, ε -> E
    for candidate in candidates:
        if candidate and _allowed(candidate):
            return candidate
    return "?"


def sender_id_from_name(full_name: str, max_len: int = SENDER_ID_MAX) -> str:
    """An alphanumeric sender ID from a user's full name (SEED-NOTES rules).

    Runs of white space become one space; the result is cut to ``max_len``
    characters and never ends in a space.  Raises ValidationError when
    nothing of the name is left.
    """
    if max_len < 1:
        raise ValidationError(f"sender ID length limit {max_len} must be at least 1")
    name = unicodedata.normalize("NFC", " ".join(full_name.split()))
    mapped = "".join(_sender_char(ch) for ch in name)
    # Mapping can itself give spaces (NFKD of "¨" is a space and a mark).
    result = re.sub(" {2,}", " ", mapped).strip(" ")[:max_len].rstrip(" ")
    if not result:
        raise ValidationError(f"name {full_name!r} gives no usable sender ID")
    return result


# --------------------------------------------------------------- originate API

_ORIGINATE_REPLACED = str.maketrans({"'": " ", '"': " ", "\\": " ", "/": " "})


def sanitize_originate_text(text: str) -> str:
    """``' " \\ /`` become spaces, as the dialplan CURL originate API always did."""
    return text.translate(_ORIGINATE_REPLACED)


# --------------------------------------------------------------- links

# Carriers filter URLs, shortened ones above all, so the policy looks for a
# scheme, a "www." host, or a bare host ending in a common top-level domain.
_TLDS = (
    "com|net|org|info|biz|io|co|me|ly|gl|gd|to|app|dev|link|site|online|shop|store|"
    "xyz|page|live|club|top|eu|us|uk|ca|de|fr|it|es|nl|be|ch|at|se|dk|pl|cz|lt|sg|ru|cn|in|au"
)
_LINK_RE = re.compile(
    r"(?:\b[a-z][a-z0-9+.\-]*://\S"  # any scheme://
    r"|\bwww\.[a-z0-9\-]+\.\S"  # www.host.
    r"|\b(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+(?:" + _TLDS + r")\b(?![.\-]?[a-z0-9]))",
    re.IGNORECASE,
)


def contains_link(text: str) -> bool:
    """True when ``text`` holds something a carrier's filter reads as a URL."""
    return _LINK_RE.search(text) is not None


# --------------------------------------------------------------- Italian names

# Common Italian given names, lower case: Italian carriers filter alphanumeric
# senders that are given names (SEED-NOTES), so such a sender towards +39 warns.
ITALIAN_GIVEN_NAMES: frozenset[str] = frozenset(
    """
    adele adriana adriano agnese agostino alberto alba alberta alessandra alessandro
    alessia alessio alice alfredo alfonso alda aldo amalia ambra ambrogio amedeo
    anna annalisa antonella antonietta antonio angela angelo angelica anita arianna
    armando arturo assunta aurora barbara beatrice benedetta benedetto bernardo
    bianca bruna bruno camilla carla carlo carmela carmen carmine carolina caterina
    cecilia cesare chiara claudia claudio clara cristian cristiana cristina cristiano
    concetta corrado dalila damiano daniela daniele dario davide debora denis diana
    diego dino domenica domenico donatella donato edoardo elena eleonora elia elisa
    elisabetta emanuela emanuele emilia emilio emma enrico enza enzo erica ermanno
    ernesto ettore eugenio fabiana fabio fabrizio fausto federica federico filippo
    fiorella flavia flavio francesca francesco franco gabriele gabriella gaetano
    gaia giacomo gianluca gianni giada gino giorgia giorgio giovanna giovanni
    giulia giuliana giuliano giulio giuseppe giuseppina grazia graziella gregorio
    guido ilaria ines irene iris isabella ivan ivana ivo jacopo laura lorena lorenzo
    luca lucia luciana luciano lucio luigi luisa manuela manuel mara marcella
    marcello marco margherita maria mariangela marilena marina mario marisa marta
    martina massimo matilde matteo mattia maurizio mauro michela michele mirella
    mirko monica nadia nicola nicoletta nicolò noemi ornella orlando paola paolo
    pasquale patrizia patrizio piera piero pietro raffaele raffaella renata renato
    riccardo rita roberta roberto rocco romano rosa rosanna rosaria rossella ruggero
    sabrina salvatore samuele sandra sandro sara serena sergio silvana silvia
    silvio simona simone sofia stefania stefano susanna teresa tiziana tiziano
    tommaso ugo umberto valentina valentino valeria valerio vanessa vincenzo
    viola virginia vittoria vittorio walter
    """.split()
)


# --- postpone times ---------------------------------------------------------

POSTPONE_FORMAT = "%d/%m/%Y %H:%M"  # the originate API's `postpone`, `smsd send --at`
_POSTPONE_SHAPE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2})")


def parse_postpone(raw: str, timezone: str) -> datetime:
    """``dd/mm/yyyy HH:MM`` in ``timezone`` -> an aware datetime.

    Raises BadTime: ``kind="format"`` when the text does not have that shape,
    ``kind="date"`` when it has it but names no real time (31/02/2026 09:00,
    25:00), so the caller can say which.
    """
    shape = _POSTPONE_SHAPE.fullmatch(raw.strip())
    if shape is None:
        raise BadTime(raw, "format", f"{raw!r}: expected dd/mm/yyyy HH:MM")
    day, month, year, hour, minute = (int(g) for g in shape.groups())
    try:
        # datetime() says what is wrong ("day is out of range for month").
        return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(timezone))
    except ValueError as exc:
        raise BadTime(raw, "date", f"{raw!r} is not a valid date: {exc}") from None
