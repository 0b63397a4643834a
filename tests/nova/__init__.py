"""Nova's own tests run against virtdriver's Nova drivers (a unittest suite; see run.sh).

Nova's concurrency mode (eventlet monkey-patching, or native threads when
``OS_NOVA_DISABLE_EVENTLET_PATCHING=True``) must be chosen before anything imports
eventlet, as ``nova/tests/unit/__init__.py`` does; this package is imported before any of
its test modules, so it does that here. Outside the Nova venv (pytest's collection in the
main venv) there is no Nova and nothing to do.
"""

try:
    from nova import monkey_patch
except ImportError:  # the library's own venv: these tests are not run there
    monkey_patch = None

if monkey_patch is not None:
    monkey_patch.patch()
