import sys
from pathlib import Path

# The tests import their helpers (pulumi_harness) as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
