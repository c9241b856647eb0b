"""The live log2 histogram labels buckets like bcc, keeps a frame per change and starts fresh on every run."""
import time

from ebpf_lab.runner.run import Record
from ebpf_lab.widgets import Log2Histogram
from ebpf_lab.widgets.histogram import bucket_label

from .test_widgets import FakeRun


def test_bucket_labels_are_print_log2_hist_ranges():
    # bpf_log2l(v) = floor(log2 v) + 1: 0 and 1 land in bucket 1, 2..3 in bucket 2, 512..1023 in bucket 10.
    assert [bucket_label(b) for b in (1, 2, 3, 4, 10)] == ["0 -> 1", "2 -> 3", "4 -> 7", "8 -> 15", "512 -> 1023"]


def test_histogram_keeps_a_frame_per_change_and_draws_the_span_of_buckets():
    hist = Log2Histogram(unit="ns", title="vfs_read")
    hist.interval = 0.01
    waiting = bytes(hist.widget.value)
    run = FakeRun()
    detach = hist.attach(run)
    for payload in ({}, {"12": 1}, {"12": 1}, {"12": 3, "15": 1, "13": 0}, {"12": 4, "15": 2}):
        run.on_record(Record("hist", payload, time.time()))
        run.on_record(Record("other", {"1": 99}, time.time()))  # another record name is not this view's
        time.sleep(0.05)
    detach()
    assert hist.buckets == {12: 4, 15: 2} and hist.total == 6
    assert hist.totals() == [1, 4, 6]  # repeated samples and zero counts added no frame
    assert hist.shown_buckets() == [12, 13, 14, 15]  # empty buckets between keep the axis a log2 scale
    assert 1 <= hist.redraws <= 3
    png = bytes(hist.widget.value)
    assert png.startswith(b"\x89PNG") and png != waiting and hist.final_display().data == png


def test_a_second_run_starts_an_empty_histogram():
    hist = Log2Histogram()
    first = FakeRun()
    hist.attach(first)()
    first.on_record(Record("hist", {"3": 9}, time.time()))
    hist.attach(FakeRun())
    assert hist.buckets == {} and hist.history == [] and hist.shown_buckets() == []
