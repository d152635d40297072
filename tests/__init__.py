"""
The trial suite.  Hypothesis runs here without its timing checks (no
deadline per example, no "too slow" health check): on a shared 2-core
machine they measure the machine, not the code, and no test decides on
a time.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")
