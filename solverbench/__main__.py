import gc
import os
import sys

from solverbench.cli import main

try:
    status = main()
except BrokenPipeError:  # the reader stopped early (`solverbench list | head`): not an error of the command
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exiting does not flush into the pipe
    sys.exit(1)
# The command is over and the process ends: what it made is frozen, so that the interpreter's last collections
# do not walk it (after a run that imported torch's compiler, through diffusers, that walk took a second).
# Exit handlers still run and modules are still torn down; only cycles among these objects stay unfreed.
gc.freeze()
sys.exit(status)
