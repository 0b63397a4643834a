"""What spawn keeps between spawns (network refs, the cached image's VDI) and how it copes
when another client removed one behind its back: it looks again, once, and spawns."""

from __future__ import annotations

from tests.integration.xen.conftest import make_instance, make_vif, vm_of


def _spawn(ops, image, network: str = "xenbr0"):
    instance = make_instance()
    ops.spawn(None, instance, image, [], None, [make_vif(network=network)])
    return instance


def test_a_warm_spawn_looks_up_neither_network_nor_image(ops, image) -> None:
    ops.destroy(_spawn(ops, image))
    ops.stats.reset()
    instance = _spawn(ops, image)
    calls = ops.stats.snapshot()
    assert "network.get_all_records_where" not in calls
    assert "VDI.get_all_records_where" not in calls
    ops.destroy(instance)


def test_a_cached_image_vdi_removed_behind_our_back_is_imported_again(ops, image,
                                                                    xapi) -> None:
    ops.destroy(_spawn(ops, image))
    for ref, record in xapi.VDI.get_all_records().items():
        if (record.get("other_config") or {}).get("image-id") == image.id:
            xapi.VDI.destroy(ref)  # another compute's image-cache cleanup
    ops.stats.reset()
    instance = _spawn(ops, image)
    assert ops.stats.snapshot().get("VDI.create", 0) >= 1  # imported again
    assert xapi.VM.get_power_state(vm_of(xapi, instance)[0]) == "Running"
    ops.destroy(instance)


def test_a_network_made_again_under_the_same_name_is_found(ops, image, xapi) -> None:
    xapi.network.create({"name_label": "bench-net", "name_description": "", "MTU": "1500",
                         "other_config": {}, "bridge": "xenbr9", "managed": True, "tags": []})
    ops.destroy(_spawn(ops, image, "bench-net"))
    old = xapi.network.get_by_name_label("bench-net")[0]
    xapi.network.destroy(old)
    xapi.network.create({"name_label": "bench-net", "name_description": "", "MTU": "1500",
                         "other_config": {}, "bridge": "xenbr9", "managed": True, "tags": []})
    instance = _spawn(ops, image, "bench-net")
    vm_ref, record = vm_of(xapi, instance)
    networks = {xapi.VIF.get_network(vif) for vif in record["VIFs"]}
    assert networks == set(xapi.network.get_by_name_label("bench-net"))
    ops.destroy(instance)
