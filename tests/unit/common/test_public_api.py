"""Every name of DESIGN.md's public-API section exists and works as shown there."""

import uuid

from oslo_config import cfg

import virtdriver


def test_exported_names_are_pinned():
    assert set(virtdriver.__all__) == {
        "BlockDeviceInfo", "ConsoleInfo", "Diagnostics", "Flavor", "ImageMeta", "ImageStore",
        "Instance", "InstanceInfo", "LocalImageStore", "PowerState", "UnsupportedOperation",
        "VIF", "VMConfigInfo", "VMOps", "available_backends", "exceptions", "list_opts",
        "load_backend", "make_step_decorator", "register_opts"}
    for name in virtdriver.__all__:
        assert getattr(virtdriver, name) is not None


def test_register_opts_gives_the_three_groups_with_nova_names(tmp_path):
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    virtdriver.register_opts(conf)  # twice is harmless
    config_file = tmp_path / "virtdriver.conf"
    config_file.write_text("[vmware]\nhost_ip = vc.example\nhost_password = s3cret\n"
                           "[xenserver]\nconnection_url = https://xs1\n")
    conf([], default_config_files=[str(config_file)])
    assert conf.vmware.host_ip == "vc.example" and conf.vmware.host_port == 443
    assert conf.vmware.insecure is False and conf.vmware.use_linked_clone is True
    assert conf.xenserver.connection_url == "https://xs1"
    assert conf.xenserver.connection_concurrent == 5
    assert conf.image_cache_subdirectory_name == "_base"


def test_every_option_has_help_text():
    for _group, opts in virtdriver.list_opts():
        for opt in opts:
            assert opt.help, opt.name


def test_passwords_are_secret_options():
    secret = {opt.name for _group, opts in virtdriver.list_opts() for opt in opts if opt.secret}
    assert secret == {"host_password", "connection_password"}


def test_quick_start_models():
    inst = virtdriver.Instance(uuid=str(uuid.uuid4()), name="instance-0001",
                               flavor=virtdriver.Flavor(vcpus=1, memory_mb=256, root_gb=1))
    vif = virtdriver.VIF(id=str(uuid.uuid4()), address="fa:16:3e:00:00:01",
                         network="VM Network")
    assert inst.flavor.vcpus == 1 and vif.network == "VM Network"
    assert virtdriver.PowerState.RUNNING == 1 and virtdriver.PowerState.SUSPENDED == 7
