"""`ebpf-lab`: build and run the lab VM, run BCC programs in it, open the course."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .errors import LabError, ProgramFailed, ProgramNotFound
from .paths import repo_dir


def _vm(args: argparse.Namespace) -> int:
    from .vm import embedded, image

    if args.action == "build":
        image.build_image(force=args.force)
    elif args.action == "up":
        embedded.up()
    elif args.action == "down":
        print("lab VM stopped" if embedded.down() else "lab VM was not running")
    elif args.action == "status":
        st = embedded.state()
        built = image.find_image()
        print(f"image:   {built.dir if built else 'not built (run: ebpf-lab vm build)'}")
        if st:
            print(f"vm:      running (pid {st.pid}, {st.accel}, ssh on 127.0.0.1:{st.port})")
            if not built or st.image.dir != built.dir:
                print("         from an outdated image: restart it with: ebpf-lab vm down && ebpf-lab vm up")
        else:
            print("vm:      not running (start it with: ebpf-lab vm up)")
        return 0 if st else 3
    elif args.action == "ssh":
        from .lab import connect

        argv = connect().ssh.argv(" ".join(args.command) or "bash -l")
        if sys.stdin.isatty():
            argv.insert(1, "-t")
        os.execvp(argv[0], argv)
    return 0


def _run(args: argparse.Namespace) -> int:
    from .lab import connect

    path = Path(args.file)
    if not path.is_file():
        raise ProgramNotFound(f"no such program: {path}", "give the path of a BCC Python file on this machine")
    run = connect().run(path.read_text(), timeout=args.timeout, load=args.load, filename=str(path), check=False)
    if run.timed_out:
        print(f"ebpf-lab: stopped after the {args.timeout:g} s timeout", file=sys.stderr)
    run.raise_for_status()
    return run.status or 0


def _course(args: argparse.Namespace) -> int:
    from .vm import embedded, image

    image.build_image()
    embedded.up()
    root = ["--allow-root"] if os.geteuid() == 0 else []  # Jupyter refuses root without it
    cmd = ["jupyter", "lab", *root, str(repo_dir() / "notebooks"), *args.jupyter_args]
    return subprocess.call(cmd)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebpf-lab", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    vm = sub.add_parser("vm", help="the embedded lab VM").add_subparsers(dest="action", required=True)
    build = vm.add_parser("build", help="build the VM image from Debian packages (cached by its inputs)")
    build.add_argument("--force", action="store_true", help="rebuild the image even if cached")
    vm.add_parser("up", help="boot the VM and wait until it answers ssh")
    vm.add_parser("down", help="stop the VM")
    vm.add_parser("status", help="is the image built, is the VM running")
    ssh = vm.add_parser("ssh", help="a root shell in the lab VM, or run a command there")
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    for action in vm.choices.values():
        action.set_defaults(func=_vm)
    run = sub.add_parser("run", help="run a BCC Python program in the lab VM as root")
    run.add_argument("file")
    run.add_argument("--timeout", type=float, help="seconds before the program is interrupted (SIGINT, then SIGKILL)")
    run.add_argument("--load", action="append", default=[], metavar="USER[:COUNT[:CMD]]",
                     help="exec CMD (default /bin/true) COUNT times as USER once the program has attached")
    run.set_defaults(func=_run)
    course = sub.add_parser("course", help="build and boot the VM if needed, then open the notebooks in Jupyter Lab")
    course.add_argument("jupyter_args", nargs="*")
    course.set_defaults(func=_course)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ProgramFailed as e:
        print(f"ebpf-lab: {e}", file=sys.stderr)
        return 1
    except LabError as e:
        print(f"ebpf-lab: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ebpf-lab: interrupted; the program in the VM was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
