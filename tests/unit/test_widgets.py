"""Live views render from records on their own thread, only on change, and start fresh on every run."""
import time

from ebpf_lab.runner.run import Record
from ebpf_lab.widgets import CountsChart, EventTable, UidChart


class FakeRun:
    """Only the subscribe interface a view uses; the VM tests feed views from real runs."""

    def subscribe(self, on_line=None, on_record=None, on_event=None, on_records=None):
        self.on_records, self.on_event = on_records, on_event
        return lambda: None

    def on_record(self, record):
        self.on_records([record])


def wait_for(predicate, seconds=5.0):
    deadline = time.time() + seconds
    while not predicate() and time.time() < deadline:
        time.sleep(0.01)
    return predicate()


def test_uid_chart_draws_counts_over_time_only_when_they_change():
    chart = UidChart({1001: "alice"})
    chart.interval = 0.01
    waiting = bytes(chart.widget.value)
    run = FakeRun()
    detach = chart.attach(run)
    for counts in ({"1001": 1}, {"1001": 1}, {"1001": 3, "1002": 1}, {"1001": 3, "1002": 1}, {"1001": 4, "1002": 2}):
        run.on_record(Record("counts", counts, time.time()))
        time.sleep(0.05)
    detach()
    assert chart.counts == {1001: 4, 1002: 2}
    assert [c for _, c in chart.history] == [{1001: 1}, {1001: 3, 1002: 1}, {1001: 4, 1002: 2}]
    assert 1 <= chart.redraws <= 3  # repeated samples drew nothing
    assert chart.label(1001) == "alice (1001)" and chart.label(1002) == "1002"
    png = bytes(chart.widget.value)
    assert png.startswith(b"\x89PNG") and png != waiting and chart.final_display().data == png


def test_counts_chart_labels_keys_with_its_function_and_keeps_each_series():
    chart = CountsChart(title="packets per IP protocol", label={17: "UDP", 6: "TCP"}.get)
    chart.update(Record("counts", {"17": 2}, 0))
    chart.update(Record("other", {"6": 1}, 0))
    chart.update(Record("counts", {"17": 5, "6": 1}, 0))
    assert chart.counts == {17: 5, 6: 1} and chart.series(6) == [0, 1] and chart.series(17) == [2, 5]
    assert chart.label(17) == "UDP" and CountsChart().label(3) == "3"
    chart.render()
    assert bytes(chart.widget.value).startswith(b"\x89PNG")
    assert isinstance(UidChart(), CountsChart)


def test_a_second_run_starts_from_a_fresh_widget_and_empty_state():
    chart = UidChart()
    first = FakeRun()
    chart.attach(first)()
    old_widget = chart.widget
    first.on_record(Record("counts", {"1001": 9}, time.time()))
    old_widget.close()
    chart.attach(FakeRun())
    assert chart.widget is not old_widget and chart.counts == {} and chart.history == []


def test_event_table_styles_counts_and_waits_politely():
    table = EventTable(rows=2)
    assert "waiting for the first event" in table.widget.value
    for i in range(3):
        table.update(Record("event", {"pid": i, "comm": "<x>"}, 0))
    table.update(Record("lost", 7, 0))
    table.render()
    assert (table.total, table.lost, len(table.arrivals)) == (3, 7, 3)
    assert "<b>3</b> events, <b>7</b> lost" in table.widget.value and "border-collapse" in table.widget.value
    assert "&lt;x&gt;" in table.widget.value and ">0</td>" not in table.widget.value
