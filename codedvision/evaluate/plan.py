"""Checking the caller's choices of codecs and settings before any work starts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .codecs import CODECS, ImageCodec, Setting, get_codec


@dataclass
class Plan:
    """The codecs to run, in registry order, with their settings; and those skipped, with why."""

    codecs: list[ImageCodec]
    settings: dict[str, tuple[Setting, ...]]
    skipped: dict[str, str] = field(default_factory=dict)


def _unique(items: Iterable) -> list:
    return list(dict.fromkeys(items))


def make_plan(codecs: list[str] | None, settings: dict[str, list] | None) -> Plan:
    """Resolve codec names and settings; raise ValueError (one line) for anything wrong.

    codecs None means every codec available here except the opt-in ones (ImageCodec.opt_in,
    e.g. the very slow VVC); those and the unavailable ones are then skipped with a note. A
    codec asked for by name (in codecs or in settings) must be available. settings maps a codec
    name to the settings to run instead of its defaults.
    """
    settings = dict(settings or {})
    if codecs is not None:
        names = _unique(str(n).strip().lower() for n in codecs)
        if not names:
            raise ValueError("no codecs given")
    else:
        names = list(CODECS)
    for name in [*names, *settings]:
        if name not in CODECS:
            raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    if codecs is not None:
        extra = [n for n in settings if n not in names]
        if extra:
            raise ValueError(
                f"settings given for {', '.join(extra)}, which is not in the codecs to run"
            )
    asked = set(names if codecs is not None else ()) | set(settings)
    plan = Plan(codecs=[], settings={})
    for name in (n for n in CODECS if n in names):  # registry order, whatever the input order
        codec = get_codec(name)
        if codec.opt_in and name not in asked:
            plan.skipped[name] = codec.opt_in
            continue
        why = codec.unavailable_reason()
        if why:
            if name in asked:
                raise ValueError(f"codec {name!r} is not available here: {why}")
            plan.skipped[name] = why
            continue
        chosen = settings.get(name, codec.default_settings)
        if isinstance(chosen, (str, bytes)) or not isinstance(chosen, Iterable):
            chosen = [chosen]
        values = _unique(codec.check_setting(s) for s in chosen)
        if not values:
            raise ValueError(f"no settings given for {name}")
        plan.codecs.append(codec)
        plan.settings[name] = tuple(values)
    if not plan.codecs:
        raise ValueError("none of the codecs can run here: " + "; ".join(
            f"{n}: {w}" for n, w in plan.skipped.items()))
    return plan


def parse_settings(items: Iterable[str]) -> dict[str, list[str]]:
    """Settings from command-line text: 'jpeg=10,50,90' per codec; a bare '10,50' is codedvision's.

    The values stay text; make_plan converts and checks them per codec.
    """
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep:
            name, values = "codedvision", item
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not parts:
            raise ValueError(f"no settings in {item!r}")
        out.setdefault(name.strip().lower(), []).extend(parts)
    return out
