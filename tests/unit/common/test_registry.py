"""load_backend finds backends through the virtdriver.backends entry-point group."""

import sys
import textwrap

import pytest
from oslo_config import cfg

import virtdriver
from virtdriver.common.exceptions import InvalidInput

BACKEND_MODULE = '''
from virtdriver.common.base import VMOps

ops = [name for name in VMOps.__abstractmethods__]
Probe = type("Probe", (VMOps,), {
    "backend_name": "probe",
    **{name: (lambda self, *a, **k: None) for name in ops},
})
NotABackend = object
'''


@pytest.fixture
def probe_distribution(tmp_path, monkeypatch):
    """Install a real distribution that declares backend 'probe', on sys.path."""
    (tmp_path / "probe_backend.py").write_text(BACKEND_MODULE)
    dist_info = tmp_path / "probe_backend-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-backend\n"
                                        "Version: 1.0\n")
    (dist_info / "entry_points.txt").write_text(textwrap.dedent("""
        [virtdriver.backends]
        probe = probe_backend:Probe
        broken = probe_backend:NotABackend
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("probe_backend", None)


def make_conf():
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    return conf


def test_backend_defined_in_the_test_is_loaded_by_entry_point(probe_distribution):
    heard = []
    ops = virtdriver.load_backend("probe", make_conf(), image_store="store",
                                  progress_callback=lambda *a: heard.append(a))
    assert isinstance(ops, virtdriver.VMOps)
    assert ops.backend_name == "probe" and ops.image_store == "store"
    ops.progress.report({"uuid": "x"}, 50, "step")
    assert heard == [({"uuid": "x"}, 50, "step")]
    assert "probe" in virtdriver.available_backends()


def test_builtin_backends_are_declared():
    assert {"vmware", "xen"} <= set(virtdriver.available_backends())


def test_unknown_backend_lists_installed_ones(probe_distribution):
    with pytest.raises(InvalidInput) as caught:
        virtdriver.load_backend("hyperv", make_conf())
    assert caught.value.field == "backend" and "probe" in str(caught.value)
    assert "vmware" in str(caught.value)


def test_entry_point_that_is_not_a_vmops_is_refused(probe_distribution):
    with pytest.raises(InvalidInput, match="not a VMOps subclass"):
        virtdriver.load_backend("broken", make_conf())
