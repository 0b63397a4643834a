"""One function per subcommand; each maps onto one or a few VMOps operations."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import getpass
import json
import secrets
import sys
import types
import uuid
from pathlib import Path
from typing import Any

from virtdriver.cli.state import StateFile, instance_from_record
from virtdriver.common.exceptions import InvalidInput, UnsupportedOperation
from virtdriver.common.model import VIF, Flavor


@dataclasses.dataclass
class Context:
    """What every instance command needs: the backend, its name, the state and the images.

    The backend is built on first use, so input errors are reported before it is loaded.
    """

    load_ops: Any
    backend: str
    state: StateFile
    images: Any
    out: Any
    relay: Any

    @functools.cached_property
    def ops(self) -> Any:
        """The backend, loaded on first use."""
        return self.load_ops()

    def write_stats(self, path: Path) -> None:
        """Write the server calls made so far (none if the backend was never loaded)."""
        calls = self.ops.stats.snapshot() if "ops" in self.__dict__ else {}
        path.write_text(json.dumps({"total_calls": sum(calls.values()), "calls": calls},
                                   indent=2, sort_keys=True))

    def close(self) -> None:
        """Release the backend's sessions if it was loaded."""
        if "ops" in self.__dict__:
            self.ops.close()


def read_secret(path: str | None) -> str | None:
    """A password from the first line of ``path``; ``-`` reads stdin (a prompt on a tty).

    None when no path is given. The value never comes from the command line.
    """
    if path is None:
        return None
    if path == "-":
        if sys.stdin.isatty():
            return getpass.getpass("password: ")
        line = sys.stdin.readline()
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                line = handle.readline()
        except OSError as error:
            raise InvalidInput("password file", path, error.strerror or str(error)) from None
    secret = line.rstrip("\r\n")
    if not secret:
        raise InvalidInput("password file", path, "its first line is empty")
    return secret


def random_mac() -> str:
    """A locally administered unicast MAC in OpenStack's fa:16:3e range."""
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def _instance(ctx: Context, name: str) -> tuple[Any, dict[str, Any], list[VIF]]:
    record = ctx.state.get(ctx.backend, name)
    vifs = [VIF(**vif) for vif in record.get("vifs", [])]
    return instance_from_record(name, record), record, vifs


def _flavor(args: argparse.Namespace, current: dict[str, Any] | None = None) -> Flavor:
    base = current or {}
    return Flavor(vcpus=args.vcpus if args.vcpus is not None else base.get("vcpus", 1),
                  memory_mb=args.memory if args.memory is not None else base.get("memory_mb"),
                  root_gb=args.disk if args.disk is not None else base.get("root_gb", 1),
                  ephemeral_gb=getattr(args, "ephemeral", None) or base.get("ephemeral_gb", 0),
                  swap=getattr(args, "swap", None) or base.get("swap", 0))


def _injected_files(specs: list[str]) -> list[tuple[str, bytes]]:
    files = []
    for spec in specs:
        guest_path, sep, local_path = spec.partition("=")
        if not sep or not guest_path.startswith("/"):
            raise InvalidInput("--file", spec, "must be /guest/path=local/path")
        try:
            files.append((guest_path, Path(local_path).read_bytes()))
        except OSError as error:
            raise InvalidInput("--file", spec, f"cannot read {local_path}: {error}") from None
    return files


def _step(ctx: Context, label: str, operation: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a long operation under a progress bar fed by the library."""
    with ctx.out.progress(label) as callback:
        ctx.relay.target = callback
        try:
            return operation(*args, **kwargs)
        finally:
            ctx.relay.target = None


def spawn(ctx: Context, args: argparse.Namespace) -> None:
    """Create and boot an instance named by the user."""
    if args.name in ctx.state.records(ctx.backend):
        raise InvalidInput("name", args.name, f"is already an instance on {ctx.backend}")
    flavor = _flavor(args)
    admin_password = read_secret(args.admin_password_file)  # before any server call
    image = ctx.images.find(args.image)
    vifs = [VIF(id=str(uuid.uuid4()), address=random_mac(), network=network)
            for network in args.network]
    record = {"uuid": str(uuid.uuid4()), "flavor": dataclasses.asdict(flavor),
              "image_id": image.id, "config_drive": args.config_drive,
              "vifs": [dataclasses.asdict(vif) for vif in vifs]}
    instance = instance_from_record(args.name, record)
    _step(ctx, f"spawn {args.name}", ctx.ops.spawn, None, instance, image,
          _injected_files(args.file), admin_password, vifs)
    ctx.state.add(ctx.backend, args.name, record)
    ctx.out.result(f"spawned {args.name}", {"name": args.name, "uuid": instance.uuid,
                                            "state": ctx.ops.get_info(instance).state})


def destroy(ctx: Context, args: argparse.Namespace) -> None:
    """Destroy an instance and forget its name."""
    instance, _record, vifs = _instance(ctx, args.name)
    ctx.ops.destroy(instance, vifs)
    ctx.state.remove(ctx.backend, args.name)
    ctx.out.result(f"destroyed {args.name}", {"name": args.name, "destroyed": True})


def list_instances(ctx: Context, args: argparse.Namespace) -> None:
    """The instances this command made, with their power states."""
    on_server = set(ctx.ops.list_instance_uuids())
    rows = []
    for name, record in sorted(ctx.state.records(ctx.backend).items()):
        instance = instance_from_record(name, record)
        state = ctx.ops.get_info(instance).state if instance.uuid in on_server else "missing"
        rows.append({"name": name, "uuid": instance.uuid, "state": state,
                     "vcpus": record["flavor"]["vcpus"],
                     "memory_mb": record["flavor"]["memory_mb"]})
    ctx.out.result(f"instances on {ctx.backend}", rows)


def show(ctx: Context, args: argparse.Namespace) -> None:
    """Power state and diagnostics of one instance."""
    instance, record, vifs = _instance(ctx, args.name)
    facts: dict[str, Any] = {"name": args.name, "uuid": instance.uuid,
                             "state": ctx.ops.get_info(instance).state,
                             "flavor": record["flavor"],
                             "macs": [vif.address for vif in vifs]}
    try:
        facts["diagnostics"] = ctx.ops.get_instance_diagnostics(instance)
    except UnsupportedOperation as error:
        facts["diagnostics"] = str(error)
    ctx.out.result(args.name, facts)


def _power(operation: str):
    def command(ctx: Context, args: argparse.Namespace) -> None:
        instance, _record, vifs = _instance(ctx, args.name)
        if operation == "reboot":
            ctx.ops.reboot(instance, vifs, "HARD" if args.hard else "SOFT")
        elif operation == "power_off":
            ctx.ops.power_off(instance, timeout=args.timeout, retry_interval=1)
        else:
            getattr(ctx.ops, operation)(instance)
        ctx.out.result(f"{operation} {args.name}",
                       {"name": args.name, "state": ctx.ops.get_info(instance).state})

    command.__name__ = operation
    command.__doc__ = f"Run {operation} on one instance."
    return command


start, stop, reboot = _power("power_on"), _power("power_off"), _power("reboot")
suspend, resume = _power("suspend"), _power("resume")
pause, unpause = _power("pause"), _power("unpause")


def snapshot(ctx: Context, args: argparse.Namespace) -> None:
    """Upload an instance's disk to the image store as a new image."""
    instance, _record, _vifs = _instance(ctx, args.name)
    image = ctx.images.create(None, {"name": args.image_name})
    tasks: list[str] = []

    def update_task_state(task_state: str, expected_state: str | None = None) -> None:
        tasks.append(task_state)

    try:
        _step(ctx, f"snapshot {args.name}", ctx.ops.snapshot, None, instance, image.id,
              update_task_state)
    except BaseException:
        ctx.images.delete(image.id)
        raise
    uploaded = ctx.images.show(None, image.id)
    ctx.out.result(f"snapshot of {args.name}", {"image": uploaded.name, "id": uploaded.id,
                                                "size": uploaded.size,
                                                "disk_format": uploaded.disk_format,
                                                "task_states": tasks})


def rescue(ctx: Context, args: argparse.Namespace) -> None:
    """Boot an instance from a rescue image with its own disk attached."""
    instance, record, vifs = _instance(ctx, args.name)
    rescue_password = read_secret(args.rescue_password_file)  # before any server call
    image = ctx.images.find(args.image or record["image_id"])
    _step(ctx, f"rescue {args.name}", ctx.ops.rescue, None, instance, vifs, image,
          rescue_password)
    ctx.out.result(f"rescued {args.name}", {"name": args.name, "rescued": True})


def unrescue(ctx: Context, args: argparse.Namespace) -> None:
    """Leave rescue mode."""
    instance, _record, _vifs = _instance(ctx, args.name)
    ctx.ops.unrescue(instance)
    ctx.out.result(f"unrescued {args.name}",
                   {"name": args.name, "state": ctx.ops.get_info(instance).state})


def _migration(record: dict[str, Any]) -> types.SimpleNamespace:
    return types.SimpleNamespace(**record["migration"])


def resize(ctx: Context, args: argparse.Namespace, dest: str = "") -> None:
    """Resize (or cold-migrate) an instance; confirm-resize or revert-resize ends it."""
    instance, record, vifs = _instance(ctx, args.name)
    if "old_flavor" in record:
        raise InvalidInput("name", args.name, "has a resize to confirm or revert first")
    new_flavor = _flavor(args, record["flavor"])
    migration = {"id": str(uuid.uuid4()), "dest_compute": dest, "dest_host": dest,
                 "source_compute": "", "migration_type": "migration" if dest else "resize"}
    image = ctx.images.show(None, record["image_id"])
    disk_info = _step(ctx, f"resize {args.name}", ctx.ops.migrate_disk_and_power_off, None,
                      instance, dest, new_flavor)
    resized = instance_from_record(args.name, {**record,
                                               "flavor": dataclasses.asdict(new_flavor)})
    _step(ctx, f"finish {args.name}", ctx.ops.finish_migration, None,
          types.SimpleNamespace(**migration), resized, disk_info, vifs, image,
          resize_instance=True)
    ctx.state.update(ctx.backend, args.name, flavor=dataclasses.asdict(new_flavor),
                     old_flavor=record["flavor"], migration=migration)
    ctx.out.result(f"resized {args.name}", {"name": args.name, "flavor": new_flavor,
                                            "state": ctx.ops.get_info(resized).state})


def migrate(ctx: Context, args: argparse.Namespace) -> None:
    """Cold-migrate an instance to another host, keeping its flavor."""
    args.vcpus = args.memory = args.disk = None
    resize(ctx, args, dest=args.dest)


def confirm_resize(ctx: Context, args: argparse.Namespace) -> None:
    """Keep the new size: drop what a revert would need."""
    instance, record, vifs = _instance(ctx, args.name)
    if "old_flavor" not in record:
        raise InvalidInput("name", args.name, "has no resize to confirm")
    ctx.ops.confirm_migration(_migration(record), instance, vifs)
    ctx.state.update(ctx.backend, args.name, old_flavor=None, migration=None)
    ctx.out.result(f"confirmed {args.name}", {"name": args.name, "flavor": record["flavor"]})


def revert_resize(ctx: Context, args: argparse.Namespace) -> None:
    """Go back to the old size and place."""
    _instance_now, record, vifs = _instance(ctx, args.name)
    if "old_flavor" not in record:
        raise InvalidInput("name", args.name, "has no resize to revert")
    old = instance_from_record(args.name, record, flavor_key="old_flavor")
    ctx.ops.finish_revert_migration(None, old, vifs)
    ctx.state.update(ctx.backend, args.name, flavor=record["old_flavor"], old_flavor=None,
                     migration=None)
    ctx.out.result(f"reverted {args.name}", {"name": args.name, "flavor": record["old_flavor"],
                                             "state": ctx.ops.get_info(old).state})


def live_migrate(ctx: Context, args: argparse.Namespace) -> None:
    """Move a running instance to another host."""
    instance, _record, vifs = _instance(ctx, args.name)
    outcome: dict[str, bool] = {}
    dest_data = ctx.ops.check_can_live_migrate_destination(None, instance,
                                                           args.block_migration)
    migrate_data = ctx.ops.check_can_live_migrate_source(None, instance, dest_data)
    migrate_data = ctx.ops.pre_live_migration(None, instance, None, vifs, None,
                                              migrate_data) or migrate_data
    _step(ctx, f"live-migrate {args.name}", ctx.ops.live_migrate, None, instance, args.host,
          lambda *a, **k: outcome.update(migrated=True),
          lambda *a, **k: outcome.update(migrated=False),
          args.block_migration, migrate_data)
    ctx.ops.post_live_migration_at_destination(None, instance, vifs, args.block_migration)
    ctx.out.result(f"live-migrated {args.name}",
                   {"name": args.name, "host": args.host, **outcome,
                    "state": ctx.ops.get_info(instance).state})


def console(ctx: Context, args: argparse.Namespace) -> None:
    """Where the instance's VNC console is (the access path, which holds a ticket, is hidden)."""
    instance, _record, _vifs = _instance(ctx, args.name)
    info = ctx.ops.get_vnc_console(instance)
    ctx.out.result(f"console of {args.name}", {"type": info.type, "host": info.host,
                                               "port": info.port})


def attach_interface(ctx: Context, args: argparse.Namespace) -> None:
    """Add a NIC on a network."""
    instance, record, vifs = _instance(ctx, args.name)
    vif = VIF(id=str(uuid.uuid4()), address=args.mac or random_mac(), network=args.network)
    image = ctx.images.show(None, record["image_id"])
    ctx.ops.attach_interface(instance, image, vif)
    ctx.state.update(ctx.backend, args.name,
                     vifs=[dataclasses.asdict(v) for v in [*vifs, vif]])
    ctx.out.result(f"attached to {args.name}", {"port": vif.id, "mac": vif.address,
                                                "network": vif.network})


def detach_interface(ctx: Context, args: argparse.Namespace) -> None:
    """Remove the NIC with a port id or MAC."""
    instance, _record, vifs = _instance(ctx, args.name)
    matches = [v for v in vifs if args.port in (v.id, v.address)]
    if not matches:
        raise InvalidInput("port", args.port, f"is not a port or MAC of {args.name}")
    ctx.ops.detach_interface(instance, matches[0])
    ctx.state.update(ctx.backend, args.name,
                     vifs=[dataclasses.asdict(v) for v in vifs if v is not matches[0]])
    ctx.out.result(f"detached from {args.name}", {"port": matches[0].id,
                                                  "mac": matches[0].address})
