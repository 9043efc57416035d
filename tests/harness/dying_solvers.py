"""The source of a plugin file for the worker tests: solvers ``PREFIX-euler`` and ``PREFIX-heun`` that behave as
euler and heun, bit for bit, and, as SOLVERBENCH_TEST_WORKERS says, hold their process's first solve until two
processes have reached theirs ("barrier:DIR"), or kill their process at its first solve: only the first process to
get there ("kill-one:DIR"), or every process ("kill-all")."""
import textwrap
from pathlib import Path

SOURCE = textwrap.dedent('''
    import os, signal, time
    from pathlib import Path

    from solverbench import register_solver
    from solvers.euler import Euler
    from solvers.heun import Heun

    FIRST = []

    def at_first_solve():
        mode = os.environ.get("SOLVERBENCH_TEST_WORKERS", "")
        if FIRST or not mode:
            return
        FIRST.append(True)
        how, _, where = mode.partition(":")
        if how == "barrier":
            (Path(where) / str(os.getpid())).touch()
            deadline = time.monotonic() + 60
            while len(list(Path(where).iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        elif how == "kill-all":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "kill-one":
            try:
                os.close(os.open(Path(where) / "killed", os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)

    @register_solver("PREFIX-euler")
    class DyingEuler(Euler):
        def solve(self, field, x, plan):
            at_first_solve()
            return super().solve(field, x, plan)

    @register_solver("PREFIX-heun")
    class DyingHeun(Heun):
        def solve(self, field, x, plan):
            at_first_solve()
            return super().solve(field, x, plan)
''')


def write_plugin(folder: Path, prefix: str) -> Path:
    """The plugin file in ``folder``, its solvers named ``{prefix}-euler`` and ``{prefix}-heun`` (one file per test
    module: a second file registering the same names would clash)."""
    path = folder / f"{prefix}_plugin.py"
    path.write_text(SOURCE.replace("PREFIX", prefix))
    return path
