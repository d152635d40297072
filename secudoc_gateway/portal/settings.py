"""
The settings page (SPEC 3 and 9): a tenant's admins set the keys of
the installation guide's chapter 11 and every other key not reserved
to the operator.  Each field shows the effective value and where it
comes from (the tenant file, its default, or the portal: who, when),
and can be reset to the file's value.

A post is checked as a whole, by the tenant file's own reader on the
file merged with the portal's values (``config.tenants.withOverrides``),
so its messages are ``check-config``'s, shown beside their fields
(``key: what is wrong``) and nothing is saved while one is wrong.  Each
changed key is then one transaction of the ``SettingsStore``: the row,
the change counter and its admin event together.  A key the operator
owns is refused by the store, also when a hand-made post names it.
"""

from __future__ import annotations

import enum
import tomllib
from typing import Any, Optional

import attrs

from secudoc_gateway.config import Tenant
from secudoc_gateway.config.tenants import OPERATOR_KEYS, PORTAL_KEYS, portalKeyProblem, withOverrides
from secudoc_gateway.display import shown
from secudoc_gateway.notices.settings import SETTING_TEXTS
from secudoc_gateway.notices.texts import formatMoment
from secudoc_gateway.portal.pages import Visit, notFound, page, redirect, refusedForm
from secudoc_gateway.portal.routes import ADMIN_ONLY, Route
from secudoc_gateway.settings import LiveSettings, Override, SettingRefused, shownValue
from secudoc_gateway.web.pages import formValue

GROUPS = (
    ("settings_group_mail", ("confirmation_mail", "required_header", "content_mode", "auto_create_users")),
    ("settings_group_policy", ("mode", "min_attachment_size", "exclude_senders", "exclude_recipients", "users",
                               "unknown_sender")),
    ("settings_group_pages", ("language", "organisation", "help_contact", "disclaimer", "link_expiry_days",
                              "recipient_verification", "download_notification")),
    ("settings_group_portal", ("admins", "portal_login", "saml_metadata_url", "saml_user_groups",
                               "saml_admin_groups")),
    ("settings_group_scan", ("on_malware", "on_scan_error")),
)
assert sorted(k for _, keys in GROUPS for k in keys) == sorted(PORTAL_KEYS)

# A field's kind, from the tenant file's default for its key.
BOOLEAN, INTEGER, CHOICE, LIST, TEXT = "boolean", "integer", "choice", "list", "text"
# Group ids go on one line, comma-separated (the guide's step 19); other lists one per line.
ONE_LINE_LISTS = frozenset({"saml_user_groups", "saml_admin_groups"})
FIELD_LIMIT = 20000

_DEFAULTS = {field.name: field.default for field in attrs.fields(Tenant)}


def kindOf(key: str) -> str:
    default = _DEFAULTS[key]
    if isinstance(default, bool):
        return BOOLEAN
    if isinstance(default, int):
        return INTEGER
    if isinstance(default, enum.Enum):
        return CHOICE
    if isinstance(default, tuple):
        return LIST
    return TEXT


def _choices(key: str) -> list[enum.Enum]:
    default = _DEFAULTS[key]
    assert isinstance(default, enum.Enum)
    return list(type(default))


def fromForm(key: str, text: str) -> Any:
    """
    A posted field as the tenant file would hold it.  What cannot be
    that type stays text, so the reader says what is wrong in its words.
    """
    kind = kindOf(key)
    if kind == BOOLEAN:
        return {"true": True, "false": False}.get(text.strip(), text)
    if kind == INTEGER:
        stripped = text.strip()
        return int(stripped) if stripped.isascii() and stripped.lstrip("-").isdigit() else stripped
    if kind == LIST:
        return [part.strip() for line in text.splitlines() for part in line.split(",") if part.strip()]
    return text.strip()


def toForm(key: str, value: Any) -> str:
    """An effective value as its field shows it."""
    kind = kindOf(key)
    if kind == BOOLEAN:
        return "true" if value else "false"
    if kind == CHOICE:
        return str(value.value)
    if kind == LIST:
        return (", " if key in ONE_LINE_LISTS else "\n").join(value)
    return str(value)


def problemsByKey(tenant: Tenant, problems: list[str]) -> tuple[dict[str, str], list[str]]:
    """``FILE: key: what`` as the portal says it (``key: what``), beside its field or else on top."""
    fields: dict[str, str] = {}
    general: list[str] = []
    for problem in problems:
        text = problem.removeprefix(f"{tenant.source}: ")
        key, _, what = text.partition(": ")
        if key in PORTAL_KEYS and what:
            fields[key] = f"{fields[key]}; {text}" if key in fields else text
        else:
            general.append(text)
    return fields, general


def _source(visit: Visit, key: str, override: Optional[Override], inFile: bool) -> str:
    t = visit.t
    if override is not None:
        return t["source_portal"].format(who=shown(override.who), when=formatMoment(override.at, visit.language))
    return t["source_file"] if inFile else t["source_default"]


def _document(tenant: Tenant) -> dict[str, Any]:
    try:
        return tomllib.loads(tenant.document)
    except tomllib.TOMLDecodeError:
        return {}


def _live(visit: Visit) -> Optional[tuple[LiveSettings, Tenant]]:
    live = visit.portal.settings
    if live is None or visit.session is None:
        notFound(visit)
        return None
    tenant = live.fileTenant(visit.session.tenant)
    if tenant is None:
        notFound(visit)
        return None
    return live, tenant


def _show(visit: Visit, live: LiveSettings, fileTenant: Tenant, code: int = 200, posted: Optional[dict[str, str]] = None,
          errors: Optional[dict[str, str]] = None, general: Optional[list[str]] = None, notice: str = "") -> None:
    assert visit.tenant is not None
    t = visit.t
    words = SETTING_TEXTS[visit.language if visit.language in SETTING_TEXTS else "en"]
    overrides = live.overridesOf(fileTenant.id)
    inFile = _document(fileTenant)
    errors = errors or {}
    groups = []
    for title, keys in GROUPS:
        fields = []
        for key in keys:
            kind = kindOf(key)
            label, help = words[key]
            value = (posted or {}).get(key, toForm(key, getattr(visit.tenant, key)))
            choices = []
            if kind == CHOICE:
                choices = [{"value": m.value, "label": words.get(f"{key}={m.value}", (m.value, ""))[0]}
                           for m in _choices(key)]
            elif kind == BOOLEAN:
                choices = [{"value": "true", "label": t["yes"]}, {"value": "false", "label": t["no"]}]
            fields.append({
                "key": key, "kind": kind, "label": label, "help": help, "value": value, "choices": choices,
                "error": errors.get(key, ""), "one_line": key in ONE_LINE_LISTS,
                "source": _source(visit, key, overrides.get(key), key in inFile),
                "overridden": key in overrides,
            })
        groups.append({"title": t[title], "fields": fields})
    operator = ", ".join(sorted(OPERATOR_KEYS))
    page(visit, code, "settings.html", t["settings"], groups=groups, general=general or [], notice=notice,
         operator=t["settings_operator"].format(keys=operator), action=f"{visit.portal.base}/settings",
         current="settings", wrong=t["settings_wrong"] if errors or general else "")


async def show(visit: Visit) -> None:
    found = _live(visit)
    if found is None:
        return
    live, fileTenant = found
    saved = formValue(visit.request, "saved", 1)
    notice = {"1": visit.t["settings_saved"], "0": visit.t["settings_unchanged"]}.get(saved or "", "")
    _show(visit, live, fileTenant, notice=notice)


async def save(visit: Visit) -> None:
    found = _live(visit)
    if found is None:
        return
    live, fileTenant = found
    assert visit.session is not None and visit.tenant is not None
    if refusedForm(visit, "settings"):
        return
    who = visit.session.address
    args: dict[bytes, list[bytes]] = visit.request.args or {}
    reset = formValue(visit.request, "reset", 64)
    if reset is not None:
        try:
            changed = await live.change(fileTenant.id, reset, None, who)
        except SettingRefused as e:
            errors, general = problemsByKey(fileTenant, e.problems)
            _show(visit, live, fileTenant, 400, errors=errors, general=general)
            return
        redirect(visit.request, f"{visit.portal.base}/settings?saved={int(changed)}")
        return
    posted: dict[str, str] = {}
    refused: list[str] = []
    for raw in args:
        name = raw.decode("utf-8", "replace")
        if name == "csrf":
            continue
        why = portalKeyProblem(name)
        if why is not None:
            refused.append(f"{name}: {why}")
            continue
        posted[name] = (formValue(visit.request, name, FIELD_LIMIT) or "")
    if refused:
        _show(visit, live, fileTenant, 400, general=refused)
        return
    # Only what the form changes: a field sent back as shown is no change.
    current = {key: o.value for key, o in live.overridesOf(fileTenant.id).items()}
    wanted = {key: fromForm(key, text) for key, text in posted.items()
              if text.replace("\r\n", "\n").strip() != toForm(key, getattr(visit.tenant, key)).strip()}
    merged, problems = withOverrides(fileTenant, {**current, **wanted})
    if problems:
        errors, general = problemsByKey(fileTenant, problems)
        _show(visit, live, fileTenant, 400, posted=posted, errors=errors, general=general)
        return
    changed = False
    try:
        for key, value in wanted.items():
            if shownValue(getattr(merged, key)) == shownValue(getattr(visit.tenant, key)):
                continue  # the same effective value, written differently
            changed = await live.change(fileTenant.id, key, value, who) or changed
    except SettingRefused as e:  # another admin's change in between made it wrong
        errors, general = problemsByKey(fileTenant, e.problems)
        _show(visit, live, fileTenant, 400, posted=posted, errors=errors, general=general)
        return
    redirect(visit.request, f"{visit.portal.base}/settings?saved={int(changed)}")


ROUTES = (
    Route("GET", "settings", show, ADMIN_ONLY),
    Route("POST", "settings", save, ADMIN_ONLY),
)
