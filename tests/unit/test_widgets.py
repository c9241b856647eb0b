"""Live views render from records on their own thread, only on change, and start fresh on every run."""
import threading
import time

from ebpf_lab.runner.run import Record
from ebpf_lab.widgets import CountsChart, EventTable, Log2Histogram, UidChart


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
    waiting = bytes(chart.widget.value)
    run = FakeRun()
    detach = chart.attach(run)
    run.on_records([Record("counts", {"17": 2}, 0), Record("other", {"6": 1}, 0),
                    Record("counts", {"17": 5, "6": 1}, 0)])
    detach()
    assert chart.counts == {17: 5, 6: 1} and chart.series(6) == [0, 1] and chart.series(17) == [2, 5]
    assert chart.label(17) == "UDP" and CountsChart().label(3) == "3"
    png = bytes(chart.widget.value)
    assert png.startswith(b"\x89PNG") and png != waiting
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
    run = FakeRun()
    detach = table.attach(run)
    run.on_records([Record("event", {"pid": i, "comm": "<x>"}, 0) for i in range(3)] + [Record("lost", 7, 0)])
    detach()
    assert (table.total, table.lost, len(table.arrivals)) == (3, 7, 3)
    assert table.final_display().data == table.widget.value
    assert "<b>3</b> events, <b>7</b> lost" in table.widget.value and "border-collapse" in table.widget.value
    assert "&lt;x&gt;" in table.widget.value and ">0</td>" not in table.widget.value


def test_a_long_run_keeps_bounded_state_that_still_spans_the_whole_run():
    chart, hist, table = CountsChart(), Log2Histogram(), EventTable(rows=3)
    chart.max_samples = hist.max_samples = 100  # read by each attach, like the defaults
    table.max_arrivals = 50
    runs = [FakeRun(), FakeRun(), FakeRun()]
    detach = [view.attach(run) for view, run in zip((chart, hist, table), runs)]
    batches = 20_000
    for i in range(batches):
        runs[0].on_records([Record("counts", {"1": i, "2": 2 * i}, 0)])
        runs[1].on_records([Record("hist", {"3": i + 1}, 0)])
        runs[2].on_records([Record("event", {"n": i}, 0), Record("event", {"n": -i}, 0)])
    for stop in detach:
        stop()
    assert 50 <= len(chart.history) <= 100 and 50 <= len(hist.history) <= 100
    for kept in (chart.series(1), [n - 1 for n in hist.totals()]):
        # The first and the newest sample, and evenly spaced ones between them: the run's shape.
        assert kept[0] == 0 and kept[-1] == batches - 1
        assert len({b - a for a, b in zip(kept, kept[1:-1])}) == 1, kept
    assert chart.series(2) == [2 * n for n in chart.series(1)]
    assert chart.counts == {1: batches - 1, 2: 2 * (batches - 1)}
    assert len(table.arrivals) == 50 and table.total == 2 * batches
    assert [ev["n"] for ev in table.latest] == [-(batches - 2), batches - 1, -(batches - 1)]


def test_the_runs_reader_never_waits_for_a_frame_being_drawn():
    drawing, release = threading.Event(), threading.Event()

    class SlowChart(CountsChart):
        def draw(self, fig):
            if self.counts:  # the frames of this run, not the waiting one
                drawing.set()
                release.wait(60)
            super().draw(fig)

    chart = SlowChart()
    chart.interval = 0.01
    run = FakeRun()
    detach = chart.attach(run)
    try:
        run.on_record(Record("counts", {"1": 1}, 0))
        assert drawing.wait(30), "the redraw thread drew nothing"
        reader = threading.Thread(target=run.on_records, args=([Record("counts", {"1": 2}, 0)],), daemon=True)
        reader.start()
        reader.join(30)  # a guard against a hang only: the batch is taken at once
        assert not reader.is_alive(), "the run's reader waited for a redraw"
        assert chart.counts == {1: 2} and not release.is_set()
    finally:
        release.set()
    detach()
    assert chart.series(1) == [1, 2]
