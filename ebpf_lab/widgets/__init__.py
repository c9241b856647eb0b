"""Live views fed by a run while it runs: attach them with `%%bcc --attach NAME`."""
from .counts_chart import CountsChart
from .event_table import EventTable
from .histogram import Log2Histogram
from .uid_chart import UidChart

__all__ = ["CountsChart", "EventTable", "Log2Histogram", "UidChart"]
