"""Suite-wide settings. (Fixtures for booting images come from the `ipva` pytest plugin.)"""

from __future__ import annotations

from hypothesis import settings

# The machines running the suite are shared and noisy: Hypothesis' per-example deadline
# would turn load into flaky failures. Example counts stay as each test sets them.
settings.register_profile("ipva", deadline=None)
settings.load_profile("ipva")
