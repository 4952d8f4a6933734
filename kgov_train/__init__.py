"""kgov-train: offline, end-to-end training of Korean LLMs for the public sector."""

__version__ = "0.1.0"
