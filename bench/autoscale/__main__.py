"""Entry point of `python -m bench.autoscale`."""

import sys

from bench.autoscale.runner import main

sys.exit(main())
