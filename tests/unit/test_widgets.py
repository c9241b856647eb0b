"""Live views render from records on their own thread and keep the last frame."""
import time

from ebpf_lab.runner.run import Record
from ebpf_lab.widgets import EventTable, UidChart


class FakeRun:
    """Only the subscribe interface a view uses; the VM tests feed views from real runs."""

    def subscribe(self, on_line=None, on_record=None, on_event=None):
        self.on_record, self.on_event = on_record, on_event
        return lambda: None


def test_uid_chart_redraws_and_labels_users():
    chart = UidChart({1001: "alice"})
    chart.interval = 0.01
    run = FakeRun()
    chart.attach(run)
    run.on_record(Record("counts", {"1001": 4, "1002": 2}, time.time()))
    run.on_event({"kind": "exit", "status": 0})
    deadline = time.time() + 5
    while chart.redraws < 1 and time.time() < deadline:
        time.sleep(0.01)
    assert chart.counts == {1001: 4, 1002: 2}
    assert chart.label(1001) == "alice (1001)" and chart.label(1002) == "1002"
    png = bytes(chart.widget.value)
    assert png.startswith(b"\x89PNG") and chart.final_display().data == png


def test_event_table_counts_lost_events():
    table = EventTable(rows=2)
    for i in range(3):
        table.update(Record("event", {"pid": i, "comm": "<x>"}, 0))
    table.update(Record("lost", 7, 0))
    table.render()
    assert (table.total, table.lost) == (3, 7)
    assert "<b>3</b> events, <b>7</b> lost" in table.widget.value
    assert "&lt;x&gt;" in table.widget.value and "<td>0</td>" not in table.widget.value
