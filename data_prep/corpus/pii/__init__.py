"""PII in Korean text: 주민/외국인등록번호, phones, e-mail, accounts, cards, passports, driver's
licences, IPs. `PIIStep(PIISettings(...))` pseudonymises (keyed, format-preserving fakes) or
masks (<|rrn|>, ...) them in every record; `Detector` and `Scrubber` work on plain strings."""

from data_prep.corpus.pii.patterns import KINDS, Detector, Found
from data_prep.corpus.pii.scrub import Scrubber, placeholder
from data_prep.corpus.pii.settings import DEFAULT_SALT, PIISettings, PIISettingsError
from data_prep.corpus.pii.step import PII_META, PIIStep

__all__ = ["KINDS", "Detector", "Found", "Scrubber", "placeholder", "DEFAULT_SALT", "PIISettings",
           "PIISettingsError", "PII_META", "PIIStep"]
