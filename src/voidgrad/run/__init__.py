"""The one run loop every long job shares (see :mod:`voidgrad.run.loop`)."""

from voidgrad.run.loop import Algorithm, Callback, RunState, Stop, record_callback, run

__all__ = ["Algorithm", "Callback", "RunState", "Stop", "record_callback", "run"]
