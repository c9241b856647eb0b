"""Live views fed by a run while it runs: attach them with `%%bcc --attach NAME`."""
from .event_table import EventTable
from .uid_chart import UidChart

__all__ = ["EventTable", "UidChart"]
