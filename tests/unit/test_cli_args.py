"""How `ebpf-lab` splits its own arguments from the ones it passes on."""
from ebpf_lab import cli


def test_course_passes_every_argument_to_jupyter(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_course", lambda args: seen.append(args.jupyter_args) or 0)
    assert cli.main(["course", "--no-browser", "--port", "9999"]) == 0
    assert cli.main(["course"]) == 0
    assert seen == [["--no-browser", "--port", "9999"], []]


def test_run_passes_what_follows_double_dash_to_the_program(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_run", lambda args: seen.append((args.file, args.args, args.timeout)) or 0)
    assert cli.main(["run", "prog.py", "--timeout", "5", "--", "--interval", "1"]) == 0
    assert seen == [("prog.py", ["--interval", "1"], 5.0)]
