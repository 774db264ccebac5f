"""The raw AT client and simulator fixtures (tests/fakes/raw_at.py)."""

from tests.fakes.raw_at import make_sim, open_at, simulator

__all__ = ["make_sim", "open_at", "simulator"]
