"""A training stage's section of the recipe. Named SFT stages (`sft_stages.<name>`) are `sft` with their own keys on top."""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

SFT_NAME = re.compile(r"^sft_[a-z0-9_]+$")


class SectionError(ValueError):
    pass


def sft_stage_names(cfg: DictConfig) -> list[str]:
    """The SFT stages of the run, in order: the keys of `sft_stages`, or just `sft`."""
    named = list(cfg.get("sft_stages") or {})
    return named or ["sft"]


def is_sft(cfg: DictConfig, name: str) -> bool:
    return name in sft_stage_names(cfg)


def key_of(cfg: DictConfig, name: str) -> str:
    """The dotted key a stage's own settings live under, for messages."""
    return f"sft_stages.{name}" if name != "sft" and is_sft(cfg, name) else name


def chat_kind(name: str) -> str:
    """The records a chat stage trains on: "dpo" (preference pairs) for dpo, "sft" (conversations) for the others."""
    return "dpo" if name == "dpo" else "sft"


def where(cfg: DictConfig, name: str, field: str) -> str:
    """The dotted key that sets `field` (dotted below the section) for a stage, for messages: a named SFT stage's
    own key when it sets it, else the `sft` key it inherits."""
    key = key_of(cfg, name)
    if key == name:
        return f"{name}.{field}"
    own = cfg.sft_stages[name]
    sets = isinstance(own, (dict, DictConfig)) and OmegaConf.select(OmegaConf.create(own), field) is not None
    return f"{key}.{field}" if sets else f"sft.{field}"


def section(cfg: DictConfig, name: str) -> DictConfig:
    """cfg[name], or for a named SFT stage `sft` merged with `sft_stages.<name>` (typed: an unknown key or a wrong
    type raises SectionError naming `sft_stages.<name>.<key>`)."""
    if name == "sft" or not is_sft(cfg, name):
        return cfg[name]
    if not SFT_NAME.match(name):
        raise SectionError(f"sft_stages.{name}: a named SFT stage is sft_<lowercase letters, digits, _>, e.g. "
                           "sft_general, sft_domain")
    own = cfg.sft_stages[name]
    if own is None:
        own = {}
    if not isinstance(own, (dict, DictConfig)):
        raise SectionError(f"sft_stages.{name}: a mapping of sft keys to change (may be empty), got {own!r}")
    own = OmegaConf.to_container(OmegaConf.create(own)) if isinstance(own, DictConfig) else dict(own)
    for a, b in (("datasets", "data"), ("data", "datasets")):  # a stage's own datasets replace sft's shorthand
        if a in own and b not in own:
            own[b] = []
    try:
        merged = OmegaConf.merge(cfg.sft, own)
    except OmegaConfBaseException as e:
        key = re.sub(r"^sft\.", "", getattr(e, "full_key", None) or "")
        raise SectionError(f"sft_stages.{name}.{key}: {str(e).splitlines()[0]}") from None
    return merged
