"""Variants: named, declarative, training-free changes to the UNet, declared in figures.toml.

Pure Python (no torch): dodo.py and the spec read this at load time. A variant is one table,

    [variant.redilate]
    kind = "redilate"      # which change (KINDS below; each kind's code is its own module)
    levels = [2, 3]        # the kind's own fields
    until = 0.5            # the step window tau: applied during the first half of the steps

and `usual`, the model as trained, is always there. A generation names its variant; the sampler
installs the change around sampling and removes it after (pipeline/interventions.py). This module
checks the tables, says which fields each kind takes, and decides, from the model's geometry
alone, where a variant is exactly the model's own UNet (so that the evaluation samples those
images once). Changes to attention per layer are one kind among several:

    attention   a self-attention rule of pipeline/attention.py (logit scaling, the top-k rules)
    redilate    3x3 convolutions at chosen levels dilated by the size ratio (ScaleCrafter)
    resize      features after one down block resized to their trained size and back before
                the skip connections (Deep Shrink / HiDiffusion's RAU-Net; at smaller sizes the
                same change enlarges them: the mirror for small images)
    window      self-attention within windows of the trained token count, shifted every step
    hires       two stages: the trained size first, then the latent resized, re-noised and
                denoised at the requested size (the "hires fix")
    combine     several variants at once (their own windows)
"""
from __future__ import annotations

USUAL = "usual"

# kind -> {field: (description, check)}; `until` is added to every kind that has a step window.
ATTENTION_RULES = ("logit-scale", "topk-denominator", "topk-mask")
WINDOWED = ("attention", "redilate", "resize", "window")  # kinds with a step window
PROCEDURES = ("hires",)   # kinds that change the sampling procedure rather than the UNet


class VariantError(ValueError):
    """A problem in a [variant.*] table, as one line naming the variant and the field."""


def _int_list(value) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and len(set(value)) == len(value))


def _fraction(value, lo_open: bool = False) -> bool:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and (0 < value <= 1 if lo_open else 0 <= value <= 1)


KINDS = {
    "attention": {"rule": (f"one of {', '.join(ATTENTION_RULES)}",
                           lambda v: v in ATTENTION_RULES)},
    "redilate": {"levels": ("a non-empty list of UNet levels (0 = the latent's own resolution)",
                            _int_list)},
    "resize": {"level": ("the UNet level whose down block's output is resized (0 = the top)",
                         lambda v: isinstance(v, int) and not isinstance(v, bool))},
    "window": {},
    "hires": {"denoise": ("the share of the schedule run again at the requested size, in (0, 1]",
                          lambda v: _fraction(v, lo_open=True))},
    "combine": {"parts": ("a list of at least two other variants' names",
                          lambda v: isinstance(v, list) and len(v) >= 2
                          and all(isinstance(p, str) for p in v))},
}
UNTIL = ("the step window: the fraction of sampling steps, from the first, during which the "
         "change applies, in 0..1", _fraction)
DEFAULT_UNTIL = 1.0


def check(name: str, raw: dict) -> dict:
    """One [variant.<name>] table, checked and with its defaults filled in."""
    where = f"[variant.{name}]"
    if name == USUAL:
        raise VariantError(f"{where}: `usual` is the model as trained and cannot be redefined; "
                           f"give the variant another name")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise VariantError(f"{where}: a variant name must be letters, digits, '-' and '_'")
    if not isinstance(raw, dict) or "kind" not in raw:
        raise VariantError(f"{where}: missing field 'kind'; use one of {', '.join(KINDS)}")
    kind = raw["kind"]
    if kind not in KINDS:
        raise VariantError(f"{where}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    fields = dict(KINDS[kind])
    if kind in WINDOWED:
        fields["until"] = UNTIL
    extra = sorted(set(raw) - set(fields) - {"kind", "about"})
    if extra:
        allowed = ", ".join(sorted(fields)) or "no other field"
        raise VariantError(f"{where}: field {extra[0]!r} does not apply to kind {kind!r} "
                           f"(it takes {allowed})")
    out = {"kind": kind}
    for field, (what, ok) in fields.items():
        if field not in raw:
            if field == "until":
                out[field] = DEFAULT_UNTIL
                continue
            raise VariantError(f"{where}: missing field {field!r}: {what}")
        if not ok(raw[field]):
            raise VariantError(f"{where}: {field} = {raw[field]!r} must be {what}")
        out[field] = raw[field]
    if "about" in raw:
        if not isinstance(raw["about"], str):
            raise VariantError(f"{where}: about must be a string (a label for the page)")
        out["about"] = raw["about"]
    return out


def load(tables: dict) -> dict[str, dict]:
    """Every declared variant (checked), and `usual`. A combination's parts must be declared,
    windowed kinds and not combinations themselves, and at most one may change attention."""
    if not isinstance(tables, dict):
        raise VariantError("[variant]: declare each variant as its own table, [variant.<name>]")
    out = {USUAL: {"kind": "usual"}}
    for name, raw in tables.items():
        out[name] = check(name, raw)
    for name, v in out.items():
        if v["kind"] != "combine":
            continue
        attention_parts = 0
        for part in v["parts"]:
            p = out.get(part)
            if p is None:
                raise VariantError(f"[variant.{name}]: parts names {part!r}, which no "
                                   f"[variant.{part}] table declares")
            if p["kind"] not in WINDOWED:
                raise VariantError(f"[variant.{name}]: parts: {part!r} is a {p['kind']} "
                                   f"variant; only {', '.join(WINDOWED)} variants combine")
            attention_parts += p["kind"] in ("attention", "window")
        if attention_parts > 1:
            raise VariantError(f"[variant.{name}]: parts: at most one of them may change "
                               f"self-attention (an attention or a window variant)")
        if len(set(v["parts"])) != len(v["parts"]):
            raise VariantError(f"[variant.{name}]: parts lists a variant twice")
    return out


def changes(variants: dict, name: str) -> list[dict]:
    """The single changes a variant makes (a combination's parts, in order)."""
    v = variants[name]
    if v["kind"] == "combine":
        return [variants[p] for p in v["parts"]]
    return [] if v["kind"] == "usual" else [v]


def definition(variants: dict, name: str) -> dict:
    """What a variant is, fully resolved: part of every generation's recipe (cache key)."""
    v = variants[name]
    if v["kind"] == "combine":
        return {"kind": "combine", "parts": {p: variants[p] for p in v["parts"]}}
    return v


def check_geometry(variants: dict, geometry: dict) -> None:
    """Fields that depend on the model: levels it has, attention it has."""
    levels = geometry["unet_levels"]
    for name, v in variants.items():
        where = f"[variant.{name}]"
        if v["kind"] == "redilate":
            bad = [lv for lv in v["levels"] if not 0 <= lv < levels]
            if bad:
                raise VariantError(f"{where}: levels: this UNet has no level {bad[0]} (its levels "
                                   f"are 0..{levels - 1})")
        if v["kind"] == "resize" and not 0 <= v["level"] < levels - 1:
            raise VariantError(f"{where}: level = {v['level']}: the resized features must come "
                               f"from a down block with a level below it, 0..{levels - 2}")
        if v["kind"] in ("attention", "window") and not geometry["attention_levels"]:
            raise VariantError(f"{where}: this UNet has no self-attention to change")


def _level_sizes(geometry: dict, width: int, height: int) -> list[tuple[int, int]]:
    from .geometry import level_sizes

    return level_sizes(geometry, width, height)


def _trained_sizes(geometry: dict) -> list[tuple[int, int]]:
    t = geometry["train_size"]
    return _level_sizes(geometry, t, t)


def is_identity(variants: dict, name: str, geometry: dict, width: int, height: int) -> bool:
    """Whether the variant is exactly the model's own UNet (and sampler) at width x height, so
    that its images are the usual ones: every change is outside its reach there."""
    return all(_change_is_identity(c, geometry, width, height)
               for c in changes(variants, name))


def _change_is_identity(v: dict, geometry: dict, width: int, height: int) -> bool:
    kind = v["kind"]
    if kind in WINDOWED and v["until"] == 0:
        return True
    sizes, trained = _level_sizes(geometry, width, height), _trained_sizes(geometry)
    if kind == "attention":
        from .geometry import same_as_usual

        return same_as_usual(geometry, v["rule"], width, height)
    if kind == "redilate":  # a dilation only ever widens the kernel: none below the trained size
        return all(sizes[lv][0] <= trained[lv][0] and sizes[lv][1] <= trained[lv][1]
                   for lv in v["levels"])
    if kind == "resize":
        return sizes[v["level"] + 1] == trained[v["level"] + 1]
    if kind == "window":  # one window per axis is the layer's own attention
        return all(sizes[lv][0] <= trained[lv][0] and sizes[lv][1] <= trained[lv][1]
                   for lv in geometry["attention_levels"])
    if kind == "hires":
        return width == height == geometry["train_size"]
    raise AssertionError(kind)


def label(variants: dict, name: str) -> str:
    """A short label for a column heading: the variant's `about`, or its name."""
    return variants[name].get("about", name)
