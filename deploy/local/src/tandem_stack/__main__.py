"""`python -m tandem_stack run|demo`: what `make run` and `make demo` call."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence

from tandem_stack import demo
from tandem_stack.stack import TRANSPORTS, Ports, Stack, default_workers


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run(transport: str, workers: int) -> int:
    """The stack on the default ports, in the foreground until Ctrl-C or SIGTERM."""
    stack = Stack(transport=transport, ports=Ports(), embedded_nats=True, workers=workers)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        print(
            f"Tandem is up ({transport}, {workers} worker{'s' if workers > 1 else ''}): "
            f"OIP REST {stack.rest_url}/v2, logs in {stack.workdir}"
        )
        print("Ctrl-C to stop.")
        while all(p.running for p in stack.processes):
            time.sleep(0.5)
        print(f"a process exited:\n{stack.logs()}", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError) as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tandem-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd = sub.add_parser("run", help="run the stack in the foreground until Ctrl-C")
    run_cmd.add_argument("--transport", choices=TRANSPORTS, default="grpc")
    run_cmd.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Python workers to start (default: from the CPUs, see default_workers)",
    )
    sub.add_parser("demo", help="send held-out digits through the stack, print a trace")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.main()
    if args.workers is None:
        args.workers = default_workers(args.transport)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return run(args.transport, args.workers)


if __name__ == "__main__":
    sys.exit(main())
