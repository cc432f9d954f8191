"""Learned DADA: the feature network F (``model``), training (``train``, ``unroll``), datasets
(``datasets``) and evaluation (``evaluate``). Torch + numpy only; nothing here downloads."""
