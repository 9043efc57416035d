"""The SideNet investigation: how accurate per FLOP BA can be made at a few NFE on gmm64 and digits (README.md).

Its scripts run from the repository root as ``python -m research.sidenet.NAME``; what they found is under findings/.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
CHECKPOINTS = ROOT / "solvers" / "ba" / "checkpoints"  # the shipped SideNets
