"""Run the router app through the programmatic API: python3 tests/apps/serve_script.py PORT"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import ferrocorn  # noqa: E402

from tests.apps.router import app  # noqa: E402

if __name__ == "__main__":
    ferrocorn.serve(app, port=int(sys.argv[1]))
