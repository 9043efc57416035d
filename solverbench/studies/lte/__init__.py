"""The local-truncation-error study, a grid of ``kind: lte`` (see ``settings`` and ``study``)."""
