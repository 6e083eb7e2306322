"""Offline emulators of Google's token services for credproxy's integration tests.

See ``emulators.google`` for the API; ``python3 -m emulators --help`` (from Tests/integration) or
``python3 Tests/integration/emulators/run.py --help`` starts them standalone.
"""

from .google import *  # noqa: F401,F403
from .google import __all__  # noqa: F401
