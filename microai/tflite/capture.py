"""Capture what native code (TFLM, the TFLite converter) writes to file descriptor 2.

Their C++ logging bypasses ``sys.stderr``; capturing the descriptor keeps pipeline logs quiet on
success and lets an error message quote what the native code said.
"""

from __future__ import annotations

import os
import sys
import tempfile


class StderrCapture:
    """``with StderrCapture() as cap: ...`` then ``cap.text``: everything written to fd 2 inside."""

    def __init__(self) -> None:
        self.text = ""

    def __enter__(self) -> StderrCapture:
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace")
        self._file.close()
