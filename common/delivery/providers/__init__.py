"""Gateway dialects. Each module here is one provider: a `build(settings)`
that returns an object with `url`, `name` (one sender's stable name, no
secrets), `headers`, `request(message)` and `read(status, headers, text)`.
Adding a gateway is adding a module."""

import importlib
import pkgutil


def names() -> list[str]:
    return sorted(module.name for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_"))


def build(name: str, settings):
    return importlib.import_module(f"{__name__}.{name}").build(settings)
