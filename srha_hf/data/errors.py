"""The errors of reading a benchmark from disk; each message names the path and what was expected."""

from __future__ import annotations


class BenchmarkError(ValueError):
    """A dataset on disk does not have the layout, files or contents that were expected."""


class BenchmarkLayoutError(BenchmarkError, FileNotFoundError):
    """A root or folder is missing or empty: the message names the path and the expected layout."""


class UnreadableFileError(BenchmarkError, OSError):
    """An image or label file exists but cannot be decoded: the message names the file."""


class SizeMismatchError(BenchmarkError):
    """An image and its label differ in size (strict mode)."""
