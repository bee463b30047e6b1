"""Alias rules: what RollbackAlias goes back to.

An alias's history is read as a stack of the versions it pointed at: a SET pushes the
new version, a DELETE pushes "absent", a ROLLBACK pops. Rolling back therefore walks
back one change at a time — set v1, set v2, set v3, rollback → v2, rollback → v1 —
and a rollback right after an alias was removed restores it.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.errors import FailedPrecondition, NotFound
from services.registry_svc.domain.model import AliasAction


def stack(history: Sequence[tuple[AliasAction, int | None]]) -> list[int | None]:
    """Where the alias pointed over time, oldest first, rollbacks folded in (None = absent)."""
    pointed: list[int | None] = [None]
    for action, version in history:
        if action is AliasAction.SET:
            pointed.append(version)
        elif action is AliasAction.DELETED:
            pointed.append(None)
        elif action is AliasAction.ROLLED_BACK and len(pointed) > 1:
            pointed.pop()
            pointed[-1] = version  # the version it went back to (same as what was below)
    return pointed


def rollback_target(model_name: str, alias: str, history: Sequence[tuple[AliasAction, int | None]]) -> int:
    """The version a rollback moves ``alias`` to; NotFound for an alias that never existed,
    FailedPrecondition when there is nothing earlier to go back to."""
    if not history:
        raise NotFound(f"registered model '{model_name}' has never had an alias '{alias}'",
                       reason="ALIAS_NOT_FOUND", metadata={"resource_name": f"{model_name}@{alias}"})
    pointed = stack(history)
    if len(pointed) < 2 or pointed[-2] is None:
        raise FailedPrecondition(
            f"alias '{alias}' of '{model_name}' has no earlier version to roll back to; use SetAlias instead",
            reason="NO_EARLIER_VERSION")
    return pointed[-2]
