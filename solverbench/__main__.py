import os
import sys

from solverbench.cli import main

try:
    sys.exit(main())
except BrokenPipeError:  # the reader stopped early (`solverbench list | head`): not an error of the command
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exiting does not flush into the pipe
    sys.exit(1)
