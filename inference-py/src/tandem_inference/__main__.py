"""`python -m tandem_inference`."""

import sys

from tandem_inference.cli import main

sys.exit(main())
