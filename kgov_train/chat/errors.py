"""The chat data layer's error."""

from __future__ import annotations


class ChatDataError(ValueError):
    """Chat or preference inputs that cannot be used: an unreadable file, a dataset without a valid record, no
    training record left. The message names the recipe key and the files."""
