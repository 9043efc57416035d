"""The BA-solver (Bi-Anchor Interpolation Solver, arXiv 2601.21542), as docs/ba-solver.md states it.

- ``quadrature``: the rules as data (Gauss-Lobatto, Simpson, the two-interior-node rule,
  Gauss-Legendre);
- ``sidenet``: the SideNet models (this project's: MLP for vector samples, convolutional for
  images; and the authors' image SideNet, ``architecture: official``);
- ``setting``, ``config``: the SideNet settings, grouped (network, optimisation, chains, solves),
  each with its meaning and check, and the ``architecture`` and ``recipe`` presets;
- ``chains``, ``training``: chain training beside the frozen backbone;
- ``questions``: training on the questions of exact solves (``questions: solves`` or ``both``);
- ``checkpoint``: loading a SideNet file (read, recognise, check, build, fit), whose layouts are
  ``solverbench_format`` (this project's checkpoints) and ``released`` (the authors' SideNet files,
  read into ``architecture: official``), both read into a ``sidenet_file.SideNetFile``;
- ``cache``: SideNets trained once per backbone and settings, kept on disk;
- ``node_velocities``, ``schemes``: the bi- and single-anchor samplers;
- ``samplers``: the registered solvers ``ba``, ``ba-single`` and ``ba-oracle``;
- ``training_cli``: ``python -m solverbench train-sidenet``;
- ``checkpoints/gmm64.pt``: a SideNet for the ``gmm64`` preset (configs/ba_gmm.yaml's
  settings; ``python -m solverbench train-sidenet gmm --backbone-params '{preset: gmm64}'
  --out solvers/ba/checkpoints/gmm64.pt`` is its recipe, bit-identical only under the torch build
  and machine it was trained on, checkpoints/README.md); ``checkpoints/gmm64_solves.pt``: one
  trained on solve questions (checkpoints/README.md), and checkpoints for ``digits``.

Importing the package registers nothing: ``samplers`` registers the solvers and ``training_cli`` the
command, each named by an entry point (pyproject.toml), so reading the command's options needs no torch.
"""
