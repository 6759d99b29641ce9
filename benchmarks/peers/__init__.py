"""Peer model servers for benchmark part A, run in virtualenvs of their own
(``scripts/peer_venvs.sh`` makes ``benchmarks/.venvs/NAME``), never imported by the suite."""
