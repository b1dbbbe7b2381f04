"""Shared test setup: helper modules next to the tests import as plain modules."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "storage"))
