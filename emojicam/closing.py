"""The one context-manager pair the resources share: leaving a `with` block closes the resource."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound="Closing")


class Closing:
    """A resource used with `with` (a camera, a decoder, an engine, a virtual camera): __exit__ calls close(),
    whatever ended the block."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
