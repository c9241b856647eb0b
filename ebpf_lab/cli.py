"""`ebpf-lab`: build and run the lab VM, run BCC programs in it, open the course."""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

from .errors import Interrupted, LabError, ProgramFailed, ProgramNotFound
from .paths import repo_dir
from .printable import printable
from .runner.protocol import DEFAULT_COMPILE_TIMEOUT, check_seconds

GUEST_PREFIX = "vm:"
# The course works offline: JupyterLab's server neither fetches Jupyter's news nor looks for updates...
OFFLINE_LAB = ["--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate"]
# ...and its page does not ask whether to: a config directory of ours, searched after the user's own,
# disables the plugin that asks (its page_config.json; the user's settings stay untouched).
LAB_CONFIG = Path(__file__).resolve().parent / "jupyter" / "lab_config"


def offline_lab_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a JupyterLab that asks nothing of the network: LAB_CONFIG added to JUPYTER_CONFIG_PATH."""
    paths = [p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    return {**env, "JUPYTER_CONFIG_PATH": os.pathsep.join([*paths, str(LAB_CONFIG)])}


def _vm(args: argparse.Namespace) -> int:
    from .vm import image
    from .vm.backend import select_backend

    backend = select_backend()
    if args.action == "build":
        image.build_image(force=args.force)
    elif args.action == "up":
        backend.up()
    elif args.action == "down":
        print("lab VM stopped" if backend.down() else "lab VM was not running")
    elif args.action == "status":
        print(f"vm:      {backend.name}, {backend.status()}")
        return 0 if backend.answers() else 3
    elif args.action == "ssh":
        from .lab import connect

        argv = connect().ssh.argv(" ".join(args.command) or "bash -l")
        if sys.stdin.isatty():
            argv.insert(1, "-t")
        os.execvp(argv[0], argv)
    return 0


def _run(args: argparse.Namespace) -> int:
    from .lab import connect

    lab = connect()
    if args.file.startswith(GUEST_PREFIX):
        # A program that lives in the VM, e.g. bcc's own tools: vm:/usr/sbin/execsnoop-bpfcc
        guest_path = args.file[len(GUEST_PREFIX):]
        source = lab.ssh.run(f"cat -- {shlex.quote(guest_path)}", check=False)
        if source.returncode != 0:
            raise ProgramNotFound(f"no such program in the lab VM: {guest_path}",
                                  "list bcc's tools with: ebpf-lab vm ssh ls /usr/sbin/*-bpfcc")
        text, filename = source.stdout.decode(errors="replace"), guest_path
    else:
        path = Path(args.file)
        if not path.is_file():
            raise ProgramNotFound(f"no such program: {path}", "give the path of a BCC Python file on this machine, "
                                  "or vm:/path for one in the lab VM")
        text, filename = path.read_text(), str(path)
    run = lab.run(text, timeout=args.timeout, compile_timeout=args.compile_timeout, workload=args.workload,
                  argv=args.args, filename=filename, check=False, raw=args.raw)
    if run.timed_out:
        print(f"ebpf-lab: stopped after {args.timeout:g} s of running (--timeout)", file=sys.stderr)
    run.raise_for_status()
    return run.status or 0


def _seconds(text: str) -> float:
    try:
        return check_seconds(text, "the value")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _course(args: argparse.Namespace) -> int:
    from .vm.backend import select_backend

    # A running Vagrant machine of this repo (or EBPF_LAB_TARGET) is used as it is; else the embedded VM.
    backend = select_backend()
    backend.prepare()
    backend.up()
    print(f"lab VM: {backend.describe()}")
    if importlib.util.find_spec("jupyterlab") is None:
        raise LabError("JupyterLab is not installed in this Python", "run: pip install -e '.[course]'")
    root = ["--allow-root"] if os.geteuid() == 0 else []  # Jupyter refuses root without it
    # This Python's Jupyter, whether or not its environment is activated (./lab.sh runs .venv/bin/ebpf-lab).
    cmd = [sys.executable, "-m", "jupyter", "lab", *root, *OFFLINE_LAB, str(repo_dir() / "notebooks"),
           *args.jupyter_args]
    return subprocess.call(cmd, env=offline_lab_env(dict(os.environ)))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebpf-lab", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    vm = sub.add_parser("vm", help="the lab VM: this repo's Vagrant machine if it runs, else the embedded VM "
                                   "(EBPF_LAB_TARGET chooses)").add_subparsers(dest="action", required=True)
    build = vm.add_parser("build", help="build the VM image from Debian packages (cached by its inputs)")
    build.add_argument("--force", action="store_true", help="rebuild the image even if cached")
    vm.add_parser("up", help="boot the VM and wait until it answers ssh")
    vm.add_parser("down", help="stop the VM")
    vm.add_parser("status", help="is the image built, is the VM running")
    ssh = vm.add_parser("ssh", help="a root shell in the lab VM, or run a command there")
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    for action in vm.choices.values():
        action.set_defaults(func=_vm)
    run = sub.add_parser("run", help="run a BCC Python program in the lab VM as root",
                         description="Run a BCC Python program in the lab VM as root, streaming its output. "
                                     "While bcc compiles, stderr shows how long it has taken; --timeout counts "
                                     "only the time after that.")
    run.add_argument("file", help="a Python file on this machine, or vm:/path for one in the VM "
                                  "(e.g. vm:/usr/sbin/execsnoop-bpfcc)")
    run.add_argument("args", nargs="*", help="arguments for the program (its sys.argv[1:]); put -- before ones that start with -")
    run.add_argument("--timeout", type=_seconds, metavar="S",
                     help="seconds the program may run once it has attached its probes (or loaded a program, or "
                          "printed); compiling does not count. Then SIGINT, and SIGKILL 3 s later")
    run.add_argument("--compile-timeout", type=_seconds, default=DEFAULT_COMPILE_TIMEOUT, metavar="S",
                     help=f"seconds the program may take to compile and attach before it is stopped "
                          f"(default {DEFAULT_COMPILE_TIMEOUT:g})")
    run.add_argument("--workload", "--load", dest="workload", action="append", default=[],
                     metavar="USER[:COUNT[@RATE/s]][:CMD]",
                     help="once the program runs, exec CMD (default /bin/true) COUNT times as USER, back to back "
                          "or RATE per second")
    run.add_argument("--raw", action="store_true",
                     help="write the program's output unchanged, control characters and all (by default they "
                          "are shown escaped, ESC as \\x1b, so that a program cannot drive the terminal)")
    run.set_defaults(func=_run)
    course = sub.add_parser("course", help="boot the lab VM if needed (building the embedded image, or using a running "
                                           "Vagrant machine), then open the notebooks in Jupyter Lab")
    course.add_argument("jupyter_args", nargs="*", help="passed on to jupyter lab, options too")
    course.set_defaults(func=_course)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    program_args: list[str] = []
    if argv[:1] == ["run"] and "--" in argv:
        # Everything after -- belongs to the program, even options that look like ours.
        cut = argv.index("--")
        argv, program_args = argv[:cut], argv[cut + 1:]
    jupyter_args: list[str] = []
    if argv[:1] == ["course"] and argv[1:2] not in (["-h"], ["--help"]):
        # Everything after `course` is jupyter lab's (argparse would take its options for ours).
        argv, jupyter_args = argv[:1], argv[1:]
    args = parser().parse_args(argv)
    if program_args:
        args.args += program_args
    if jupyter_args:
        args.jupyter_args = jupyter_args
    try:
        return args.func(args)
    except Interrupted as e:
        print(f"ebpf-lab: interrupted: {e}", file=sys.stderr)
        return 130
    except ProgramFailed as e:  # its details quote the program: its traceback, its compiler's errors
        print(f"ebpf-lab: {printable(str(e))}", file=sys.stderr)
        return 1
    except LabError as e:
        print(f"ebpf-lab: {printable(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ebpf-lab: interrupted; the program in the VM was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
