"""What differs between the Python versions adieu supports."""

from __future__ import annotations

import sys

__all__ = ["BaseExceptionGroup"]

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup
