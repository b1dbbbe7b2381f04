"""The fault tests' helper modules next to them (script_runs.py, scenario.py) import as
plain modules, in the test process as in the scenario scripts run as ``python FILE``."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
