"""The BA-solver (Bi-Anchor Interpolation Solver, arXiv 2601.21542), as BA_SOLVER.md states it.

- ``quadrature``: the rules as data (Gauss-Lobatto, Simpson, the two-interior-node rule,
  Gauss-Legendre);
- ``sidenet``: the SideNet models (this project's: MLP for vector samples, convolutional for
  images; and the authors' image SideNet, ``architecture: official``);
- ``config``: the SideNet settings (architecture and training knobs, the ``architecture`` and
  ``recipe`` presets);
- ``chains``, ``training``: chain training beside the frozen backbone;
- ``questions``: training on the questions of exact solves (``questions: solves`` or ``both``);
- ``checkpoint``, ``cache``: checkpoints, and the cache keyed by backbone + settings;
- ``released``: the authors' SideNet files, read into ``architecture: official``;
- ``node_velocities``, ``schemes``: the bi- and single-anchor samplers;
- ``samplers``: the registered solvers ``ba``, ``ba-single`` and ``ba-oracle``;
- ``training_cli``: what ``python -m solverbench train-sidenet`` asks of ``ba``;
- ``checkpoints/gmm64.pt``: a SideNet for the ``gmm64`` preset (configs/ba_gmm.yaml's
  settings; ``python -m solverbench train-sidenet gmm --backbone-params '{preset: gmm64}'
  --out solvers/ba/checkpoints/gmm64.pt`` is its recipe, bit-identical only under the torch build
  and machine it was trained on, checkpoints/README.md); ``checkpoints/gmm64_solves.pt``: one
  trained on solve questions (checkpoints/README.md), and checkpoints for ``digits``.
"""
from solvers.ba import samplers  # noqa: F401  (registers the solvers)
