"""The recipe's `data.pii` block."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from data_prep.corpus.pii.patterns import CONTEXT_WINDOW, IP_PUBLIC_ONLY, KINDS

MODES = ("pseudonymize", "mask")
DEFAULT_SALT = "change-me"  # works, but anyone who knows it can recompute the fakes: warned about


class PIISettingsError(ValueError):
    pass


@dataclass
class PIISettings:
    enabled: bool = True  # find personal data in every record (kept and rejected) and replace it
    mode: str = "pseudonymize"  # pseudonymize: keyed format-preserving fakes | mask: typed placeholders <|rrn|>
    salt: str = DEFAULT_SALT  # secret key of the fakes (same value + same salt -> same fake); set it from an env var
    types: List[str] = field(default_factory=lambda: list(KINDS))  # kinds to detect; default all of KINDS
    context_window: int = CONTEXT_WINDOW  # chars before a number searched for context words (계좌, 여권, 주민, 면허, IP)
    # true: replace only public addresses, keep 10.x, 172.16-31.x, 192.168.x, 127.x, 240-255.x ...; false
    # (default): every address, since internal ones map a network (security documents, logs)
    ip_public_only: bool = IP_PUBLIC_ONLY

    def validate(self) -> None:
        """Raises PIISettingsError naming the recipe key."""
        def bad(key: str, msg: str) -> None:
            raise PIISettingsError(f"data.pii.{key}: {msg}")

        if self.mode not in MODES:
            bad("mode", f"must be one of {list(MODES)}, got {self.mode!r}")
        if not isinstance(self.salt, str) or not self.salt:
            bad("salt", "must be a non-empty string (the secret key of the pseudonyms)")
        types = list(self.types) if self.types is not None else []
        unknown = [t for t in types if t not in KINDS]
        if unknown:
            bad("types", f"unknown {unknown}; known: {list(KINDS)}")
        if not types:
            bad("types", f"empty; list some of {list(KINDS)} or set data.pii.enabled=false")
        if isinstance(self.context_window, bool) or not isinstance(self.context_window, int) \
                or not 1 <= self.context_window <= 200:
            bad("context_window", f"must be an integer in 1..200, got {self.context_window!r}")
        if not isinstance(self.ip_public_only, bool):  # a string "false" would read as true
            bad("ip_public_only", f"must be true or false, got {self.ip_public_only!r}")
