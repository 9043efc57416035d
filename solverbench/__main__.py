import sys

from solverbench.cli import main

sys.exit(main())
