"""Messages from templates: one Django template per name and language, a block per part.

`notifications/messages/<language>/<template>.html` (or staff's MessageTemplate row of that
name and language, which replaces the file) holds the blocks `subject`, `text` (plain-text
e-mail), `html` (the e-mail's HTML body, wrapped in notifications/email_layout.html), `sms`,
`telegram` (Telegram's HTML: b, i, u, s, a, code, pre) and `inapp`. A language with neither
falls back to settings.LANGUAGE_CODE. Blocks render in their language and in the context's
timezone; plain-text parts render without HTML escaping, HTML parts (html, telegram) with it.

An SMS is kept within two segments (GSM-7: 306 characters, extension characters counting
twice; UCS-2: 134), shortened at a word boundary with "…" and never cut inside a URL.
"""

import math
import re
from dataclasses import dataclass

from django.conf import settings
from django.template import Context, TemplateDoesNotExist, TemplateSyntaxError, engines
from django.template.backends.django import Template as DjangoTemplate
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.safestring import mark_safe
from render_block import BlockNotFound
from render_block.django import django_render_block

from notifications.models import MessageTemplate

PARTS_BY_CHANNEL = {
    "email": ("subject", "text", "html"),
    "sms": ("sms",),
    "telegram": ("telegram",),
    "inapp": ("subject", "inapp"),
}
ESCAPED_PARTS = {"html", "telegram"}  # the rest is plain text: no HTML entities in an SMS
LAYOUT = "notifications/email_layout.html"
NAME = re.compile(r"[A-Za-z0-9_-]+")  # a template name never walks out of its folder

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")  # sent as an escape and the character: two septets
SMS_MAX_SEGMENTS = 2
ELLIPSIS = "…"
URL = re.compile(r"^(https?://|www\.)\S+$", re.IGNORECASE)
TRAILING_LINKS = re.compile(r"(?:\s+(?:https?://|www\.)\S+)+\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    html: str = ""
    language: str = ""  # the one rendered: the site's when the asked one has no template


class RenderError(Exception):
    """A template that cannot give a message: missing, broken, or failing on its context."""


def language_for(user) -> str:
    """The user's language if the site speaks it, else the site's (no user: the site's)."""
    language = getattr(user, "preferred_language", "") or ""
    return language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def _file_name(template: str, language: str) -> str:
    return f"notifications/messages/{language}/{template}.html"


class StaffTemplates:
    """Templates written by staff in the admin, by (name, language), compiled when first used."""

    def __init__(self, sources: dict[tuple[str, str], str]):
        self._sources = sources
        self._compiled: dict[tuple[str, str], DjangoTemplate] = {}

    @classmethod
    def of(cls, template: str, languages: list[str]) -> "StaffTemplates":
        """The rows of one template name in these languages, read now."""
        rows = MessageTemplate.objects.filter(name=template, language__in=languages)
        sources = rows.values_list("language", "source")
        return cls({(template, language): source for language, source in sources})

    def get(self, template: str, language: str) -> DjangoTemplate | None:
        """The compiled template, None if staff wrote none; TemplateSyntaxError if it does not compile."""
        key = (template, language)
        compiled = self._compiled.get(key)
        if compiled is None and key in self._sources:
            compiled = self._compiled[key] = engines["django"].from_string(self._sources[key])
        return compiled


def _load(template: str, language: str, staff: StaffTemplates | None) -> tuple[DjangoTemplate, str]:
    """(the template, the language it is in): staff's row first, then the file, in `language`
    and then in the site's language. `staff`: the rows already read (notifications.cache's
    snapshot), else they are read now."""
    if not NAME.fullmatch(template) or not NAME.fullmatch(language):
        raise RenderError(f"template {template!r} ({language}): not a template name or language")
    languages = list(dict.fromkeys([language, settings.LANGUAGE_CODE]))
    if staff is None:
        staff = StaffTemplates.of(template, languages)
    for candidate in languages:
        try:
            compiled = staff.get(template, candidate)
            if compiled is not None:
                return compiled, candidate
            return engines["django"].get_template(_file_name(template, candidate)), candidate
        except TemplateDoesNotExist:
            continue
        except TemplateSyntaxError as exc:
            raise RenderError(f"template {template!r} ({candidate}): syntax error: {exc}") from exc
    raise RenderError(f"template {template!r}: none in {', '.join(languages)} (file or admin template)")


def _clean(part: str, value: str) -> str:
    """Blocks without their surrounding whitespace; a one-line subject; text without runs of blank lines."""
    if part == "subject":
        return " ".join(value.split())
    if part == "html":
        return value.strip()
    lines = [line.rstrip() for line in value.strip().splitlines()]
    if part == "sms":
        return "\n".join(line for line in lines if line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def render(
    template: str, language: str, channel: str, context: dict, *, staff: StaffTemplates | None = None
) -> Rendered:
    """The message of `channel` from `template` in `language` (or the site's language); `staff`:
    the staff's templates as already read (else this template's rows are read now)."""
    if channel not in PARTS_BY_CHANNEL:
        raise RenderError(f"template {template!r}: unknown channel {channel!r}")
    compiled, language = _load(template, language, staff)
    parts: dict[str, str] = {}
    part = "context"
    try:
        with translation.override(language), timezone.override(context.get("timezone") or settings.TIME_ZONE):
            for part in PARTS_BY_CHANNEL[channel]:
                block = Context(context, autoescape=part in ESCAPED_PARTS)
                parts[part] = _clean(part, django_render_block(compiled, part, block))
            if "html" in parts:
                part = "layout"
                parts["html"] = render_to_string(
                    LAYOUT,
                    {**context, "subject": parts["subject"], "content": mark_safe(parts["html"])},  # noqa: S308 - rendered with autoescape
                )
    except BlockNotFound as exc:
        raise RenderError(f"template {template!r} ({language}): no block {part!r}") from exc
    except Exception as exc:
        raise RenderError(f"template {template!r} ({language}), {part}: {type(exc).__name__}: {exc}") from exc
    if channel == "sms":
        return Rendered(subject="", body=sms_fit(parts["sms"]), language=language)
    if channel == "telegram":
        return Rendered(subject="", body=parts["telegram"], language=language)
    if channel == "inapp":
        return Rendered(subject=parts["subject"], body=parts["inapp"], language=language)
    return Rendered(subject=parts["subject"], body=parts["text"], html=parts["html"], language=language)


# --- SMS ------------------------------------------------------------------------------------
def _is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def sms_segments(text: str) -> int:
    """How many SMS segments `text` takes: GSM-7 160 or 153 per part, else UCS-2 70 or 67."""
    if not text:
        return 0
    if _is_gsm7(text):
        length, single, part = sum(2 if char in GSM7_EXTENSION else 1 for char in text), 160, 153
    else:
        length, single, part = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if length <= single else math.ceil(length / part)


def _fits(text: str) -> bool:
    return sms_segments(text) <= SMS_MAX_SEGMENTS


def _shorten(text: str, suffix: str = "") -> str | None:
    """The longest word-boundary prefix of `text` with "…" (and `suffix`) that fits; None if
    not even its first word does (a first word that is not a URL is then cut)."""
    tokens = re.split(r"(\s+)", text.strip())  # words at even indexes, whitespace at odd ones
    for end in range(len(tokens) - 2, 0, -2):
        kept = "".join(tokens[:end]).rstrip(" ,;:-\u2013\u2014")
        candidate = kept + (" " if URL.match(tokens[end - 1]) else "") + ELLIPSIS + suffix
        if _fits(candidate):
            return candidate
    first = "" if URL.match(tokens[0]) else tokens[0]
    while first and not _fits(first + ELLIPSIS + suffix):
        first = first[:-1]
    return first + ELLIPSIS + suffix if first else None


def sms_fit(text: str) -> str:
    """`text` within two segments. The links it ends with (a payment link) are kept by
    shortening the text before them; if they cannot be, the whole text is shortened and a
    link that does not fit whole is dropped."""
    if _fits(text):
        return text
    links = TRAILING_LINKS.search(text)
    if links and links.start() > 0:
        shortened = _shorten(text[: links.start()], suffix=links.group().rstrip())
        if shortened:
            return shortened
    return _shorten(text) or ELLIPSIS
