#!/usr/bin/env python3
"""Standalone launcher: ``python3 Tests/integration/emulators/run.py --dir DIR`` (same as
``python3 -m emulators`` from Tests/integration)."""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
# This directory holds google.py: keep it off sys.path so it cannot shadow the `google` namespace.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
sys.path.insert(0, os.path.dirname(_here))

from emulators.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
