"""The ``virtdriver`` command: the library's operations, as an operator meets them.

``virtdriver [--config-file F] [--backend vmware|xen] [--format table|json] COMMAND ...``.
Instances are named by the user; the name-to-instance mapping lives in a state file next to
the configuration. Errors are one line on stderr and a non-zero exit status (``--debug``
shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from oslo_config import cfg

from virtdriver.cli import commands, sims
from virtdriver.cli.output import Output
from virtdriver.cli.state import StateFile
from virtdriver.common.config import register_opts
from virtdriver.common.exceptions import ImageNotFound, InvalidInput, VirtDriverError
from virtdriver.common.images import LocalImageStore
from virtdriver.common.registry import load_backend

EXIT_ERROR, EXIT_USAGE = 1, 2


class ProgressRelay:
    """The backend's progress callback, forwarded to whichever bar is showing."""

    target: Any = None

    def __call__(self, instance: Any, percent: int, step: str) -> None:
        if self.target is not None:
            self.target(instance, percent, step)


class RefusedSecret(argparse.Action):
    """A password flag that no longer takes its value on the command line: a usage error.

    The message names the flag only, never the value given.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error(f"{option_string} is not taken on the command line, where every local "
                     f"user can read it; use {option_string}-file PATH ('-' for stdin)")


def build_parser() -> argparse.ArgumentParser:
    """The command line: global options, then one subcommand per operation."""
    parser = argparse.ArgumentParser(prog="virtdriver", description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", action="append", default=[],
                        help="configuration file (default: ./virtdriver.conf); repeatable")
    parser.add_argument("--config-dir", help="directory of *.conf files")
    parser.add_argument("--backend", default="vmware", help="vmware or xen (default vmware)")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--stats-file", type=Path,
                        help="write the server calls the command made, as JSON, to this file")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Any, help_text: str, named: bool = True):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        if named:
            p.add_argument("name", help="the instance's name")
        return p

    def secret_file(p: argparse.ArgumentParser, flag: str, what: str) -> None:
        # A password on the command line is readable by every local user (ps,
        # /proc/<pid>/cmdline): it comes from a file or stdin, and the bare flag is refused.
        p.add_argument(f"{flag}-file", metavar="PATH",
                       help=f"read {what} from the first line of PATH; '-' reads stdin "
                            "(prompting, without echo, on a terminal)")
        p.add_argument(flag, dest=flag.lstrip("-").replace("-", "_") + "_on_argv",
                       nargs="?", const="", action=RefusedSecret, help=argparse.SUPPRESS)

    def sizes(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--vcpus", type=int, required=required)
        p.add_argument("--memory", type=int, required=required, help="MiB")
        p.add_argument("--disk", type=int, required=required, help="root disk, GiB")

    p = command("spawn", commands.spawn, "create and boot an instance")
    sizes(p, required=True)
    p.add_argument("--ephemeral", type=int, default=0, help="ephemeral disk, GiB")
    p.add_argument("--swap", type=int, default=0, help="swap, MiB")
    p.add_argument("--image", required=True, help="image name or id")
    p.add_argument("--network", action="append", default=[], help="network name; repeatable")
    p.add_argument("--config-drive", action="store_true")
    secret_file(p, "--admin-password", "the guest's administrator password")
    p.add_argument("--file", action="append", default=[], help="/guest/path=local/path")
    command("destroy", commands.destroy, "destroy an instance")
    command("list", commands.list_instances, "list instances", named=False)
    command("show", commands.show, "power state and diagnostics")
    command("start", commands.start, "power on")
    command("stop", commands.stop, "power off").add_argument(
        "--timeout", type=int, default=0, help="seconds for a clean guest shutdown first")
    command("reboot", commands.reboot, "reboot").add_argument("--hard", action="store_true")
    for name in ("suspend", "resume", "pause", "unpause", "unrescue"):
        command(name, getattr(commands, name), name)
    command("snapshot", commands.snapshot, "snapshot to a new image").add_argument(
        "image_name", help="name of the new image")
    p = command("rescue", commands.rescue, "boot from a rescue image")
    p.add_argument("--image", help="rescue image (default: the instance's own)")
    secret_file(p, "--rescue-password", "the rescue system's password")
    sizes(command("resize", commands.resize, "change the flavor"), required=False)
    command("confirm-resize", commands.confirm_resize, "keep the new flavor")
    command("revert-resize", commands.revert_resize, "go back to the old flavor")
    command("migrate", commands.migrate, "cold-migrate").add_argument("--dest", required=True)
    p = command("live-migrate", commands.live_migrate, "move a running instance")
    p.add_argument("--host", required=True)
    p.add_argument("--block-migration", action="store_true")
    command("console", commands.console, "VNC console address")
    p = command("attach-interface", commands.attach_interface, "add a NIC")
    p.add_argument("--network", required=True)
    p.add_argument("--mac")
    command("detach-interface", commands.detach_interface, "remove a NIC").add_argument(
        "--port", required=True, help="port id or MAC")

    image = sub.add_parser("image", help="the local image store").add_subparsers(
        dest="image_command", required=True)
    p = image.add_parser("import", help="import a disk file")
    p.add_argument("path")
    p.add_argument("--name")
    p.add_argument("--disk-format", default="vmdk")
    p.add_argument("--property", action="append", default=[], help="key=value; repeatable")
    image.add_parser("list", help="list images")
    image.add_parser("show").add_argument("image")
    image.add_parser("delete").add_argument("image")

    sim = sub.add_parser("sim", help="the embedded simulators").add_subparsers(
        dest="sim_command", required=True)
    p = sim.add_parser("start", help="start vcsim and the XAPI simulator, write the config")
    p.add_argument("--vcsim", metavar="PATH",
                   help="a vcsim binary to run: a stock vcsim or the project's launcher "
                        "(default: $VIRTDRIVER_VCSIM, else the launcher, built into "
                        "~/.cache/virtdriver on first use from Debian's golang-go and "
                        "golang-github-vmware-govmomi-dev)")
    p.add_argument("--hosts", type=int, default=2)
    sim.add_parser("stop", help="stop them")
    sim.add_parser("status", help="are they running")
    return parser


def config_path(args: argparse.Namespace) -> Path:
    """The configuration file the command reads (and ``sim start`` writes)."""
    return Path(args.config_file[0] if args.config_file else "virtdriver.conf").resolve()


def load_conf(args: argparse.Namespace) -> cfg.ConfigOpts:
    """Read the usual oslo.config sources."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    files = [str(config_path(args))] if not args.config_file else args.config_file
    cli_args = [f"--config-file={f}" for f in files if Path(f).exists()]
    if args.config_dir:
        cli_args.append(f"--config-dir={args.config_dir}")
    conf(cli_args, project="virtdriver", default_config_files=[])
    return conf


def image_command(args: argparse.Namespace, images: LocalImageStore, out: Output) -> None:
    """image import|list|show|delete on the local image store."""
    if args.image_command == "import":
        properties = dict(p.partition("=")[::2] for p in args.property)
        with out.progress(f"import {Path(args.path).name}"):
            image = images.import_file(args.path, disk_format=args.disk_format,
                                       properties=properties,
                                       **({"name": args.name} if args.name else {}))
        out.result("imported", image.to_dict())
    elif args.image_command == "list":
        out.result("images", [{"name": i.name, "id": i.id, "disk_format": i.disk_format,
                               "size": i.size, "status": i.status} for i in images.list()])
    elif args.image_command == "show":
        out.result(args.image, images.find(args.image).to_dict())
    else:
        image = images.find(args.image)
        images.delete(image.id)
        out.result("deleted", {"name": image.name, "id": image.id})


def sim_command(args: argparse.Namespace, out: Output) -> None:
    """sim start|stop|status."""
    path = config_path(args)
    if args.sim_command == "start":
        started = sims.start(path, args.vcsim, hosts=args.hosts)
        out.result("simulators started", [{"backend": name, "url": sim["url"],
                                           "pid": sim["pid"]}
                                          for name, sim in started.items()]
                   + [{"backend": "config", "url": str(path), "pid": ""}])
    elif args.sim_command == "stop":
        out.result("simulators stopped", {"stopped": sims.stop(path)})
    else:
        out.result("simulators", [{"backend": name, **facts}
                                  for name, facts in sims.status(path).items()])


def run(args: argparse.Namespace) -> None:
    """Dispatch one parsed command."""
    out = Output(args.format)
    if args.command == "sim":
        sim_command(args, out)
        return
    state_dir = config_path(args).parent / "virtdriver-state"
    images = LocalImageStore(state_dir / "images")
    if args.command == "image":
        image_command(args, images, out)
        return
    relay = ProgressRelay()
    conf = load_conf(args)
    ctx = commands.Context(
        load_ops=lambda: load_backend(args.backend, conf, image_store=images,
                                      progress_callback=relay),
        backend=args.backend, state=StateFile(state_dir / "instances.json"), images=images,
        out=out, relay=relay)
    try:
        args.func(ctx, args)
    finally:
        if args.stats_file:
            ctx.write_stats(args.stats_file)
        ctx.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``virtdriver`` console script."""
    args = build_parser().parse_args(argv)
    # The library's own log lines (a rollback's warning, say) are for --debug; an error the
    # command cannot recover from is already its one line on stderr.
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(args)
    except (InvalidInput, ImageNotFound, cfg.Error) as error:
        if args.debug:
            raise
        print(f"virtdriver: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except VirtDriverError as error:
        if args.debug:
            raise
        print(f"virtdriver: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("virtdriver: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug or an unforeseen failure: still one line
        if args.debug:
            raise
        print(f"virtdriver: unexpected error: {type(error).__name__}: {error} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
