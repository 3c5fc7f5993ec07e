"""The box's refusals, apart from the Box so services can catch them without importing it
(appliance.box imports the services package). appliance.box re-exports both."""

from __future__ import annotations


class BoxError(Exception):
    """A box operation was refused; the message says why and what to do."""


class PartialRestoreError(BoxError):
    """A restore stored the config but not all FLASHDIR items (flash full, write error).

    Unlike RestoreError something did change: `line` is the file's line of the first item
    not written; the items before it and the config are on the flash."""

    def __init__(self, line: int, cause: Exception) -> None:
        super().__init__(
            f"config restored; FLASHDIR items from line {line} on not written: {cause}"
        )
        self.line = line
