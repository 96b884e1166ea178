"""Hypothesis profiles.

``make test`` and CI use ``repeatable``: every property test draws the same examples on every machine,
so a red CI run can be reproduced locally and a green one is not luck. To search for new failures,
run ``pytest --hypothesis-profile=explore`` (fresh random examples each run; failures are replayed
from ``.hypothesis/``).
"""

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("repeatable")
