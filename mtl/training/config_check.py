"""Unknown keys in `_target_` nodes fail before anything is built, with the valid ones listed.

Hydra rejects `data.batchsize=4` (not in the config), but `+data.batchsize=4`, a typo in an
experiment file or a stale key after an upgrade only fails when the object is created, with a
bare `TypeError` (for optimizers and schedulers, which are partials, only once training has
started). Checking every `_target_`'s signature up front turns those into one message that
names the key, the target, a close match and the options.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig

HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


class UnknownConfigKeyError(ValueError):
    """A config node passes an option its `_target_` does not take."""


def _accepted(target: Any) -> set[str] | None:
    """Keyword names `target` accepts; None if it takes arbitrary keywords."""
    if inspect.isclass(target):
        names: set[str] = set()
        for klass in target.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            params = inspect.signature(init).parameters.values()
            names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                return names - {"self"}
            if klass.__module__.startswith("torch."):
                return names - {"self"}  # nn.Module.__init__(*args, **kwargs) rejects extras
        return names - {"self"}
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind != p.VAR_POSITIONAL}


def _target_nodes(node: Any, path: str) -> Iterator[tuple[str, DictConfig]]:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for key in node:
            yield from _target_nodes(node._get_node(key), f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from _target_nodes(item, f"{path}[{i}]")


def check_config_keys(cfg: DictConfig, groups: tuple[str, ...] | None = None) -> None:
    """Raise `UnknownConfigKeyError` for the first option a `_target_` would reject."""
    for group in groups or tuple(cfg):
        if group == "hydra" or group not in cfg:
            continue
        for path, node in _target_nodes(cfg._get_node(group), group):
            target_name = node.get("_target_")
            try:
                target = get_object(str(target_name))
            except Exception as err:
                raise UnknownConfigKeyError(
                    f"{path}._target_={target_name!r} cannot be imported ({err}); check the "
                    f"spelling or choose another option of the '{group}' group"
                ) from err
            accepted = _accepted(target)
            if accepted is None:
                continue
            unknown = [str(k) for k in node if k not in HYDRA_KEYS and k not in accepted]
            if unknown:
                key = unknown[0]
                close = difflib.get_close_matches(key, sorted(accepted), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else "."
                raise UnknownConfigKeyError(
                    f"{path}.{key}: {target_name} has no option '{key}'{hint} Its options: "
                    f"{', '.join(sorted(accepted))}"
                )
